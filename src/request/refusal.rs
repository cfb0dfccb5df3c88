//! Why the lifecycle says no: every refusal names what to do instead.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::State;

/// Why a command was refused. Each message says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum Refusal {
    /// The person is not allowed to request.
    #[error(
        "{who} may not request access: the policy's requesters do not include them (enrolled with a requester role); ask the platform owner to add them to policy.toml"
    )]
    NotARequester {
        /// Who.
        who: String,
    },
    /// The command of a command request is unusable.
    #[error("--command refused: {why}")]
    BadCommand {
        /// What is wrong with it.
        why: String,
    },
    /// The target id does not look like an instance or managed node id.
    #[error(
        "target {:?} is not an instance id: use i-<hex> (EC2) or mi-<hex> (managed node)",
        crate::text::bounded(target, 40)
    )]
    BadTarget {
        /// The target given.
        target: String,
    },
    /// The reason is too short.
    #[error(
        "the reason is {got} characters; the policy asks for at least {min}: say what is broken and why a shell is needed"
    )]
    ReasonTooShort {
        /// Characters given.
        got: usize,
        /// Characters required.
        min: usize,
    },
    /// An incident reference is required.
    #[error("the policy requires an incident reference matching {pattern}: pass --incident REF")]
    IncidentRequired {
        /// The pattern.
        pattern: String,
    },
    /// The incident reference does not match.
    #[error("incident reference {given:?} does not match the policy's pattern {pattern}")]
    IncidentMismatch {
        /// What was given.
        given: String,
        /// The pattern.
        pattern: String,
    },
    /// Zero-length session asked for.
    #[error("the session duration must be longer than zero: pass e.g. --duration 30m")]
    ZeroDuration,
    /// The session asked for is longer than the policy allows.
    #[error(
        "a {asked} session is longer than the policy's maximum of {max}: ask for at most {max}"
    )]
    DurationTooLong {
        /// Asked, human readable.
        asked: String,
        /// Allowed, human readable.
        max: String,
    },
    /// The request is not in a state where this command applies.
    #[error("request {id} is {state}; it cannot {action} now{hint}")]
    WrongState {
        /// The request.
        id: String,
        /// Its state.
        state: State,
        /// What was attempted.
        action: String,
        /// What to do instead (starts with "; " when present).
        hint: String,
    },
    /// Requesters cannot approve or deny their own request.
    #[error(
        "{who} asked for request {id} and cannot approve or deny it: two other people must approve"
    )]
    OwnRequest {
        /// Who.
        who: String,
        /// The request.
        id: String,
    },
    /// Approvals given by people who are no longer approvers (removed from the policy or
    /// unenrolled) no longer count, and too few remain.
    #[error(
        "request {id} no longer has the approvals it needs: {standing} of {required} approvals still come from current approvers (approvers since removed do not count); ask another approver"
    )]
    ApprovalsRevoked {
        /// The request.
        id: String,
        /// Approvals that still count.
        standing: u32,
        /// Approvals needed.
        required: u32,
    },
    /// The person is not an approver.
    #[error(
        "{who} is not an approver: approvers are enrolled with the approver role and listed in policy.toml's approvers; ask one of them"
    )]
    NotAnApprover {
        /// Who.
        who: String,
    },
    /// The same approver approved twice.
    #[error(
        "{who} has already approved request {id}; approvals must come from {required} different people: ask another approver"
    )]
    AlreadyApproved {
        /// Who.
        who: String,
        /// The request.
        id: String,
        /// Threshold.
        required: u32,
    },
    /// Only the requester may do this.
    #[error("only {requester}, who asked for request {id}, may {action} it")]
    NotTheRequester {
        /// Who the requester is.
        requester: String,
        /// The request.
        id: String,
        /// What was attempted.
        action: String,
    },
    /// The request's time ran out; the broker expires it.
    #[error(
        "request {id} timed out at {at} ({what}); create a new request",
        at = at.to_rfc3339()
    )]
    TimedOut {
        /// The request.
        id: String,
        /// When it timed out.
        at: DateTime<Utc>,
        /// Which deadline.
        what: String,
    },
    /// Expire was asked before the deadline.
    #[error("request {id} is not due to expire yet")]
    NotDue {
        /// The request.
        id: String,
    },
    /// The emergency door refused (off, not listed, no incident, over the daily limit).
    #[error("emergency request refused: {why}")]
    Emergency {
        /// Why, and what to do instead.
        why: String,
    },
    /// A different session id is already recorded.
    #[error(
        "request {id} already has session {existing}; one approved request opens at most one session"
    )]
    SessionAlreadyRecorded {
        /// The request.
        id: String,
        /// The recorded session.
        existing: String,
    },
}

impl Refusal {
    /// The emergency door is closed by the policy.
    pub fn emergency_disabled() -> Refusal {
        Refusal::Emergency {
            why: "the emergency door is off in this policy ([emergency] enabled = false); make an ordinary request".into(),
        }
    }
}
