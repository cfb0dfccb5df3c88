//! View-model snapshots: what the screens show, decoupled from the broker's and fleet's types.
//!
//! The driver builds these from the real parts; views and `update` only ever see these.

use chrono::{DateTime, Utc};

use crate::request::State;

/// A list that may still be loading or may have failed to load.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Loadable<T> {
    /// Not loaded yet.
    #[default]
    Loading,
    /// Loading failed; the message says why and what to do.
    Failed(String),
    /// Loaded (possibly empty).
    Ready(T),
}

impl<T> Loadable<T> {
    /// The loaded value, if any.
    pub fn ready(&self) -> Option<&T> {
        match self {
            Loadable::Ready(v) => Some(v),
            _ => None,
        }
    }
}

/// A badge on a fleet node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Badge {
    /// Touched by a break-glass session: will be replaced.
    Tainted,
    /// Being replaced now.
    Replacing,
    /// Has a session that did not go through pink-sombrero.
    Rogue,
    /// A pink-sombrero session is open on it.
    InSession,
    /// Older than the policy's `max_instance_age`: due for replacement.
    Old,
    /// Tainted, and Systems Manager does not list it (found by its tag; still replaced).
    TaintedNotInSsm,
    /// Tainted, and its agent does not answer (still replaced).
    TaintedAgentLost,
}

impl Badge {
    /// The text shown on screen.
    pub fn label(self) -> &'static str {
        match self {
            Badge::Tainted => "TAINTED",
            Badge::Replacing => "REPLACING",
            Badge::Rogue => "ROGUE",
            Badge::InSession => "IN SESSION",
            Badge::Old => "OLD",
            Badge::TaintedNotInSsm => crate::fleet::AgentLost::NotInSsm.badge(),
            Badge::TaintedAgentLost => crate::fleet::AgentLost::ConnectionLost.badge(),
        }
    }
}

/// One node of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetRow {
    /// Instance or managed-node id (`i-...`, `mi-...`).
    pub id: String,
    /// Human name (Name tag or computer name).
    pub name: String,
    /// Agent ping status (`Online`, `ConnectionLost`, ...).
    pub ping: String,
    /// Platform (`Linux`, ...).
    pub platform: String,
    /// When the node's age counts from (launch of an EC2 instance, else registration), if known.
    pub since: Option<DateTime<Utc>>,
    /// Badges to show.
    pub badges: Vec<Badge>,
}

/// How the TUI names a request's state: as the CLI does, but an emergency in its veto window
/// in capitals, as loud as its banner.
pub fn state_label(state: State) -> &'static str {
    match state {
        State::Emergency => "EMERGENCY",
        other => other.as_str(),
    }
}

/// One break-glass request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRow {
    /// Request id.
    pub id: String,
    /// Who asked.
    pub requester: String,
    /// Target node id.
    pub target: String,
    /// Why.
    pub reason: String,
    /// Incident reference, if given.
    pub incident: Option<String>,
    /// Session length asked for, in seconds.
    pub duration_secs: u64,
    /// Lifecycle state.
    pub state: State,
    /// Approvers so far, in order.
    pub approved_by: Vec<String>,
    /// Approvals required by policy.
    pub approvals_required: u32,
    /// When it was asked.
    pub created_at: DateTime<Utc>,
    /// When the current phase ends (approval TTL, veto window, grant window or session end), if
    /// any.
    pub deadline: Option<DateTime<Utc>>,
    /// When its veto window ends, for a request through the emergency door (whatever its state).
    pub emergency: Option<DateTime<Utc>>,
}

impl RequestRow {
    /// Whether every open TUI must show it in the emergency banner: in its veto window, or its
    /// session is live.
    pub fn loud(&self) -> bool {
        self.emergency.is_some() && matches!(self.state, State::Emergency | State::Active)
    }
}

/// One request waiting for this user's approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalItem {
    /// The request.
    pub request: RequestRow,
}

/// Result of verifying the audit chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainStatus {
    /// Every link verified.
    Intact {
        /// Number of events checked.
        events: u64,
    },
    /// The first broken link.
    Broken {
        /// Sequence number of the first bad event.
        at: u64,
        /// What is wrong.
        reason: String,
    },
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Sequence number in the chain.
    pub seq: u64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// Event kind (`request.created`, `mfa.failed`, ...).
    pub kind: String,
    /// Request id, if the event concerns one.
    pub request: Option<String>,
    /// Short human detail.
    pub detail: String,
}

/// A command flagged in a session that is live now (see `recording::live_flags`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlaggedRow {
    /// The `command_flagged` event's sequence number.
    pub seq: u64,
    /// The request whose session it is.
    pub request: String,
    /// Its target.
    pub target: String,
    /// Severity, label and the command (escaped, bounded).
    pub summary: String,
}

/// Integrity of a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    /// Chain and signature verify.
    Sealed,
    /// Chain verifies up to the end, but it was never sealed (cut short).
    Unsealed,
    /// Verification failed; names the first bad line.
    Broken(String),
}

/// One session recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRow {
    /// The cast file.
    pub path: std::path::PathBuf,
    /// Request id it belongs to.
    pub request: String,
    /// Target node.
    pub target: String,
    /// Who worked in it.
    pub user: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Length in seconds.
    pub duration_secs: u64,
    /// Integrity verdict.
    pub integrity: Integrity,
    /// Reviewer who signed it off, if any.
    pub reviewed_by: Option<String>,
    /// Its risk-flagged commands (`None`: not counted, e.g. unreadable).
    pub flags: Option<FlagSummary>,
}

/// How much of a recording the risk rules flagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagSummary {
    /// Flagged commands by their highest severity, e.g. `2H 1M`; `-` for none.
    pub text: String,
    /// The most severe flag raised, if any.
    pub worst: Option<FlagLevel>,
}

/// A risk flag's severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagLevel {
    /// Destruction, hiding tracks, persistence, disabling controls...
    High,
    /// Privilege and the like.
    Medium,
    /// Worth a look.
    Low,
}

/// The policy limits the request form shows and checks before asking the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLimits {
    /// Minimum reason length in characters.
    pub min_reason_len: usize,
    /// Longest grant.
    pub max_duration: std::time::Duration,
    /// Default grant proposed by the form.
    pub default_duration: std::time::Duration,
    /// Approvals required.
    pub approvals_required: u32,
    /// Whether opening a session needs the requester's TOTP code (`mfa.at_open`).
    pub code_at_open: bool,
    /// Whether the acting user may use the emergency door (`[emergency]` on and lists them).
    pub emergency_allowed: bool,
    /// How long approvers may deny an emergency request.
    pub veto_window: std::time::Duration,
}

impl Default for PolicyLimits {
    fn default() -> Self {
        PolicyLimits {
            min_reason_len: 10,
            max_duration: std::time::Duration::from_secs(3600),
            default_duration: std::time::Duration::from_secs(30 * 60),
            approvals_required: 2,
            code_at_open: true,
            emergency_allowed: false,
            veto_window: std::time::Duration::from_secs(120),
        }
    }
}

/// One session waiting for its recording's review (from the broker's review queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRow {
    /// The request the session belonged to.
    pub request: String,
    /// Who had the session.
    pub requester: String,
    /// Where.
    pub target: String,
    /// When the session ended.
    pub ended_at: DateTime<Utc>,
    /// When the review is due.
    pub due_at: DateTime<Utc>,
    /// Reviewers who signed off so far.
    pub sign_offs: Vec<String>,
    /// Sign-offs needed.
    pub needed: u32,
    /// A session through the emergency door.
    pub emergency: bool,
}

/// Live flagged commands kept in a snapshot.
pub const MAX_FLAGGED_SHOWN: usize = 5;

/// Everything the broker side shows, read in one go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerSnapshot {
    /// The acting user it was read for (its approval queue is theirs); empty: any.
    pub user: String,
    /// All requests, newest first.
    pub requests: Vec<RequestRow>,
    /// Requests the acting user may approve, newest first.
    pub approvals: Vec<ApprovalItem>,
    /// Audit events, newest first.
    pub audit: Vec<AuditRow>,
    /// Audit chain verdict.
    pub chain: Option<ChainStatus>,
    /// Recordings, newest first.
    pub recordings: Vec<RecordingRow>,
    /// Targets with a pink-sombrero session open now.
    pub active_targets: Vec<String>,
    /// Targets where a session that bypassed pink-sombrero was found (audit log).
    pub rogue_targets: Vec<String>,
    /// Commands flagged in sessions live now, newest first (for approvers; at most
    /// [`MAX_FLAGGED_SHOWN`]).
    pub flagged: Vec<FlaggedRow>,
    /// Sessions waiting for a review, soonest due first (approvers and reviewers; else empty).
    pub reviews: Vec<ReviewRow>,
    /// Whether the acting user sees the review queue (approver or reviewer).
    pub reviewer: bool,
    /// Policy limits.
    pub policy: PolicyLimits,
}

/// One demo user's current and next TOTP codes (demo mode only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoCode {
    /// User name.
    pub user: String,
    /// Their role in the demo (`requester`, `approver`).
    pub role: String,
    /// The current 6-digit code.
    pub code: String,
    /// The next step's code: also accepted now (one step of skew), so an action right after
    /// one that spent the current code need not wait for it.
    pub next: String,
    /// Seconds until the current code changes.
    pub seconds_left: u64,
}
