//! The Recordings view's rows from a backend's listing.

use crate::recording::flags::FlagCounts;
use crate::recording::{Integrity as Verdict, list};

use super::model::{FlagLevel, FlagSummary, Integrity, RecordingRow};
use crate::backend::Backend;

/// The Recordings view's rows from `backend` (none, logged, when it cannot list them).
pub async fn listed(backend: &dyn Backend) -> Vec<RecordingRow> {
    match backend.recordings().await {
        Ok(listing) => rows(listing.all),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the recordings");
            Vec::new()
        }
    }
}

/// Rows for the Recordings view, newest first (the reviewer usually wants the session that
/// just ended).
pub fn rows(all: Vec<list::RecordingSummary>) -> Vec<RecordingRow> {
    all.into_iter()
        .rev()
        .map(|r| {
            let meta = r.meta.as_ref();
            let field = |f: fn(&crate::recording::cast::SombreroHeader) -> &String| {
                // A cast's header is text like any other: shown, never obeyed.
                meta.map(|m| crate::text::escaped(f(m))).unwrap_or_default()
            };
            RecordingRow {
                request: field(|m| &m.request_id),
                target: field(|m| &m.target),
                user: field(|m| &m.requester),
                started_at: r
                    .timestamp
                    .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                    .unwrap_or_default(),
                duration_secs: r.duration.max(0.0) as u64,
                integrity: match &r.integrity {
                    Verdict::Sealed { .. } => Integrity::Sealed,
                    Verdict::Unsealed { .. } | Verdict::Crashed { .. } => Integrity::Unsealed,
                    other => Integrity::Broken(other.to_string()),
                },
                reviewed_by: r
                    .reviews
                    .last()
                    .map(|rv| crate::text::escaped(&rv.reviewer)),
                flags: r.flags.map(flag_summary),
                path: r.path,
            }
        })
        .collect()
}

/// The Recordings view's FLAGS cell from a listing's counts.
fn flag_summary(counts: FlagCounts) -> FlagSummary {
    let worst = [
        (counts.high, FlagLevel::High),
        (counts.medium, FlagLevel::Medium),
        (counts.low, FlagLevel::Low),
    ]
    .into_iter()
    .find(|(n, _)| *n > 0)
    .map(|(_, level)| level);
    FlagSummary {
        text: counts.badge(),
        worst,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_cells_name_the_worst_severity() {
        let cell = |high, medium, low| flag_summary(FlagCounts { high, medium, low });
        assert_eq!(
            cell(2, 1, 0),
            FlagSummary {
                text: "2H 1M".into(),
                worst: Some(FlagLevel::High)
            }
        );
        assert_eq!(cell(0, 0, 3).worst, Some(FlagLevel::Low));
        assert_eq!(
            cell(0, 0, 0),
            FlagSummary {
                text: "-".into(),
                worst: None
            }
        );
    }
}
