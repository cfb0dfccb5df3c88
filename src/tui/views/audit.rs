//! Audit: the hash-chained event log, filterable, with the chain's verdict.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};

use crate::tui::action::Screen;
use crate::tui::app::State;
use crate::tui::columns::{self, Column};
use crate::tui::model::{AuditRow, ChainStatus};
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
    let fitted = columns::fit(&audit_columns(&rows), table.width.saturating_sub(2));
    let listing = Listing::of(
        widgets::panel(title, theme),
        &fitted,
        state.cursor(Screen::Audit),
    );
    widgets::windowed_table(frame, table, listing, &rows, theme, |a| {
        fitted.row(vec![
            Line::styled(a.seq.to_string(), theme.text_dim),
            Line::styled(a.at.format("%H:%M:%S").to_string(), theme.text_dim),
            Line::styled(a.actor.clone(), theme.text),
            Line::styled(a.kind.clone(), theme.text),
            Line::styled(a.request.clone().unwrap_or_default(), theme.text_dim),
            Line::styled(a.detail.clone(), theme.text),
        ])
    });
}

/// The Audit table's columns. Actor, event name and request never give way; when narrow,
/// SEQ drops first, then TIME; DETAIL shrinks.
fn audit_columns(rows: &[&AuditRow]) -> [Column; 6] {
    let seq = rows.iter().map(|a| a.seq).max().unwrap_or(0).to_string();
    [
        Column::flex("SEQ", columns::width(&seq), 3, 2),
        Column::flex("TIME", 8, 8, 1),
        Column::id_of("ACTOR", rows.iter().copied(), |a| &a.actor),
        Column::id_of("EVENT", rows.iter().copied(), |a| &a.kind),
        Column::id(
            "REQUEST",
            columns::widest(rows.iter().filter_map(|a| a.request.as_deref())),
        ),
        Column::flex("DETAIL", 30, 10, 0).filling(),
    ]
}
