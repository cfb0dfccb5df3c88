//! Between the recordings directory and the UI: rows with integrity and review state, and a
//! replay that hands the terminal to `sombrero replay`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::DateTime;
use ed25519_dalek::VerifyingKey;

use crate::audit::EventKind;
use crate::broker::Broker;
use crate::recording::list::{self, RecordingSummary};
use crate::recording::verify::Integrity as Verdict;

use super::driver::{RecordingsFn, ReplayFn};
use super::model::{Integrity, RecordingRow};

/// The row for one recording; `reviewers` are the sign-offs bound to its digest.
pub fn recording_row(s: &RecordingSummary, reviewers: Option<&Vec<String>>) -> RecordingRow {
    let integrity = match &s.integrity {
        Verdict::Sealed { .. } => Integrity::Sealed,
        Verdict::Unsealed { .. } => Integrity::Unsealed,
        other => Integrity::Broken(other.badge()),
    };
    let (request, target, user) = s.meta.as_ref().map_or_else(
        || ("—".to_string(), "—".to_string(), "—".to_string()),
        |m| (m.request_id.clone(), m.target.clone(), m.requester.clone()),
    );
    RecordingRow {
        path: s.path.clone(),
        request,
        target,
        user,
        started_at: s
            .timestamp
            .and_then(|t| DateTime::from_timestamp(t, 0))
            .unwrap_or_default(),
        duration_secs: s.duration.max(0.0) as u64,
        integrity,
        reviewed_by: reviewers.filter(|r| !r.is_empty()).map(|r| r.join(", ")),
    }
}

/// A [`RecordingsFn`] listing `dir` (newest first), verified with `key` when there is one,
/// with review sign-offs from the broker's audit log.
pub fn recordings_fn(dir: PathBuf, key: Option<VerifyingKey>, broker: Arc<Broker>) -> RecordingsFn {
    Arc::new(move || {
        let summaries = match list::list(&dir, key.as_ref()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot list recordings");
                return Vec::new();
            }
        };
        let mut reviews: HashMap<String, Vec<String>> = HashMap::new();
        if let Ok(events) = broker.audit_events(0, usize::MAX) {
            for e in events.into_iter().filter(|e| e.kind == EventKind::Reviewed) {
                if let Some(d) = e.data.get("digest").and_then(|v| v.as_str()) {
                    reviews.entry(d.to_string()).or_default().push(e.actor);
                }
            }
        }
        summaries
            .iter()
            .rev()
            .map(|s| recording_row(s, s.integrity.digest().and_then(|d| reviews.get(d))))
            .collect()
    })
}

/// A [`ReplayFn`] running `sombrero --data-dir DIR replay FILE` in this terminal.
pub fn replay_fn(data_dir: PathBuf) -> ReplayFn {
    Arc::new(move |file: PathBuf| {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find sombrero: {e}"))?;
        let status = std::process::Command::new(exe)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("replay")
            .arg(&file)
            .status()
            .map_err(|e| format!("cannot start the player: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "the player stopped ({status}); try `sombrero replay {}`",
                file.display()
            ))
        }
    })
}
