//! What the lifecycle works on: the request and its state, the rules it is checked against,
//! and the commands that move it.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for approvals.
    Pending,
    /// An emergency request inside its veto window: any approver may deny it; when the window
    /// passes (or one approver approves) it is approved without the usual approvals.
    Emergency,
    /// Enough approvals; the requester may open the session within the grant window.
    Approved,
    /// An approver said no.
    Denied,
    /// The requester withdrew it.
    Cancelled,
    /// Nobody acted in time (TTL while Pending, grant window while Approved).
    Expired,
    /// The one session is open (or opening).
    Active,
    /// The session ended.
    Closed,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 8] = [
        State::Pending,
        State::Emergency,
        State::Approved,
        State::Denied,
        State::Cancelled,
        State::Expired,
        State::Active,
        State::Closed,
    ];

    /// Lower-case name (`pending`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Emergency => "emergency",
            State::Approved => "approved",
            State::Denied => "denied",
            State::Cancelled => "cancelled",
            State::Expired => "expired",
            State::Active => "active",
            State::Closed => "closed",
        }
    }

    /// Parses a lower-case name.
    pub fn parse(s: &str) -> Option<State> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }

    /// True when nothing more can happen to the request.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Denied | State::Cancelled | State::Expired | State::Closed
        )
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum CloseReason {
    /// The shell exited.
    Exited {
        /// Exit status, if known.
        code: Option<i32>,
    },
    /// The approved duration ended.
    Expired,
    /// Someone cut the session off.
    Terminated {
        /// Who.
        by: String,
    },
    /// The data channel dropped and could not be resumed.
    ConnectionLost,
    /// The session could not be opened (taint, recording or StartSession failed).
    OpenFailed {
        /// What went wrong.
        why: String,
    },
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Exited { code: Some(c) } => write!(f, "exited with status {c}"),
            CloseReason::Exited { code: None } => f.write_str("exited"),
            CloseReason::Expired => f.write_str("approved duration ended"),
            CloseReason::Terminated { by } => write!(f, "terminated by {by}"),
            CloseReason::ConnectionLost => f.write_str("connection lost"),
            CloseReason::OpenFailed { why } => write!(f, "open failed: {why}"),
        }
    }
}

/// One approver's or denier's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Who decided.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Optional comment.
    pub comment: Option<String>,
}

/// A break-glass request and everything that happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// `req-` + 8 lowercase hex characters.
    pub id: String,
    /// Who asked.
    pub requester: String,
    /// Instance or managed node id.
    pub target: String,
    /// Why.
    pub reason: String,
    /// Incident reference, if given.
    pub incident: Option<String>,
    /// Asked session length in seconds.
    pub duration_secs: u64,
    /// Where it is now.
    pub state: State,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
    /// Pending requests expire at this time.
    pub pending_expires_at: DateTime<Utc>,
    /// Approvals so far, in order.
    pub approvals: Vec<Decision>,
    /// The denial, if denied.
    pub denial: Option<Decision>,
    /// Who cancelled, if cancelled.
    pub cancelled_by: Option<String>,
    /// When the threshold was reached.
    pub approved_at: Option<DateTime<Utc>>,
    /// The session must be opened before this time.
    pub grant_expires_at: Option<DateTime<Utc>>,
    /// When the session was claimed.
    pub opened_at: Option<DateTime<Utc>>,
    /// When the session must end.
    pub session_ends_at: Option<DateTime<Utc>>,
    /// The SSM session id, once known.
    pub session_id: Option<String>,
    /// When it closed or expired.
    pub ended_at: Option<DateTime<Utc>>,
    /// Why the session ended.
    pub close_reason: Option<CloseReason>,
    /// The one command this request is for (`request --command`): approvers see it, and
    /// `open` may run only it, never a shell. `None`: a shell (or any command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Escalation steps announced while Pending (`escalate_after`), so each fires once.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub escalations: u32,
    /// Review notices audited for its recording (1: `review_due`; each more: a
    /// `review_overdue`), so each is sent once ([`crate::review_queue`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub review_notices: u32,
    /// Set for a request through the emergency door: when its veto window ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<EmergencyMark>,
}

/// What marks an emergency request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmergencyMark {
    /// Until then any approver may deny it; then it is approved.
    pub veto_ends_at: DateTime<Utc>,
}

/// The `[emergency]` rules an emergency request is judged by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmergencyRules {
    /// Whether the door exists at all.
    pub enabled: bool,
    /// Who may use it (already resolved against enrolled roles).
    pub requesters: BTreeSet<String>,
    /// How long approvers may deny it.
    pub veto_window: Duration,
    /// Emergency requests one person may make in 24 hours.
    pub max_per_day: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Request {
    /// The asked session length.
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_secs)
    }

    /// When this request times out in its current state, if it can.
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        match self.state {
            State::Pending => Some(self.pending_expires_at),
            State::Emergency => self.emergency.as_ref().map(|e| e.veto_ends_at),
            State::Approved => self.grant_expires_at,
            State::Active => self.session_ends_at,
            _ => None,
        }
    }

    /// True when the request has timed out at `now`.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.due_at().is_some_and(|t| now >= t)
    }
}

/// The rules a request is judged by: the policy with its name lists resolved to people.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Who may request.
    pub requesters: BTreeSet<String>,
    /// Who may approve or deny.
    pub approvers: BTreeSet<String>,
    /// Distinct approvals needed (at least 1).
    pub approvals_required: u32,
    /// How long a request may stay Pending.
    pub request_ttl: Duration,
    /// How long an Approved request may wait to be opened.
    pub grant_window: Duration,
    /// Longest session a request may ask for.
    pub max_session_duration: Duration,
    /// Shortest acceptable reason, in characters.
    pub reason_min_length: usize,
    /// If set, the incident reference is required and must match.
    pub incident_pattern: Option<regex::Regex>,
}

/// What a requester asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRequest {
    /// Who asks.
    pub requester: String,
    /// Instance (`i-…`) or managed node (`mi-…`) id.
    pub target: String,
    /// Why.
    pub reason: String,
    /// Incident reference.
    pub incident: Option<String>,
    /// Session length.
    pub duration: Duration,
    /// The one command asked for, if the request is for a command (see [`Request::command`]).
    #[serde(default)]
    pub command: Option<String>,
}

/// A command on an existing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// An approver approves.
    Approve {
        /// Who.
        by: String,
        /// Optional comment.
        comment: Option<String>,
    },
    /// An approver denies.
    Deny {
        /// Who.
        by: String,
        /// Why.
        comment: Option<String>,
    },
    /// The requester withdraws.
    Cancel {
        /// Who.
        by: String,
    },
    /// The request's time is up (TTL, grant window or session duration).
    Expire,
    /// The requester claims the one session (Approved -> Active).
    Open {
        /// Who.
        by: String,
        /// The SSM session id, if already known.
        session_id: Option<String>,
    },
    /// The SSM session id of an Active request is known.
    SessionStarted {
        /// The SSM session id.
        session_id: String,
    },
    /// The session ended (Active -> Closed).
    Close {
        /// Why.
        reason: CloseReason,
    },
}

impl Command {
    /// A verb for messages and audit data.
    pub fn action(&self) -> &'static str {
        match self {
            Command::Approve { .. } => "approve",
            Command::Deny { .. } => "deny",
            Command::Cancel { .. } => "cancel",
            Command::Expire => "expire",
            Command::Open { .. } => "open",
            Command::SessionStarted { .. } => "record the session of",
            Command::Close { .. } => "close",
        }
    }
}
