//! Recordings: integrity and review state; Enter replays.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

use crate::tui::action::Screen;
use crate::tui::app::State;
use crate::tui::columns::{self, Column};
use crate::tui::model::{FlagLevel, Integrity, RecordingRow};
use crate::tui::theme::Theme;
use crate::tui::widgets::{self, Listing, badge};

/// What the screen says while it has nothing to show.
const NO_RECORDINGS: (&str, &str) = (
    "No recordings yet.",
    "Every break-glass session is recorded; after one ends it appears here.",
);

/// Draws the Recordings screen.
pub fn draw(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let title = " Recordings (r: to review) ";
    if let Some(lines) = super::broker_not_ready(state, "recordings", theme) {
        return widgets::message(frame, area, widgets::panel(title, theme), lines);
    }
    if state.to_review {
        return super::reviews::draw(frame, area, state, theme);
    }
    let items = state.broker.ready().map_or(&[][..], |b| &b.recordings[..]);
    if items.is_empty() {
        return widgets::empty(frame, area, title, NO_RECORDINGS, theme);
    }
    let fitted = columns::fit(&recording_columns(items), area.width.saturating_sub(2));
    // Without the year when narrow: recordings are recent, the month and day say enough.
    let started = if fitted.width_of(0).is_some_and(|w| w < 16) {
        "%m-%d %H:%M"
    } else {
        "%Y-%m-%d %H:%M"
    };
    let listing = Listing::of(
        widgets::panel(title, theme),
        &fitted,
        state.cursor(Screen::Recordings),
    );
    widgets::windowed_table(frame, area, listing, items, theme, |r| {
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
        fitted.row(vec![
            Line::styled(r.started_at.format(started).to_string(), theme.text_dim),
            Line::styled(r.request.clone(), theme.text),
            Line::styled(r.target.clone(), theme.text),
            Line::styled(r.user.clone(), theme.text),
            Line::styled(
                format!("{}m{:02}s", r.duration_secs / 60, r.duration_secs % 60),
                theme.text,
            ),
            Line::from(integrity),
            match &r.flags {
                Some(f) => Line::styled(
                    f.text.clone(),
                    // High flags stand out; the rest read as ordinary text.
                    match f.worst {
                        Some(FlagLevel::High) => theme.status_error,
                        Some(FlagLevel::Medium | FlagLevel::Low) => theme.text,
                        None => theme.text_dim,
                    },
                ),
                None => Line::styled("?", theme.text_dim),
            },
            Line::from(review),
        ])
    });
}

/// The Recordings table's columns. Request, target and user never give way; when narrow,
/// LENGTH drops first, then STARTED (first losing its year), then FLAGS (what a reviewer
/// looks for, so it stays longest); REVIEW shrinks.
fn recording_columns(rows: &[RecordingRow]) -> [Column; 8] {
    let flags = columns::widest(
        rows.iter()
            .map(|r| r.flags.as_ref().map_or("?", |f| f.text.as_str())),
    );
    [
        Column::flex("STARTED", 16, 11, 2),
        Column::id_of("REQUEST", rows, |r| &r.request),
        Column::id_of("TARGET", rows, |r| &r.target),
        Column::id_of("USER", rows, |r| &r.user),
        Column::flex("LENGTH", 7, 6, 3),
        Column::flex("INTEGRITY", 10, 10, 0),
        Column::flex("FLAGS", flags, flags, 1),
        Column::flex("REVIEW", 20, 8, 0).filling(),
    ]
}
