//! Audit: the hash-chained event log, filterable, with the chain's verdict.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row};

use crate::tui::action::Screen;
use crate::tui::app::State;
use crate::tui::model::ChainStatus;
use crate::tui::theme::Theme;
use crate::tui::widgets::{self, Listing, badge};

/// Draws the Audit screen.
pub fn draw(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let title = " Audit log ";
    if let Some(lines) = super::broker_not_ready(state, "the audit log", theme) {
        return widgets::message(frame, area, widgets::panel(title, theme), lines);
    }
    let [top, table] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    let mut spans = match state.broker.ready().and_then(|b| b.chain.as_ref()) {
        Some(ChainStatus::Intact { events }) => vec![
            badge("CHAIN INTACT", theme.badge_ok),
            Span::styled(format!(" {events} events verified"), theme.text_dim),
        ],
        Some(ChainStatus::Broken { at, reason }) => vec![
            badge("CHAIN BROKEN", theme.badge_danger),
            Span::styled(format!(" at event {at}: {reason}"), theme.status_error),
        ],
        None => vec![Span::styled("chain not verified yet", theme.text_dim)],
    };
    let f = &state.audit_filter;
    if f.editing || !f.text.is_empty() {
        let cursor = if f.editing { "▏" } else { "" };
        spans.push(Span::styled("   / ", theme.key));
        spans.push(Span::styled(
            format!("{}{cursor}", f.text),
            theme.input_focused,
        ));
    } else {
        spans.push(Span::styled("   / filters", theme.text_dim));
    }
    frame.render_widget(Line::from(spans), top);
    let rows = state.visible_audit();
    if rows.is_empty() {
        let text = if f.text.is_empty() {
            "No events yet: every request, approval, MFA check and session lands here."
        } else {
            "No event matches the filter: Esc clears it."
        };
        let lines = vec![Line::styled(text, theme.text)];
        return widgets::message(frame, table, widgets::panel(title, theme), lines);
    }
    let header = Row::new(["SEQ", "TIME", "ACTOR", "EVENT", "REQUEST", "DETAIL"]);
    let widths = vec![
        Constraint::Length(5),
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Length(18),
        Constraint::Length(10),
        Constraint::Fill(1),
    ];
    let listing = Listing {
        block: widgets::panel(title, theme),
        header,
        widths,
        len: rows.len(),
        selected: state.cursor(Screen::Audit),
    };
    widgets::windowed_table(frame, table, listing, theme, |i| {
        let Some(a) = rows.get(i) else {
            return Row::default();
        };
        Row::new(vec![
            Cell::from(Span::styled(a.seq.to_string(), theme.text_dim)),
            Cell::from(Span::styled(
                a.at.format("%H:%M:%S").to_string(),
                theme.text_dim,
            )),
            Cell::from(Span::styled(a.actor.clone(), theme.text)),
            Cell::from(Span::styled(a.kind.clone(), theme.text)),
            Cell::from(Span::styled(
                a.request.clone().unwrap_or_default(),
                theme.text_dim,
            )),
            Cell::from(Span::styled(a.detail.clone(), theme.text)),
        ])
    });
}
