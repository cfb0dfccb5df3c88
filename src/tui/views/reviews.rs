//! Recordings, "to review" (`r`): the broker's review queue, soonest due first; overdue rows
//! stand out.

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;

use crate::tui::action::Screen;
use crate::tui::app::State;
use crate::tui::columns::{self, Column};
use crate::tui::model::ReviewRow;
use crate::tui::theme::Theme;
use crate::tui::widgets::{self, Listing};

/// Draws the review queue in the Recordings screen's place.
pub fn draw(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let title = " Recordings: to review (! emergency · r: all) ";
    let Some(b) = state.broker.ready() else {
        return;
    };
    if b.reviews.is_empty() {
        let hint = if b.reviewer {
            "Sessions the policy wants reviewed (review_required) appear here when they end."
        } else {
            "The review queue is for approvers and reviewers (press u to switch user)."
        };
        let text = ("Nothing waiting for a review.", hint);
        return widgets::empty(frame, area, title, text, theme);
    }
    let items = &b.reviews;
    let fitted = columns::fit(&review_columns(items), area.width.saturating_sub(2));
    let listing = Listing::of(
        widgets::panel(title, theme),
        &fitted,
        state.cursor(Screen::Recordings),
    );
    widgets::windowed_table(frame, area, listing, items, theme, |r| {
        let overdue = r.due_at <= state.now;
        let style = if overdue {
            theme.status_error
        } else {
            theme.text
        };
        let request = if r.emergency {
            format!("{} !", r.request)
        } else {
            r.request.clone()
        };
        fitted.row(vec![
            Line::styled(request, style),
            Line::styled(r.requester.clone(), style),
            Line::styled(r.target.clone(), style),
            Line::styled(
                format!("{} ago", widgets::age(state.now, r.ended_at)),
                theme.text_dim,
            ),
            Line::styled(due(state.now, r.due_at), style),
            Line::styled(sign_offs(r), style),
        ])
    });
}

/// `in 3h` or `OVERDUE 2d`.
pub fn due(now: DateTime<Utc>, due_at: DateTime<Utc>) -> String {
    if due_at > now {
        format!("in {}", widgets::age(due_at, now))
    } else {
        format!("OVERDUE {}", widgets::age(now, due_at))
    }
}

/// `1/2 carol`.
fn sign_offs(r: &ReviewRow) -> String {
    format!(
        "{}/{} {}",
        r.sign_offs.len(),
        r.needed,
        r.sign_offs.join(", ")
    )
}

/// The queue's columns. Request (marked `!` for an emergency), requester and target never give
/// way; ENDED drops first, SIGN-OFFS shrinks to its count.
fn review_columns(rows: &[ReviewRow]) -> [Column; 6] {
    let ids = columns::widest(rows.iter().map(|r| r.request.as_str()));
    // Room for the ` !` that marks an emergency session.
    let mark = if rows.iter().any(|r| r.emergency) {
        2
    } else {
        0
    };
    [
        Column::id("REQUEST", ids + mark),
        Column::id_of("REQUESTER", rows, |r| &r.requester),
        Column::id_of("TARGET", rows, |r| &r.target),
        Column::flex("ENDED", 8, 8, 1),
        Column::flex("DUE", 12, 12, 0),
        Column::flex("SIGN-OFFS", 16, 5, 0).filling(),
    ]
}
