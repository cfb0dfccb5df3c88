//! Approvals: the queue of requests this user may approve, newest first.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row};

use crate::tui::action::Screen;
use crate::tui::app::State;
use crate::tui::theme::Theme;
use crate::tui::widgets::{self, Listing};

/// Draws the Approvals screen.
pub fn draw(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let title = format!(" Approvals for {} ", state.user);
    if let Some(lines) = super::broker_not_ready(state, "the approval queue", theme) {
        return widgets::message(frame, area, widgets::panel(title, theme), lines);
    }
    let items = state.broker.ready().map_or(&[][..], |b| &b.approvals[..]);
    if items.is_empty() {
        let lines = vec![
            Line::styled(format!("Nothing waiting for {}.", state.user), theme.text),
            Line::styled(
                "New requests appear here with a bell. Press u to act as another user.",
                theme.text_dim,
            ),
        ];
        return widgets::message(frame, area, widgets::panel(title, theme), lines);
    }
    let header = Row::new(["ID", "REQUESTER", "TARGET", "WAITING", "INCIDENT", "REASON"]);
    let widths = vec![
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(20),
        Constraint::Length(8),
        Constraint::Length(12),
        Constraint::Fill(1),
    ];
    let listing = Listing {
        block: widgets::panel(title, theme).title_bottom(Line::from(vec![
            Span::styled(" a ", theme.key),
            Span::styled("approve · ", theme.text),
            Span::styled("d ", theme.key),
            Span::styled("deny ", theme.text),
        ])),
        header,
        widths,
        len: items.len(),
        selected: state.cursor(Screen::Approvals),
    };
    widgets::windowed_table(frame, area, listing, theme, |i| {
        let Some(a) = items.get(i) else {
            return Row::default();
        };
        let r = &a.request;
        Row::new(vec![
            Cell::from(Span::styled(r.id.clone(), theme.text_dim)),
            Cell::from(Span::styled(r.requester.clone(), theme.text)),
            Cell::from(Span::styled(r.target.clone(), theme.text)),
            Cell::from(Span::styled(
                widgets::age(state.now, r.created_at),
                theme.text,
            )),
            Cell::from(Span::styled(
                r.incident.clone().unwrap_or_else(|| "—".to_string()),
                theme.text,
            )),
            Cell::from(Span::styled(r.reason.clone(), theme.text)),
        ])
    });
}
