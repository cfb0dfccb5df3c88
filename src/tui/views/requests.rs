//! Requests: mine or everyone's, with state, approvals and time left.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use crate::request;
use crate::tui::action::Screen;
use crate::tui::app::State;
use crate::tui::columns::{self, Column};
use crate::tui::model::{RequestRow, state_label};
use crate::tui::theme::Theme;
use crate::tui::widgets::{self, Listing, badge};

/// What the screen says while it has nothing to show.
const NO_REQUESTS: (&str, &str) = (
    "No requests yet.",
    "Go to Fleet (1), select a node and press b to ask for break-glass access.",
);

/// The style of a request state badge.
pub fn state_style(state: request::State, theme: &Theme) -> Style {
    match state {
        request::State::Pending => theme.badge_warn,
        request::State::Approved | request::State::Active => theme.badge_ok,
        request::State::Denied | request::State::Expired | request::State::Emergency => {
            theme.badge_danger
        }
        request::State::Cancelled | request::State::Closed => theme.text_dim,
    }
}

/// `1/2 bob`.
pub fn approvals_cell(r: &RequestRow) -> String {
    let who = r.approved_by.join(", ");
    format!("{}/{} {who}", r.approved_by.len(), r.approvals_required)
}

/// The Requests table's columns. Id, requester and target never give way; when narrow,
/// REASON drops first (the selected request's reason shows below the table), then LEFT;
/// APPROVALS shrinks to its count.
fn request_columns(rows: &[&RequestRow]) -> [Column; 7] {
    // The state badge is its label padded by one on each side; EMERGENCY needs 11.
    let state = columns::widest(rows.iter().map(|r| state_label(r.state))).saturating_add(2);
    [
        Column::id_of("ID", rows.iter().copied(), |r| &r.id),
        Column::flex("STATE", state.max(10), state.max(10), 0),
        Column::id_of("REQUESTER", rows.iter().copied(), |r| &r.requester),
        Column::id_of("TARGET", rows.iter().copied(), |r| &r.target),
        Column::flex("APPROVALS", 16, 5, 0),
        Column::flex("LEFT", 7, 7, 1),
        Column::flex("REASON", 30, 10, 2).filling(),
    ]
}

/// Draws the Requests screen.
pub fn draw(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let title = if state.only_mine {
        format!(" Requests: {}'s (m: everyone's) ", state.user)
    } else {
        " Requests: everyone's (m: mine only) ".to_string()
    };
    if let Some(lines) = super::broker_not_ready(state, "requests", theme) {
        return widgets::message(frame, area, widgets::panel(title, theme), lines);
    }
    let rows = state.visible_requests();
    if rows.is_empty() {
        return widgets::empty(frame, area, title, NO_REQUESTS, theme);
    }
    let [table, detail] = Layout::vertical([Constraint::Min(3), Constraint::Length(4)]).areas(area);
    let selected = state.cursor(Screen::Requests);
    let fitted = columns::fit(&request_columns(&rows), table.width.saturating_sub(2));
    let listing = Listing::of(widgets::panel(title, theme), &fitted, selected);
    widgets::windowed_table(frame, table, listing, &rows, theme, |r| {
        fitted.row(vec![
            Line::styled(r.id.clone(), theme.text_dim),
            Line::from(badge(state_label(r.state), state_style(r.state, theme))),
            Line::styled(r.requester.clone(), theme.text),
            Line::styled(r.target.clone(), theme.text),
            Line::styled(approvals_cell(r), theme.text),
            Line::styled(widgets::time_left(state.now, r.deadline), theme.text),
            Line::styled(r.reason.clone(), theme.text),
        ])
    });
    if let Some(r) = rows.get(selected) {
        let veto;
        let next = match r.state {
            request::State::Approved if r.requester == state.user => {
                "Approved: press o to open the session."
            }
            request::State::Approved => "Approved: only the requester can open it.",
            request::State::Pending => {
                "Waiting for approvers (they see it on Approvals). c cancels if it is yours."
            }
            request::State::Active => "A session is running.",
            request::State::Emergency => {
                veto = format!(
                    "EMERGENCY: any approver may deny it until {}; then it opens without approvals.",
                    r.deadline
                        .map_or_else(|| "?".to_string(), |t| t.format("%H:%M:%S UTC").to_string())
                );
                veto.as_str()
            }
            _ => "Finished.",
        };
        let lines = vec![
            Line::from(vec![
                Span::styled(format!("{} ", r.id), theme.title),
                Span::styled(
                    format!(
                        "incident {} · approvals {}",
                        r.incident.as_deref().unwrap_or("—"),
                        approvals_cell(r)
                    ),
                    theme.text_dim,
                ),
            ]),
            Line::styled(r.reason.clone(), theme.text),
            Line::styled(next, theme.key),
        ];
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), detail);
    }
}
