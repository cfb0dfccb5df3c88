//! The frame around every screen: header with tabs, status line, key hints, help, DEMO panel.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Row, Table};

use crate::tui::action::Screen;
use crate::tui::app::{State, Status};
use crate::tui::keymap;
use crate::tui::model::DemoCode;
use crate::tui::theme::Theme;
use crate::tui::widgets::{self, badge};

/// Brand badge, tabs, acting user and connection state.
pub fn header(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let mut spans = vec![badge("PINK SOMBRERO", theme.badge_brand), Span::raw(" ")];
    let pending = state.broker.ready().map_or(0, |b| b.approvals.len());
    for (i, s) in Screen::ALL.iter().enumerate() {
        let mut title = format!(" {} {} ", i + 1, s.title());
        if *s == Screen::Approvals && pending > 0 {
            title = format!(" {} {} ({pending}) ", i + 1, s.title());
        }
        if *s == Screen::Session && state.session.as_ref().is_some_and(|p| p.is_live()) {
            title = format!(" {} {} ● ", i + 1, s.title());
        }
        let style = if *s == state.screen {
            theme.tab_active
        } else {
            theme.tab
        };
        spans.push(Span::styled(title, style));
    }
    frame.render_widget(Line::from(spans), area);
    let mut right = vec![Span::styled(format!("as {} ", state.user), theme.text)];
    if state.connection_lost.is_some() {
        right.insert(0, badge("OFFLINE", theme.badge_danger));
        right.insert(1, Span::raw(" "));
    }
    frame.render_widget(Line::from(right).right_aligned(), area);
}

/// The status line: connection problems first, then the last message.
pub fn status_line(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let line = match (&state.connection_lost, &state.status) {
        (Some(msg), _) => Line::styled(
            format!("Connection lost: {msg} (retrying; what you see may be stale)"),
            theme.status_error,
        ),
        (None, Some(Status::Error(msg))) => Line::styled(msg.clone(), theme.status_error),
        (None, Some(Status::Info(msg))) => Line::styled(msg.clone(), theme.status_ok),
        (None, None) => Line::default(),
    };
    frame.render_widget(line, area);
}

/// What to press next, from the keymap.
pub fn hints(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let hints = keymap::hints(keymap::context(state));
    frame.render_widget(widgets::hints_line(&hints, theme), area);
}

/// The keys of the current screen, generated from the keymap.
pub fn help(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let ctx = keymap::base_context(state);
    let lines = keymap::help_lines(ctx);
    let h = u16::try_from(lines.len())
        .unwrap_or(u16::MAX)
        .saturating_add(2);
    let popup = widgets::centered(area, 60, h);
    let rows = lines.into_iter().map(|(k, d)| {
        Row::new(vec![
            Span::styled(k, theme.key),
            Span::styled(d, theme.text),
        ])
    });
    let title = match ctx {
        keymap::Context::Screen(s) => format!(" Keys: {} ", s.title()),
        _ => " Keys ".to_string(),
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Table::new(rows, [Constraint::Length(14), Constraint::Min(10)])
            .block(widgets::panel(title, theme).title_bottom(" Esc closes ")),
        popup,
    );
}

/// The DEMO panel: every demo user's current code.
pub fn demo_panel(frame: &mut Frame, area: Rect, codes: &[DemoCode], theme: &Theme) {
    let block = Block::bordered()
        .title(Span::styled(" DEMO ", theme.badge_warn))
        .border_style(theme.demo);
    let mut lines = vec![
        Line::styled("Demo users' TOTP codes", theme.demo),
        Line::styled("(a real user reads the", theme.text_dim),
        Line::styled(" code from their phone)", theme.text_dim),
        Line::default(),
    ];
    for c in codes {
        lines.push(Line::from(vec![
            Span::styled(format!("{:<10}", c.user), theme.text),
            Span::styled(c.code.clone(), theme.key),
            Span::styled(format!(" {:>2}s", c.seconds_left), theme.text_dim),
        ]));
        lines.push(Line::styled(format!("  {}", c.role), theme.text_dim));
    }
    let [inner] = Layout::vertical([Constraint::Min(1)]).areas(block.inner(area));
    frame.render_widget(block, area);
    frame.render_widget(Paragraph::new(lines), inner);
}
