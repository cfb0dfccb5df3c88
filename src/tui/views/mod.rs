//! Drawing: a pure function of the state. One file per screen.

mod approvals;
mod audit;
mod chrome;
mod fleet;
mod form;
mod recordings;
mod requests;
mod reviews;
mod session;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;

use super::action::Screen;
use super::app::{DEMO_SIDE_WIDTH, MIN_HEIGHT, MIN_WIDTH, State};
use super::model::Loadable;
use super::theme::Theme;
use super::widgets;

/// Width of the DEMO panel.
const DEMO_WIDTH: u16 = 30;

/// Draws the whole UI for `state`.
pub fn draw(frame: &mut Frame, state: &State, theme: &Theme) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        return too_small(frame, area, theme);
    }
    if state.session_attached() {
        return session::draw_attached(frame, area, state, theme);
    }
    let [top, body, status, hints] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    chrome::header(frame, top, state, theme);
    let body = chrome::emergency_banner(frame, body, state, theme);
    let side = state.demo_panel() && area.width >= DEMO_SIDE_WIDTH;
    let body = match &state.demo_codes {
        Some(codes) if side => {
            let [main, demo] =
                Layout::horizontal([Constraint::Min(1), Constraint::Length(DEMO_WIDTH)])
                    .areas(body);
            chrome::demo_panel(frame, demo, codes, theme);
            main
        }
        Some(codes) => {
            let [strip, main] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(body);
            chrome::demo_strip(frame, strip, codes, theme);
            main
        }
        None => body,
    };
    match state.screen {
        Screen::Fleet => fleet::draw(frame, body, state, theme),
        Screen::Requests => requests::draw(frame, body, state, theme),
        Screen::Approvals => approvals::draw(frame, body, state, theme),
        Screen::Session => session::draw_detached(frame, body, state, theme),
        Screen::Recordings => recordings::draw(frame, body, state, theme),
        Screen::Audit => audit::draw(frame, body, state, theme),
    }
    if let Some(codes) = &state.demo_codes
        && state.demo_panel()
        && !side
    {
        // Asked for with D on a narrow terminal: over the right of the screen, not beside it.
        let w = DEMO_WIDTH.min(body.width);
        let over = Rect {
            x: body.right().saturating_sub(w),
            width: w,
            ..body
        };
        frame.render_widget(ratatui::widgets::Clear, over);
        chrome::demo_panel(frame, over, codes, theme);
    }
    chrome::status_line(frame, status, state, theme);
    chrome::hints(frame, hints, state, theme);
    if let Some(f) = &state.form {
        form::draw(frame, body, f, theme);
    }
    if state.help {
        chrome::help(frame, area, state, theme);
    }
}

fn too_small(frame: &mut Frame, area: Rect, theme: &Theme) {
    let (w, h) = (area.width, area.height);
    let lines = vec![
        Line::styled("Enlarge the window", theme.title),
        Line::styled(
            format!("pink-sombrero needs {MIN_WIDTH}x{MIN_HEIGHT}; this one is {w}x{h}."),
            theme.text,
        ),
    ];
    frame.render_widget(
        ratatui::widgets::Paragraph::new(lines)
            .wrap(ratatui::widgets::Wrap { trim: true })
            .centered(),
        widgets::centered(area, area.width, 3),
    );
}

/// Loading and error lines for the broker-backed screens, or `None` when ready.
fn broker_not_ready<'a>(state: &State, what: &str, theme: &Theme) -> Option<Vec<Line<'a>>> {
    match &state.broker {
        Loadable::Ready(_) => None,
        Loadable::Loading => Some(vec![Line::styled(
            format!("Loading {what}…"),
            theme.text_dim,
        )]),
        Loadable::Failed(msg) => Some(vec![
            Line::styled(format!("Cannot load {what}."), theme.status_error),
            Line::styled(msg.clone(), theme.text),
            Line::styled("It retries by itself; press q to quit.", theme.text_dim),
        ]),
    }
}
