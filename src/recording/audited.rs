//! Recordings cross-checked with the audit log.
//!
//! The file alone proves only that its lines agree with its chain and, once sealed, with the
//! recorder key. What it cannot prove is that it is *all* there: someone who can write the
//! recordings directory can cut the seal and every later line off, and what is left verifies as
//! an unsealed recording. The audit log (itself anchored by signed checkpoints, see
//! [`crate::checkpoint`]) says what the recorder did: `recording_started`, a
//! `recording_checkpoint` (lines and chain head) every [`super::writer::CHECKPOINT_INTERVAL`]
//! or [`super::writer::CHECKPOINT_LINES`] lines, `recording_sealed` (lines and digest), and, when
//! there was no seal, why (`recording_failed`, `session_closed`). [`cross_check`] holds the file
//! to that.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::list::RecordingSummary;
use super::verify::{Integrity, chain_heads};
use crate::audit::{Event, EventKind};
use crate::request::CloseReason;

/// A line count with the chain head after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// Lines (the header is line 1).
    pub lines: u64,
    /// Chain head after them, hex.
    pub digest: String,
}

/// What the audit log says about one recording.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFacts {
    /// The cast's file name.
    pub name: String,
    /// Where the broker wrote it.
    pub path: String,
    /// The request it recorded.
    pub request_id: Option<String>,
    /// When it was started, RFC 3339.
    pub started_at: String,
    /// Heads recorded during the session, in order.
    pub checkpoints: Vec<Mark>,
    /// What the seal covered, if it was sealed.
    pub sealed: Option<Mark>,
    /// Why the session ended without a seal (set only while there is no seal).
    pub ended: Option<String>,
}

/// What the audit log says about one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "audit", rename_all = "snake_case")]
pub enum Lookup {
    /// The audit log records it.
    Recorded(AuditFacts),
    /// The audit log does not know this name.
    Unknown {
        /// The name the audit log gives the recording of the same request, if any.
        recorded_as: Option<String>,
    },
}

/// The recordings the audit log knows, by file name.
#[derive(Debug, Clone, Default)]
pub struct AuditLog {
    by_name: BTreeMap<String, AuditFacts>,
    by_request: HashMap<String, String>,
}

fn file_name(path: &str) -> Option<String> {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

fn str_of<'a>(data: &'a Value, key: &str) -> Option<&'a str> {
    data.get(key).and_then(Value::as_str)
}

fn mark(data: &Value) -> Option<Mark> {
    Some(Mark {
        lines: data.get("lines").and_then(Value::as_u64).unwrap_or(0),
        digest: str_of(data, "digest")?.to_string(),
    })
}

impl AuditLog {
    /// Gathers the recording events of a whole audit log.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> AuditLog {
        let mut log = AuditLog::default();
        log.extend(events);
        log
    }

    /// Adds the next events of the log, in order (a log read page by page).
    pub fn extend<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) {
        let log = self;
        for e in events {
            let by_path = str_of(&e.data, "path").and_then(file_name);
            // Events without a path concern the request's recording.
            let name = by_path.or_else(|| {
                e.request_id
                    .as_ref()
                    .and_then(|r| log.by_request.get(r).cloned())
            });
            match e.kind {
                EventKind::RecordingStarted => {
                    let Some(name) = name else { continue };
                    if let Some(r) = &e.request_id {
                        log.by_request.insert(r.clone(), name.clone());
                    }
                    log.by_name.insert(
                        name.clone(),
                        AuditFacts {
                            name,
                            path: str_of(&e.data, "path").unwrap_or_default().to_string(),
                            request_id: e.request_id.clone(),
                            started_at: e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                            ..AuditFacts::default()
                        },
                    );
                }
                EventKind::RecordingCheckpoint | EventKind::RecordingSealed => {
                    let (Some(f), Some(m)) =
                        (name.and_then(|n| log.by_name.get_mut(&n)), mark(&e.data))
                    else {
                        continue;
                    };
                    if e.kind == EventKind::RecordingSealed {
                        f.sealed = Some(m);
                        f.ended = None;
                    } else {
                        f.checkpoints.push(m);
                    }
                }
                EventKind::RecordingFailed | EventKind::SessionClosed => {
                    let Some(f) = name.and_then(|n| log.by_name.get_mut(&n)) else {
                        continue;
                    };
                    if f.sealed.is_some() || f.ended.is_some() {
                        continue;
                    }
                    f.ended = Some(if e.kind == EventKind::RecordingFailed {
                        format!(
                            "recording failed: {}",
                            str_of(&e.data, "error").unwrap_or("no detail")
                        )
                    } else {
                        let reason = e.data.get("reason").cloned().unwrap_or_default();
                        match serde_json::from_value::<CloseReason>(reason.clone()) {
                            Ok(r) => format!("session closed: {r}"),
                            Err(_) => format!("session closed: {reason}"),
                        }
                    });
                }
                _ => {}
            }
        }
    }

    /// What the audit log says about the file `name` whose header names `request`.
    pub fn lookup(&self, name: &str, request: Option<&str>) -> Lookup {
        match self.by_name.get(name) {
            Some(f) => Lookup::Recorded(f.clone()),
            None => Lookup::Unknown {
                recorded_as: request.and_then(|r| self.by_request.get(r).cloned()),
            },
        }
    }

    /// What the audit log says about the local file `cast` (its name, and the request its
    /// header names).
    pub fn lookup_file(&self, cast: &Path) -> Lookup {
        let name = cast.file_name().map(|n| n.to_string_lossy().into_owned());
        let request = super::list::summarize(cast, None)
            .meta
            .map(|m| m.request_id);
        self.lookup(name.as_deref().unwrap_or_default(), request.as_deref())
    }

    /// Every recording the audit log knows.
    pub fn recordings(&self) -> impl Iterator<Item = &AuditFacts> {
        self.by_name.values()
    }
}

/// The verdict on `cast` (already verified on its own as `verdict`) given what the audit log
/// says about it.
pub fn cross_check(cast: &Path, verdict: Integrity, lookup: &Lookup) -> Integrity {
    let f = match lookup {
        Lookup::Recorded(f) => f,
        Lookup::Unknown {
            recorded_as: Some(other),
        } => {
            return Integrity::Unaudited {
                reason: format!(
                    "the audit log recorded this session's recording as {other}, not this file (renamed or planted)"
                ),
            };
        }
        Lookup::Unknown { recorded_as: None } => {
            return Integrity::Unaudited {
                reason: "the audit log has no recording_started for this file (renamed, planted, or from another broker)".into(),
            };
        }
    };
    match verdict {
        Integrity::Sealed { lines, digest } => match &f.sealed {
            Some(m) if m.digest != digest || (m.lines != 0 && m.lines != lines) => {
                Integrity::AuditTampered {
                    reason: format!(
                        "sealed with {lines} lines (digest {digest}), but the audit log recorded {} lines with digest {} at sealing: the file was replaced and sealed again",
                        m.lines, m.digest
                    ),
                    line: None,
                }
            }
            Some(_) => Integrity::Sealed { lines, digest },
            // Sealed on disk but the seal never reached the audit log (a crash right after
            // sealing): still hold it to what was recorded during the session.
            None => match against_checkpoints(cast, f, lines) {
                Some(broken) => broken,
                None => Integrity::Sealed { lines, digest },
            },
        },
        Integrity::Unsealed {
            verified_lines,
            digest,
            total_lines,
        } => {
            if let Some(m) = &f.sealed {
                return Integrity::AuditTampered {
                    reason: format!(
                        "truncated after line {verified_lines} of {}: the audit log recorded it sealed with {} lines, the seal and every later line are gone",
                        m.lines, m.lines
                    ),
                    line: Some(verified_lines + 1),
                };
            }
            if let Some(broken) = against_checkpoints(cast, f, verified_lines) {
                return broken;
            }
            match &f.ended {
                Some(why) => Integrity::Crashed {
                    verified_lines,
                    digest,
                    total_lines,
                    why: why.clone(),
                },
                None => Integrity::Unsealed {
                    verified_lines,
                    digest,
                    total_lines,
                },
            }
        }
        Integrity::ChainMissing { path } if f.sealed.is_some() || !f.checkpoints.is_empty() => {
            Integrity::AuditTampered {
                reason: format!(
                    "its chain file {path} is gone, but the audit log recorded the recording's chain"
                ),
                line: None,
            }
        }
        other => other,
    }
}

/// The first checkpoint recorded during the session that the file does not reach or match.
fn against_checkpoints(cast: &Path, f: &AuditFacts, verified: u64) -> Option<Integrity> {
    let last = f.checkpoints.iter().map(|m| m.lines).max()?;
    if last > verified {
        return Some(Integrity::AuditTampered {
            reason: format!(
                "truncated after line {verified} of at least {last}: the audit log recorded line {last} during the session"
            ),
            line: Some(verified + 1),
        });
    }
    let heads = chain_heads(cast).unwrap_or_default();
    let wrong = f
        .checkpoints
        .iter()
        .find(|m| heads.get(&m.lines) != Some(&m.digest))?;
    Some(Integrity::AuditTampered {
        reason: format!(
            "lines 1-{} differ from what the audit log recorded during the session (chain head {})",
            wrong.lines, wrong.digest
        ),
        line: None,
    })
}

/// Cross-checks a listing and adds a MISSING row for every recording the audit log knows
/// that the listing lacks.
pub fn check_listing(all: &mut Vec<RecordingSummary>, log: &AuditLog) {
    let mut seen = std::collections::HashSet::new();
    for r in all.iter_mut() {
        let name = r
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let request = r.meta.as_ref().map(|m| m.request_id.as_str());
        let verdict = std::mem::replace(
            &mut r.integrity,
            Integrity::Unreadable {
                reason: String::new(),
            },
        );
        r.integrity = cross_check(&r.path, verdict, &log.lookup(&name, request));
        seen.insert(name);
    }
    for f in log.recordings().filter(|f| !seen.contains(&f.name)) {
        all.push(missing_row(f));
    }
}

/// The row for a recording the disk lacks.
fn missing_row(f: &AuditFacts) -> RecordingSummary {
    let state = match (&f.sealed, &f.ended) {
        (Some(m), _) => format!("sealed with {} lines", m.lines),
        (None, Some(why)) => format!("ended without a seal ({why})"),
        (None, None) => "started".to_string(),
    };
    RecordingSummary {
        path: f.path.clone().into(),
        meta: None,
        timestamp: chrono::DateTime::parse_from_rfc3339(&f.started_at)
            .ok()
            .map(|t| t.timestamp()),
        duration: 0.0,
        size: 0,
        integrity: Integrity::Missing {
            reason: format!(
                "the audit log recorded {} of {} ({state}) at {}, but it is not on disk (deleted or moved)",
                f.name,
                f.request_id.as_deref().unwrap_or("no request"),
                f.started_at
            ),
        },
        reviews: Vec::new(),
        flags: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::NewEvent;
    use serde_json::json;

    fn log(events: &[(EventKind, Value)]) -> AuditLog {
        let mut out: Vec<Event> = Vec::new();
        for (k, d) in events {
            let prev = out.last().map(|e| (e.seq, e.hash.as_str()));
            let e = NewEvent::new("sombrero", *k, Some("req-1"), d.clone());
            out.push(Event::chain(prev, e, chrono::Utc::now()));
        }
        AuditLog::from_events(&out)
    }

    fn unsealed(v: u64) -> Integrity {
        Integrity::Unsealed {
            verified_lines: v,
            digest: "d".into(),
            total_lines: v,
        }
    }

    #[test]
    fn unsealed_is_tampered_if_sealed_crashed_if_explained_else_unsealed() {
        let started = (EventKind::RecordingStarted, json!({"path": "/r/a.cast"}));
        let p = Path::new("/r/a.cast");
        let l = log(&[
            started.clone(),
            (
                EventKind::RecordingSealed,
                json!({"path": "/r/a.cast", "lines": 9, "digest": "x"}),
            ),
        ]);
        let v = cross_check(p, unsealed(4), &l.lookup("a.cast", None));
        assert!(v.to_string().contains("truncated after line 4 of 9"), "{v}");
        let l = log(&[
            started.clone(),
            (EventKind::RecordingFailed, json!({"error": "disk full"})),
        ]);
        let v = cross_check(p, unsealed(4), &l.lookup("a.cast", None));
        assert!(
            matches!(v, Integrity::Crashed { .. }) && v.is_reviewable(),
            "{v}"
        );
        let l = log(std::slice::from_ref(&started));
        let v = cross_check(p, unsealed(4), &l.lookup("a.cast", None));
        assert!(matches!(v, Integrity::Unsealed { .. }) && !v.is_reviewable());
        let v = cross_check(p, unsealed(4), &l.lookup("b.cast", Some("req-1")));
        assert!(
            v.to_string()
                .contains("recorded this session's recording as a.cast")
        );
    }

    #[test]
    fn a_cut_before_the_last_checkpoint_is_tampered_and_missing_files_are_listed() {
        let l = log(&[
            (EventKind::RecordingStarted, json!({"path": "/r/a.cast"})),
            (
                EventKind::RecordingCheckpoint,
                json!({"path": "/r/a.cast", "lines": 7, "digest": "y"}),
            ),
            (
                EventKind::SessionClosed,
                json!({"reason": {"reason": "connection_lost"}}),
            ),
        ]);
        let v = cross_check(
            Path::new("/r/a.cast"),
            unsealed(5),
            &l.lookup("a.cast", None),
        );
        assert!(
            v.to_string()
                .contains("truncated after line 5 of at least 7"),
            "{v}"
        );
        let mut all = Vec::new();
        check_listing(&mut all, &l);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].integrity.badge(), "MISSING");
    }
}
