//! Append-only, hash-chained audit events.
//!
//! Each event's `hash` is SHA-256 over its `prev_hash` followed by the event's canonical JSON
//! (keys sorted, no whitespace; `seq`, `at`, `actor`, `kind`, `request_id`, `data`). The first
//! event's `prev_hash` is [`GENESIS`]. [`verify`] walks the events in stored order and names the
//! first one that was edited, deleted, reordered or inserted.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The actor name for things the system does by itself (expiry).
pub const SYSTEM_ACTOR: &str = "sombrero";

/// What happened. Serialised as a snake_case string (`"request_created"`); details go in `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    // --- lifecycle (emitted by the broker from `request::apply`) ---
    /// A request was created (Pending). data: target, reason, incident, duration_secs.
    RequestCreated,
    /// One approver approved. data: comment, approvals, required.
    ApprovalGiven,
    /// The approval threshold was reached (Approved). data: approvers, grant_expires_at.
    RequestApproved,
    /// An approver denied the request (Denied). data: comment.
    RequestDenied,
    /// The requester cancelled (Cancelled).
    RequestCancelled,
    /// The request timed out (Expired): TTL while Pending or grant window while Approved.
    RequestExpired,
    /// The requester claimed the one session (Approved -> Active). data: session_ends_at.
    RequestOpened,
    /// A command was refused by a rule. data: action, refusal.
    Refused,
    // --- sessions ---
    /// The SSM session id is known for an Active request. data: session_id.
    SessionOpened,
    /// The session ended (Active -> Closed). data: reason.
    SessionClosed,
    /// An SSM session that did not go through pink-sombrero. data: session_id, target, owner.
    RogueSessionFound,
    /// An instance older than the policy's `max_instance_age` (recorded once per instance).
    /// data: instance, name, launched (launch, or registration for managed nodes), age_secs,
    /// max_age_secs.
    OldInstanceFound,
    /// A tainted node dropped out of Systems Manager's reach (not listed, or its agent lost),
    /// recorded once per node. data: instance, name, why (`not_in_ssm`, `connection_lost`),
    /// ping, ec2_state, request.
    AgentLostWhileTainted,
    /// Someone (an approver or reviewer; the actor) started watching a live session.
    SessionWatchStarted,
    /// A watcher (the actor) stopped watching.
    SessionWatchEnded,
    /// An approver (the actor) cut a live session off.
    SessionKilled,
    // --- instance taint and replacement (fleet part) ---
    /// The target was tagged as tainted. data: target.
    Tainted,
    /// Tainting failed; no session opens. data: target, why.
    TaintFailed,
    /// Replacement of a tainted instance was asked for. data: target, strategy.
    ReplacementRequested,
    /// The reaper retries a replacement whose `requested` mark went stale (the run that made
    /// it died before the call or its outcome). data: target, requested_at, stale_after_secs.
    ReplacementRetried,
    /// Replacement finished. data: old, new.
    ReplacementCompleted,
    /// Replacement failed. data: target, why.
    ReplacementFailed,
    /// A tainted instance found terminated: its taint is closed without a replacement
    /// (recorded once per instance). data: target, closed_as (`replaced-by-termination`),
    /// ec2_state.
    TaintClosed,
    // --- recordings ---
    /// A recording file was started. data: path.
    RecordingStarted,
    /// The recording's chain head during the session (every `CHECKPOINT_INTERVAL` or
    /// `CHECKPOINT_LINES`, see `recording::writer`). data: path, lines, digest.
    RecordingCheckpoint,
    /// A recording was sealed and signed. data: path, digest, lines.
    RecordingSealed,
    /// While the session ran, a submitted command raised a risk flag (see
    /// `recording::flags`). data: text (escaped, at most 200 characters), line, severity,
    /// labels; or, once a session's live budget is spent, `suppressed: true`.
    CommandFlagged,
    /// The recording could not be written; the session is terminated. data: why.
    RecordingFailed,
    /// A reviewer signed off a recording. data: digest, comment.
    Reviewed,
    // --- users and MFA (secrets never appear in data) ---
    /// A user was enrolled. data: roles.
    UserEnrolled,
    /// A user confirmed enrolment with a valid code.
    EnrolmentConfirmed,
    /// A user was removed: no roles, their secret replaced by one nobody holds. data: roles.
    UserRemoved,
    /// A user's TOTP secret was replaced (the old one no longer works).
    UserRotated,
    /// A TOTP code was accepted. data: purpose.
    MfaAccepted,
    /// A wrong TOTP code. data: purpose, failures, max_failures.
    MfaRejected,
    /// A code for an already used time step. data: purpose.
    MfaReplayed,
    /// An attempt while locked out. data: purpose, locked_until.
    MfaLocked,
    /// Too many failures: the user is now locked out. data: locked_until.
    MfaLockedOut,
    /// The policy file was written with defaults on first run. data: path.
    PolicyCreated,
    /// Refusals by the actor beyond the per-minute audit budget were counted, not stored
    /// ([`crate::refusals`]). data: suppressed, since, per_minute.
    RefusalsSuppressed,
    // --- notifications, escalation and the review queue ([`crate::notify`]) ---
    /// A notification could not be delivered (first failure, then when given up) or was not
    /// queued (outbox full). data: target, event, notification, attempts, error, final.
    NotificationFailed,
    /// An emergency request was made (state EMERGENCY; announced to every notify target).
    /// data: as `request_created`, and veto_ends_at, used_today, max_per_day.
    EmergencyRequested,
    /// An emergency request's door opened (the veto window passed, or an approver approved
    /// inside it): it is Approved without the usual approvals. data: why, target,
    /// grant_expires_at, approvers.
    EmergencyOpened,
    /// A request was still pending one more `escalate_after` step. data: step, pending_secs.
    RequestEscalated,
    /// A recording needs review (its session ended and the policy requires one). data:
    /// due_at, target, requester.
    ReviewDue,
    /// A recording's review is overdue (once per `review_within` interval until it is
    /// reviewed). data: due_at, overdue_secs, interval, sign_offs, needed.
    ReviewOverdue,
}

impl EventKind {
    /// The snake_case name used in storage and exports.
    pub fn as_str(self) -> String {
        match serde_json::to_value(self) {
            Ok(Value::String(s)) => s,
            _ => format!("{self:?}"),
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_string())).ok()
    }
}

impl EventKind {
    /// Kinds only the broker writes, as part of a state change or an MFA check; other parts
    /// cannot append them through [`crate::broker::Broker::record`].
    pub fn is_broker_only(self) -> bool {
        use EventKind::*;
        matches!(
            self,
            RequestCreated
                | ApprovalGiven
                | RequestApproved
                | RequestDenied
                | RequestCancelled
                | RequestExpired
                | RequestOpened
                | Refused
                | SessionOpened
                | SessionClosed
                | SessionWatchStarted
                | SessionWatchEnded
                | SessionKilled
                | UserEnrolled
                | EnrolmentConfirmed
                | UserRemoved
                | UserRotated
                | MfaAccepted
                | MfaRejected
                | MfaReplayed
                | MfaLocked
                | MfaLockedOut
                | PolicyCreated
                | NotificationFailed
                | EmergencyRequested
                | EmergencyOpened
                | RequestEscalated
                | ReviewDue
                | ReviewOverdue
        )
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// An event before it is chained (what callers hand to the broker or store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Who did it (a user name, or `sombrero` for the system).
    pub actor: String,
    /// What happened.
    pub kind: EventKind,
    /// The request it concerns, if any.
    pub request_id: Option<String>,
    /// Details (never secrets).
    pub data: Value,
}

impl NewEvent {
    /// Builds an event.
    pub fn new(
        actor: impl Into<String>,
        kind: EventKind,
        request_id: Option<&str>,
        data: Value,
    ) -> Self {
        NewEvent {
            actor: actor.into(),
            kind,
            request_id: request_id.map(str::to_string),
            data,
        }
    }
}

/// A chained event as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When it was appended.
    pub at: DateTime<Utc>,
    /// Who did it.
    pub actor: String,
    /// What happened.
    pub kind: EventKind,
    /// The request it concerns, if any.
    pub request_id: Option<String>,
    /// Details.
    pub data: Value,
    /// Hash of the previous event (hex), [`GENESIS`] for the first.
    pub prev_hash: String,
    /// SHA-256 (hex) over `prev_hash` and the canonical JSON of this event.
    pub hash: String,
}

impl Event {
    /// Chains `new` after `prev` (or at the start when `prev` is `None`).
    pub fn chain(prev: Option<(u64, &str)>, new: NewEvent, at: DateTime<Utc>) -> Event {
        let (seq, prev_hash) = match prev {
            Some((seq, hash)) => (seq + 1, hash.to_string()),
            None => (1, GENESIS.to_string()),
        };
        let mut e = Event {
            seq,
            // The hash covers microseconds; keep exactly what it covers.
            at: at.trunc_subsecs(6),
            actor: new.actor,
            kind: new.kind,
            request_id: new.request_id,
            data: new.data,
            prev_hash,
            hash: String::new(),
        };
        e.hash = e.compute_hash();
        e
    }

    /// The canonical JSON the hash covers: sorted keys, no whitespace, RFC 3339 time in µs.
    pub fn canonical_json(&self) -> String {
        let v = serde_json::json!({
            "seq": self.seq,
            "at": self.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "actor": self.actor,
            "kind": self.kind.as_str(),
            "request_id": self.request_id,
            "data": self.data,
        });
        let mut out = String::new();
        write_canonical(&v, &mut out);
        out
    }

    /// Recomputes the hash from `prev_hash` and the content.
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.prev_hash.as_bytes());
        h.update(self.canonical_json().as_bytes());
        hex::encode(h.finalize())
    }
}

/// Serialises JSON with object keys sorted, whatever map order serde_json was built with.
fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                if let Some(child) = map.get(*k) {
                    write_canonical(child, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The first place where the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum ChainBreak {
    /// An event's content no longer matches its hash.
    #[error(
        "audit event {seq} was edited: its content does not match its hash; restore the data dir from a backup and investigate"
    )]
    Edited {
        /// The event.
        seq: u64,
    },
    /// Events are missing before this one.
    #[error(
        "audit event {expected} is missing (deleted): event {found} follows event {previous}; restore the data dir from a backup and investigate"
    )]
    Missing {
        /// The seq that should have come next.
        expected: u64,
        /// The seq found instead.
        found: u64,
        /// The last good seq.
        previous: u64,
    },
    /// An event appears where it does not belong.
    #[error(
        "audit event {found} is out of place (reordered or inserted) after event {previous}; restore the data dir from a backup and investigate"
    )]
    OutOfOrder {
        /// The seq found.
        found: u64,
        /// The last good seq.
        previous: u64,
    },
    /// The event does not link to the previous event's hash.
    #[error(
        "audit event {seq} does not link to event {previous} (inserted or replaced); restore the data dir from a backup and investigate"
    )]
    BadLink {
        /// The event.
        seq: u64,
        /// The event it should link to.
        previous: u64,
    },
    /// An event comes before one that should precede it.
    #[error(
        "audit events were reordered: event {found} comes before event {expected} (after event {previous}); restore the data dir from a backup and investigate"
    )]
    Reordered {
        /// The seq that should have come next (it appears later).
        expected: u64,
        /// The seq found instead.
        found: u64,
        /// The last good seq.
        previous: u64,
    },
    /// The chain is longer than the store recorded: events were added behind its back.
    #[error(
        "audit event {first} was inserted: the store recorded {recorded} events but the chain has {last}; restore the data dir from a backup and investigate"
    )]
    Extra {
        /// The first event beyond the recorded count.
        first: u64,
        /// The last event present.
        last: u64,
        /// How many the store recorded.
        recorded: u64,
    },
    /// The chain ends before the newest signed checkpoint: its tail was cut.
    #[error(
        "audit log truncated after seq {last}, checkpoint says {signed}: events were deleted from the end (and the count fixed); restore the data dir from a backup and investigate"
    )]
    Cut {
        /// The last event present.
        last: u64,
        /// The newest signed checkpoint's seq.
        signed: u64,
    },
    /// A signed hash no longer matches: the chain was rewritten and its hashes recomputed.
    #[error(
        "{} rewritten after it was signed: the checkpoint for seq {last} signed another hash (the chain was edited and its hashes recomputed); restore the data dir from a backup and investigate",
        forged_span(*first, *last)
    )]
    Forged {
        /// The first event that may be forged (the one after the last matching checkpoint).
        first: u64,
        /// The checkpoint whose hash does not match.
        last: u64,
    },
    /// The checkpoint file cannot be trusted.
    #[error("audit checkpoints: {reason}; restore the keys dir from a backup and investigate")]
    Checkpoint {
        /// What is wrong.
        reason: String,
    },
    /// The chain is shorter than the store recorded.
    #[error(
        "audit events after {last} are missing (deleted from the end): the store recorded {recorded}; restore the data dir from a backup and investigate"
    )]
    Truncated {
        /// The last event present.
        last: u64,
        /// How many the store recorded.
        recorded: u64,
    },
}

/// "audit event N was" or "one of audit events N-M was".
fn forged_span(first: u64, last: u64) -> String {
    if first >= last {
        format!("audit event {last} was")
    } else {
        format!("one of audit events {first}-{last} was")
    }
}

impl ChainBreak {
    /// True when the break was found against the signed checkpoints outside the store.
    pub fn is_against_checkpoints(&self) -> bool {
        matches!(
            self,
            ChainBreak::Cut { .. } | ChainBreak::Forged { .. } | ChainBreak::Checkpoint { .. }
        )
    }
}

/// Verifies events in stored order; `recorded` is the count the store kept alongside.
/// Returns how many events hold.
pub fn verify<'a>(
    events: impl IntoIterator<Item = &'a Event>,
    recorded: u64,
) -> Result<u64, ChainBreak> {
    let events: Vec<&Event> = events.into_iter().collect();
    let seqs: std::collections::HashSet<u64> = events.iter().map(|e| e.seq).collect();
    let mut previous: u64 = 0;
    let mut prev_hash = GENESIS.to_string();
    for e in events {
        let expected = previous + 1;
        if e.seq > expected && seqs.contains(&expected) {
            return Err(ChainBreak::Reordered {
                expected,
                found: e.seq,
                previous,
            });
        }
        if e.seq > expected {
            return Err(ChainBreak::Missing {
                expected,
                found: e.seq,
                previous,
            });
        }
        if e.seq < expected {
            return Err(ChainBreak::OutOfOrder {
                found: e.seq,
                previous,
            });
        }
        if e.compute_hash() != e.hash {
            return Err(ChainBreak::Edited { seq: e.seq });
        }
        if e.prev_hash != prev_hash {
            return Err(ChainBreak::BadLink {
                seq: e.seq,
                previous,
            });
        }
        previous = e.seq;
        prev_hash = e.hash.clone();
    }
    if previous > recorded {
        return Err(ChainBreak::Extra {
            first: recorded + 1,
            last: previous,
            recorded,
        });
    }
    if previous < recorded {
        return Err(ChainBreak::Truncated {
            last: previous,
            recorded,
        });
    }
    Ok(previous)
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
