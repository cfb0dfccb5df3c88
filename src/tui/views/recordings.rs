//! Recordings: integrity and review state; Enter replays.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row};

use crate::tui::action::Screen;
use crate::tui::app::State;
use crate::tui::model::Integrity;
use crate::tui::theme::Theme;
use crate::tui::widgets::{self, Listing, badge};

/// Draws the Recordings screen.
pub fn draw(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let title = " Recordings ";
    if let Some(lines) = super::broker_not_ready(state, "recordings", theme) {
        return widgets::message(frame, area, widgets::panel(title, theme), lines);
    }
    let items = state.broker.ready().map_or(&[][..], |b| &b.recordings[..]);
    if items.is_empty() {
        let lines = vec![
            Line::styled("No recordings yet.", theme.text),
            Line::styled(
                "Every break-glass session is recorded; after one ends it appears here.",
                theme.text_dim,
            ),
        ];
        return widgets::message(frame, area, widgets::panel(title, theme), lines);
    }
    let header = Row::new([
        "STARTED",
        "REQUEST",
        "TARGET",
        "USER",
        "LENGTH",
        "INTEGRITY",
        "REVIEW",
    ]);
    let widths = vec![
        Constraint::Length(17),
        Constraint::Length(10),
        Constraint::Length(20),
        Constraint::Length(10),
        Constraint::Length(7),
        Constraint::Length(12),
        Constraint::Fill(1),
    ];
    let listing = Listing {
        block: widgets::panel(title, theme),
        header,
        widths,
        len: items.len(),
        selected: state.cursor(Screen::Recordings),
    };
    widgets::windowed_table(frame, area, listing, theme, |i| {
        let Some(r) = items.get(i) else {
            return Row::default();
        };
        let integrity = match &r.integrity {
            Integrity::Sealed => badge("sealed", theme.badge_ok),
            Integrity::Unsealed => badge("unsealed", theme.badge_warn),
            Integrity::Broken(_) => badge("BROKEN", theme.badge_danger),
        };
        let review = match (&r.reviewed_by, &r.integrity) {
            (Some(who), _) => Span::styled(format!("reviewed by {who}"), theme.status_ok),
            (None, Integrity::Broken(why)) => Span::styled(why.clone(), theme.status_error),
            (None, _) => Span::styled("not reviewed", theme.text_dim),
        };
        Row::new(vec![
            Cell::from(Span::styled(
                r.started_at.format("%Y-%m-%d %H:%M").to_string(),
                theme.text_dim,
            )),
            Cell::from(Span::styled(r.request.clone(), theme.text)),
            Cell::from(Span::styled(r.target.clone(), theme.text)),
            Cell::from(Span::styled(r.user.clone(), theme.text)),
            Cell::from(Span::styled(
                format!("{}m{:02}s", r.duration_secs / 60, r.duration_secs % 60),
                theme.text,
            )),
            Cell::from(integrity),
            Cell::from(review),
        ])
    });
}
