//! Approvals: the queue of requests this user may approve, newest first.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::request;
use crate::tui::action::Screen;
use crate::tui::app::State;
use crate::tui::columns::{self, Column};
use crate::tui::model::RequestRow;
use crate::tui::theme::Theme;
use crate::tui::widgets::{self, Listing};

/// Draws the Approvals screen.
pub fn draw(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let title = format!(" Approvals for {} ", state.user);
    if let Some(lines) = super::broker_not_ready(state, "the approval queue", theme) {
        return widgets::message(frame, area, widgets::panel(title, theme), lines);
    }
    let area = flags_below(frame, area, state, theme);
    let area = emergency_above(frame, area, state, theme);
    let items = state.broker.ready().map_or(&[][..], |b| &b.approvals[..]);
    if items.is_empty() {
        let hint = "New requests appear here with a bell. Press u to act as another user.";
        let text = (format!("Nothing waiting for {}.", state.user), hint);
        return widgets::empty(frame, area, title, text, theme);
    }
    let requests: Vec<&RequestRow> = items.iter().map(|a| &a.request).collect();
    let fitted = columns::fit(&approval_columns(&requests), area.width.saturating_sub(2));
    let listing = Listing::of(
        widgets::panel(title, theme).title_bottom(Line::from(vec![
            Span::styled(" a ", theme.key),
            Span::styled("approve · ", theme.text),
            Span::styled("d ", theme.key),
            Span::styled("deny ", theme.text),
        ])),
        &fitted,
        state.cursor(Screen::Approvals),
    );
    widgets::windowed_table(frame, area, listing, items, theme, |a| {
        let r = &a.request;
        let loud = r.state == request::State::Emergency;
        fitted.row(vec![
            if loud {
                Line::styled(r.id.clone(), theme.status_error)
            } else {
                Line::styled(r.id.clone(), theme.text_dim)
            },
            Line::styled(r.requester.clone(), theme.text),
            Line::styled(r.target.clone(), theme.text),
            Line::styled(widgets::age(state.now, r.created_at), theme.text),
            Line::styled(
                r.incident.clone().unwrap_or_else(|| "—".to_string()),
                theme.text,
            ),
            if loud {
                Line::styled(format!("EMERGENCY: {}", r.reason), theme.status_error)
            } else {
                Line::styled(r.reason.clone(), theme.text)
            },
        ])
    });
}

/// Over the queue, when an emergency request is in it: what the approver can still do and
/// until when (the first one; the rest are marked in the queue).
fn emergency_above(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) -> Rect {
    let first = state.broker.ready().and_then(|b| {
        b.approvals
            .iter()
            .map(|a| &a.request)
            .find(|r| r.state == request::State::Emergency)
    });
    let Some(r) = first else {
        return area;
    };
    let until = r
        .deadline
        .map_or_else(|| "?".to_string(), |t| t.format("%H:%M:%S").to_string());
    let [note, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(3)]).areas(area);
    let text = format!(
        " {} is an EMERGENCY: d denies it until {until}; then it opens unapproved.",
        r.id
    );
    frame.render_widget(Line::styled(text, theme.status_error), note);
    rest
}

/// Draws the commands flagged in live sessions under the queue, when there are any, and
/// returns the area left for the queue.
fn flags_below(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) -> Rect {
    let flagged = state.broker.ready().map_or(&[][..], |b| &b.flagged[..]);
    if flagged.is_empty() || area.height < 12 {
        return area;
    }
    let rows = u16::try_from(flagged.len().min(3)).unwrap_or(3) + 2;
    let [queue, below] =
        Layout::vertical([Constraint::Min(6), Constraint::Length(rows)]).areas(area);
    let lines: Vec<Line> = flagged
        .iter()
        .take(3)
        .map(|f| {
            Line::from(vec![
                Span::styled(format!("{} ", f.request), theme.text_dim),
                Span::styled(format!("{} ", f.target), theme.text),
                Span::styled(f.summary.clone(), theme.status_error),
            ])
        })
        .collect();
    let block = widgets::panel(" Flagged in live sessions ", theme);
    frame.render_widget(Paragraph::new(lines).block(block), below);
    queue
}

/// The Approvals table's columns. Id, requester and target never give way; when narrow,
/// WAITING drops first, then INCIDENT shrinks; REASON keeps at least 12 columns (the approve
/// form shows it whole).
fn approval_columns(rows: &[&RequestRow]) -> [Column; 6] {
    [
        Column::id_of("ID", rows.iter().copied(), |r| &r.id),
        Column::id_of("REQUESTER", rows.iter().copied(), |r| &r.requester),
        Column::id_of("TARGET", rows.iter().copied(), |r| &r.target),
        Column::flex("WAITING", 7, 7, 1),
        Column::flex(
            "INCIDENT",
            columns::widest(rows.iter().filter_map(|r| r.incident.as_deref())),
            6,
            0,
        ),
        Column::flex("REASON", 40, 12, 0).filling(),
    ]
}
