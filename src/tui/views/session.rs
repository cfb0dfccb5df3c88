//! Session: the terminal pane with its status bar and the detach chord, always on screen.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use tui_term::widget::PseudoTerminal;

use crate::tui::app::State;
use crate::tui::session::{CHORD_HELP, Liveness, SessionPane};
use crate::tui::theme::Theme;
use crate::tui::widgets::{self, badge};

/// What the screen says while it has nothing to show.
const NO_SESSION: (&str, &str) = (
    "No session open.",
    "On Requests (2), select your approved request and press o.",
);

/// The attached view: status bar, pane, chord help. The pane gets every other row.
pub fn draw_attached(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let Some(pane) = &state.session else {
        return;
    };
    let [bar, term, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    status_bar(frame, bar, state, pane, theme);
    frame.render_widget(PseudoTerminal::new(pane.parser.screen()), term);
    let chord = if pane.prefix_pending {
        Line::styled(
            "Ctrl-] pressed: d detach · x end session · Ctrl-] sends Ctrl-] · other keys cancel",
            theme.key,
        )
    } else {
        Line::styled(CHORD_HELP, theme.text_dim)
    };
    frame.render_widget(chord, help);
}

fn status_bar(frame: &mut Frame, area: Rect, state: &State, pane: &SessionPane, theme: &Theme) {
    // Below 100 columns the brand gives way to what matters: recording, node, time, request.
    let mut spans = if area.width >= 100 {
        vec![badge("PINK SOMBRERO", theme.badge_brand), Span::raw(" ")]
    } else {
        Vec::new()
    };
    if pane.recording {
        spans.push(Span::styled("● REC ", theme.recording));
    } else {
        spans.push(badge("NOT RECORDING", theme.badge_danger));
        spans.push(Span::raw(" "));
    }
    // The pane keeps every row, so the emergency banner shrinks to a badge here.
    if let Some(r) = state.loud_emergencies().first() {
        spans.push(badge(&format!("EMERGENCY {}", r.id), theme.badge_danger));
        spans.push(Span::raw(" "));
    }
    spans.push(Span::styled(pane.target.clone(), theme.title));
    spans.push(Span::styled(
        format!("  {} left  ", widgets::time_left(state.now, pane.ends_at)),
        theme.text,
    ));
    spans.push(badge("TAINTED", theme.badge_danger));
    spans.push(Span::styled(format!("  {}", pane.request), theme.text_dim));
    if let Some(n) = &pane.notice {
        spans.push(Span::styled(format!("  {n}"), theme.text_dim));
    }
    frame.render_widget(Line::from(spans), area);
}

/// The Session tab while not attached: the last screen and what to do.
pub fn draw_detached(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let Some(pane) = &state.session else {
        return widgets::empty(frame, area, " Session ", NO_SESSION, theme);
    };
    let title = match &pane.liveness {
        Liveness::Live => format!(" Session on {} (running: press o to return) ", pane.target),
        Liveness::Ended(how) => format!(" Session on {}: {how} ", pane.target),
    };
    let block = widgets::panel(title, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    frame.render_widget(PseudoTerminal::new(pane.parser.screen()), inner);
}
