//! The request lifecycle as a pure state machine: no I/O, time passed in.
//!
//! ```text
//! create -> Pending --(N distinct approvers)--> Approved --(open, in grant window)--> Active --> Closed
//!              |  deny / cancel / TTL                |  cancel / grant window            | duration ends
//!              v                                     v                                   v
//!   Denied | Cancelled | Expired          Cancelled | Expired                Closed (reason: expired)
//! ```
//!
//! [`create`] and [`apply`] return the new request and the audit events it implies; the broker
//! stores both in one transaction. Every refusal is a [`Refusal`] whose message says what to do.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use thiserror::Error;

use crate::audit::{EventKind, NewEvent};

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

/// Why a command was refused. Each message says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize)]
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

/// A new random request id: `req-` + 8 lowercase hex characters.
pub fn new_request_id() -> String {
    let n: u32 = rand::rng().random();
    format!("req-{n:08x}")
}

/// True for ids in the `req-xxxxxxxx` format.
pub fn is_request_id(s: &str) -> bool {
    s.strip_prefix("req-").is_some_and(|h| {
        h.len() == 8
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The SSM StartSession `Reason` for a request.
pub fn session_reason(id: &str) -> String {
    format!("pink sombrero {id}")
}

/// True for `i-<hex>` and `mi-<hex>` ids.
pub fn is_target_id(s: &str) -> bool {
    let hex = s.strip_prefix("i-").or_else(|| s.strip_prefix("mi-"));
    hex.is_some_and(|h| {
        (8..=17).contains(&h.len())
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

/// `now + d`, saturating at the far future instead of overflowing.
pub fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|td| now.checked_add_signed(td))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The request and the events a successful command produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The request after the command.
    pub request: Request,
    /// What to append to the audit log.
    pub events: Vec<NewEvent>,
}

/// Creates a Pending request with the given id.
pub fn create(
    id: &str,
    new: NewRequest,
    rules: &Rules,
    now: DateTime<Utc>,
) -> Result<Outcome, Refusal> {
    if !rules.requesters.contains(&new.requester) {
        return Err(Refusal::NotARequester { who: new.requester });
    }
    if !is_target_id(&new.target) {
        return Err(Refusal::BadTarget { target: new.target });
    }
    let got = new.reason.trim().chars().count();
    if got < rules.reason_min_length {
        return Err(Refusal::ReasonTooShort {
            got,
            min: rules.reason_min_length,
        });
    }
    if let Some(p) = &rules.incident_pattern {
        match &new.incident {
            None => {
                return Err(Refusal::IncidentRequired {
                    pattern: p.as_str().to_string(),
                });
            }
            Some(i) if !p.is_match(i) => {
                return Err(Refusal::IncidentMismatch {
                    given: i.clone(),
                    pattern: p.as_str().to_string(),
                });
            }
            Some(_) => {}
        }
    }
    if new.duration.is_zero() {
        return Err(Refusal::ZeroDuration);
    }
    if let Some(c) = &new.command {
        // A local check; folds into the field validation of request input.
        crate::command_line::check(c).map_err(|e| Refusal::BadCommand { why: e.to_string() })?;
    }
    if new.duration > rules.max_session_duration {
        return Err(Refusal::DurationTooLong {
            asked: human(new.duration),
            max: human(rules.max_session_duration),
        });
    }
    let request = Request {
        id: id.to_string(),
        requester: new.requester.clone(),
        target: new.target,
        reason: new.reason.trim().to_string(),
        incident: new.incident,
        duration_secs: new.duration.as_secs(),
        state: State::Pending,
        created_at: now,
        updated_at: now,
        pending_expires_at: after(now, rules.request_ttl),
        approvals: Vec::new(),
        denial: None,
        cancelled_by: None,
        escalations: 0,
        review_notices: 0,
        emergency: None,
        approved_at: None,
        grant_expires_at: None,
        opened_at: None,
        session_ends_at: None,
        session_id: None,
        ended_at: None,
        close_reason: None,
        command: new.command,
    };
    let event = NewEvent::new(
        &new.requester,
        EventKind::RequestCreated,
        Some(id),
        json!({
            "target": request.target,
            "reason": request.reason,
            "incident": request.incident,
            "duration_secs": request.duration_secs,
            "command": request.command,
            "pending_expires_at": request.pending_expires_at,
            "approvals_required": rules.approvals_required,
        }),
    );
    Ok(Outcome {
        request,
        events: vec![event],
    })
}

/// Creates an emergency request: checked like an ordinary one, then by the `[emergency]`
/// rules (on, the requester listed, an incident given, `used_today` under the daily limit).
/// It starts in [`State::Emergency`]; its veto window ends at `now + veto_window`.
pub fn create_emergency(
    id: &str,
    new: NewRequest,
    rules: &Rules,
    em: &EmergencyRules,
    used_today: u32,
    now: DateTime<Utc>,
) -> Result<Outcome, Refusal> {
    if !em.enabled {
        return Err(Refusal::emergency_disabled());
    }
    let refuse = |why: String| Err(Refusal::Emergency { why });
    if !em.requesters.contains(&new.requester) {
        return refuse(format!(
            "{} is not among [emergency] requesters; make an ordinary request",
            new.requester
        ));
    }
    if new.incident.as_deref().is_none_or(|i| i.trim().is_empty()) {
        return refuse("an emergency needs its incident reference: pass --incident REF".into());
    }
    if used_today >= em.max_per_day {
        return refuse(format!(
            "{} already made {used_today} emergency request(s) in the last 24 hours (the policy allows {}); make an ordinary request",
            new.requester, em.max_per_day
        ));
    }
    let mut out = create(id, new, rules, now)?;
    let veto_ends_at = after(now, em.veto_window);
    out.request.state = State::Emergency;
    out.request.emergency = Some(EmergencyMark { veto_ends_at });
    for e in &mut out.events {
        e.kind = EventKind::EmergencyRequested;
        e.data["veto_ends_at"] = json!(veto_ends_at);
        e.data["used_today"] = json!(used_today + 1);
        e.data["max_per_day"] = json!(em.max_per_day);
    }
    Ok(out)
}

/// An emergency request's door opens: Approved with its grant window, `emergency_opened`.
fn open_emergency(
    r: &Request,
    n: &mut Request,
    by: &str,
    why: &str,
    rules: &Rules,
    now: DateTime<Utc>,
) -> NewEvent {
    n.state = State::Approved;
    n.approved_at = Some(now);
    n.grant_expires_at = Some(after(now, rules.grant_window));
    NewEvent::new(
        by,
        EventKind::EmergencyOpened,
        Some(&r.id),
        json!({"why": why, "target": r.target, "grant_expires_at": n.grant_expires_at,
               "approvers": n.approvals.iter().map(|a| a.by.as_str()).collect::<Vec<_>>()}),
    )
}

fn wrong_state(r: &Request, cmd: &Command) -> Refusal {
    let hint = match (r.state, cmd) {
        (State::Approved, Command::Approve { .. }) => {
            "; it already has the approvals it needs".to_string()
        }
        (State::Active | State::Closed, Command::Open { .. }) => {
            "; one approved request opens at most one session: create a new request".to_string()
        }
        (s, _) if s.is_final() => "; create a new request".to_string(),
        _ => String::new(),
    };
    Refusal::WrongState {
        id: r.id.clone(),
        state: r.state,
        action: cmd.action().to_string(),
        hint,
    }
}

/// The refusal for any command on a request past its deadline.
pub fn timed_out(r: &Request) -> Refusal {
    let what = match r.state {
        State::Pending => "not approved within the request TTL",
        State::Approved => "not opened within the grant window",
        _ => "the approved duration ended",
    };
    Refusal::TimedOut {
        id: r.id.clone(),
        at: r.due_at().unwrap_or(r.updated_at),
        what: what.to_string(),
    }
}

/// How many of `r`'s approvals still count under `rules`: those given by someone who is an
/// approver now (the broker resolves every earlier approver's current roles), never the
/// requester. Revocation takes effect at the next approval and at open.
fn standing_approvals(r: &Request, rules: &Rules) -> u32 {
    let standing = r
        .approvals
        .iter()
        .filter(|a| a.by != r.requester && rules.approvers.contains(&a.by))
        .count();
    u32::try_from(standing).unwrap_or(u32::MAX)
}

fn check_approver(r: &Request, who: &str, rules: &Rules) -> Result<(), Refusal> {
    if who == r.requester {
        return Err(Refusal::OwnRequest {
            who: who.to_string(),
            id: r.id.clone(),
        });
    }
    if !rules.approvers.contains(who) {
        return Err(Refusal::NotAnApprover {
            who: who.to_string(),
        });
    }
    Ok(())
}

fn check_requester(r: &Request, who: &str, cmd: &Command) -> Result<(), Refusal> {
    if who != r.requester {
        return Err(Refusal::NotTheRequester {
            requester: r.requester.clone(),
            id: r.id.clone(),
            action: cmd.action().to_string(),
        });
    }
    Ok(())
}

/// Applies `cmd` to `r` at `now` under `rules`.
///
/// A request past its deadline refuses everything but `Expire` and `Close` with
/// [`Refusal::TimedOut`]; the broker then applies `Expire`.
pub fn apply(
    r: &Request,
    cmd: Command,
    rules: &Rules,
    now: DateTime<Utc>,
) -> Result<Outcome, Refusal> {
    let due = r.is_due(now);
    if due && !matches!(cmd, Command::Expire | Command::Close { .. }) {
        return Err(timed_out(r));
    }
    let mut n = r.clone();
    n.updated_at = now;
    let id = Some(r.id.as_str());
    let mut events = Vec::new();
    match (&cmd, r.state) {
        (Command::Approve { by, comment }, State::Pending) => {
            check_approver(r, by, rules)?;
            if r.approvals.iter().any(|a| &a.by == by) {
                return Err(Refusal::AlreadyApproved {
                    who: by.clone(),
                    id: r.id.clone(),
                    required: rules.approvals_required,
                });
            }
            n.approvals.push(Decision {
                by: by.clone(),
                at: now,
                comment: comment.clone(),
            });
            let standing = standing_approvals(&n, rules);
            events.push(NewEvent::new(
                by,
                EventKind::ApprovalGiven,
                id,
                json!({"comment": comment, "approvals": standing, "given": n.approvals.len(), "required": rules.approvals_required}),
            ));
            if standing >= rules.approvals_required {
                n.state = State::Approved;
                n.approved_at = Some(now);
                n.grant_expires_at = Some(after(now, rules.grant_window));
                let approvers: Vec<&str> = n
                    .approvals
                    .iter()
                    .map(|a| a.by.as_str())
                    .filter(|by| rules.approvers.contains(*by))
                    .collect();
                events.push(NewEvent::new(
                    by,
                    EventKind::RequestApproved,
                    id,
                    json!({"approvers": approvers, "grant_expires_at": n.grant_expires_at}),
                ));
            }
        }
        (Command::Approve { by, comment }, State::Emergency) => {
            // One approval ends the veto window early.
            check_approver(r, by, rules)?;
            n.approvals.push(Decision {
                by: by.clone(),
                at: now,
                comment: comment.clone(),
            });
            events.push(NewEvent::new(
                by,
                EventKind::ApprovalGiven,
                id,
                json!({"comment": comment, "approvals": 1, "given": 1, "required": 1, "emergency": true}),
            ));
            events.push(open_emergency(
                r,
                &mut n,
                by,
                "approved inside the veto window",
                rules,
                now,
            ));
        }
        (Command::Expire, State::Emergency) => {
            if !due {
                return Err(Refusal::NotDue { id: r.id.clone() });
            }
            events.push(open_emergency(
                r,
                &mut n,
                "sombrero",
                "nobody vetoed it within the window",
                rules,
                now,
            ));
        }
        (Command::Deny { by, comment }, State::Pending | State::Emergency) => {
            check_approver(r, by, rules)?;
            n.state = State::Denied;
            n.ended_at = Some(now);
            n.denial = Some(Decision {
                by: by.clone(),
                at: now,
                comment: comment.clone(),
            });
            events.push(NewEvent::new(
                by,
                EventKind::RequestDenied,
                id,
                json!({"comment": comment}),
            ));
        }
        (Command::Cancel { by }, State::Pending | State::Emergency | State::Approved) => {
            check_requester(r, by, &cmd)?;
            n.state = State::Cancelled;
            n.ended_at = Some(now);
            n.cancelled_by = Some(by.clone());
            events.push(NewEvent::new(
                by,
                EventKind::RequestCancelled,
                id,
                json!({"from": r.state}),
            ));
        }
        (Command::Expire, State::Pending | State::Approved | State::Active) => {
            if !due {
                return Err(Refusal::NotDue { id: r.id.clone() });
            }
            if r.state == State::Active {
                n.state = State::Closed;
                n.close_reason = Some(CloseReason::Expired);
                events.push(NewEvent::new(
                    "sombrero",
                    EventKind::SessionClosed,
                    id,
                    json!({"reason": CloseReason::Expired, "session_id": r.session_id}),
                ));
            } else {
                n.state = State::Expired;
                events.push(NewEvent::new(
                    "sombrero",
                    EventKind::RequestExpired,
                    id,
                    json!({"from": r.state, "deadline": r.due_at()}),
                ));
            }
            n.ended_at = Some(now);
        }
        (Command::Open { by, session_id }, State::Approved) => {
            check_requester(r, by, &cmd)?;
            // Still a requester now: a removed user's approved request does not open.
            if !rules.requesters.contains(by) {
                return Err(Refusal::NotARequester { who: by.clone() });
            }
            let standing = standing_approvals(r, rules);
            // An emergency opens on its own door, not on approvals.
            if r.emergency.is_none() && standing < rules.approvals_required {
                return Err(Refusal::ApprovalsRevoked {
                    id: r.id.clone(),
                    standing,
                    required: rules.approvals_required,
                });
            }
            n.state = State::Active;
            n.opened_at = Some(now);
            n.session_ends_at = Some(after(now, r.duration()));
            n.session_id = session_id.clone();
            events.push(NewEvent::new(
                by,
                EventKind::RequestOpened,
                id,
                json!({"target": r.target, "session_ends_at": n.session_ends_at, "session_id": session_id}),
            ));
        }
        (Command::SessionStarted { session_id }, State::Active) => {
            match &r.session_id {
                Some(existing) if existing != session_id => {
                    return Err(Refusal::SessionAlreadyRecorded {
                        id: r.id.clone(),
                        existing: existing.clone(),
                    });
                }
                _ => {}
            }
            n.session_id = Some(session_id.clone());
            events.push(NewEvent::new(
                &r.requester,
                EventKind::SessionOpened,
                id,
                json!({"session_id": session_id, "target": r.target}),
            ));
        }
        (Command::Close { reason }, State::Active) => {
            n.state = State::Closed;
            n.ended_at = Some(now);
            n.close_reason = Some(reason.clone());
            let actor = match reason {
                CloseReason::Terminated { by } => by.clone(),
                _ => r.requester.clone(),
            };
            events.push(NewEvent::new(
                actor,
                EventKind::SessionClosed,
                id,
                json!({"reason": reason, "session_id": r.session_id}),
            ));
        }
        _ => return Err(wrong_state(r, &cmd)),
    }
    Ok(Outcome { request: n, events })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_target_is_echoed_bounded_and_escaped() {
        let hostile = format!("\u{202e}{}", "x".repeat(2_000_000));
        let said = Refusal::BadTarget { target: hostile }.to_string();
        assert!(said.len() < 300, "{} bytes", said.len());
        assert!(
            !said.contains('\u{202e}') && said.contains("\\u202e"),
            "{said}"
        );
    }
    use chrono::TimeZone;

    const T0: i64 = 1_800_000_000;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(T0 + secs, 0).unwrap()
    }

    fn names(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn rules() -> Rules {
        Rules {
            requesters: names(&["rita", "ann"]),
            approvers: names(&["ann", "bob", "cat", "rita"]),
            approvals_required: 2,
            request_ttl: Duration::from_secs(600),
            grant_window: Duration::from_secs(300),
            max_session_duration: Duration::from_secs(3600),
            reason_min_length: 10,
            incident_pattern: None,
        }
    }

    fn new_req() -> NewRequest {
        NewRequest {
            requester: "rita".into(),
            target: "i-0abc1234".into(),
            reason: "disk full on the primary".into(),
            incident: None,
            duration: Duration::from_secs(1800),
            command: None,
        }
    }

    fn pending() -> Request {
        create("req-0000000a", new_req(), &rules(), t(0))
            .unwrap()
            .request
    }

    fn approve(by: &str) -> Command {
        Command::Approve {
            by: by.into(),
            comment: None,
        }
    }

    fn run(r: &Request, cmds: Vec<Command>, now: DateTime<Utc>) -> Request {
        cmds.into_iter().fold(r.clone(), |r, c| {
            apply(&r, c, &rules(), now).unwrap().request
        })
    }

    fn approved() -> Request {
        run(&pending(), vec![approve("ann"), approve("bob")], t(10))
    }

    fn active() -> Request {
        run(
            &approved(),
            vec![Command::Open {
                by: "rita".into(),
                session_id: None,
            }],
            t(20),
        )
    }

    /// One of each command, by actors allowed to try it (cat approves or denies, rita owns).
    fn all_commands() -> [Command; 7] {
        [
            approve("cat"),
            Command::Deny {
                by: "cat".into(),
                comment: None,
            },
            Command::Cancel { by: "rita".into() },
            Command::Expire,
            Command::Open {
                by: "rita".into(),
                session_id: None,
            },
            Command::SessionStarted {
                session_id: "s-1".into(),
            },
            Command::Close {
                reason: CloseReason::ConnectionLost,
            },
        ]
    }

    fn kinds(o: &Outcome) -> Vec<EventKind> {
        o.events.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn create_makes_pending_with_ttl() {
        let o = create("req-0000000a", new_req(), &rules(), t(0)).unwrap();
        assert_eq!(o.request.state, State::Pending);
        assert_eq!(o.request.pending_expires_at, t(600));
        assert_eq!(kinds(&o), vec![EventKind::RequestCreated]);
        assert_eq!(o.events[0].actor, "rita");
    }

    #[test]
    fn create_refusals() {
        let mut incident_rules = rules();
        incident_rules.incident_pattern = Some(regex::Regex::new("^INC-[0-9]+$").unwrap());
        type Case = (&'static str, fn(&mut NewRequest), Refusal);
        let cases: Vec<Case> = vec![
            (
                "stranger",
                |n| n.requester = "zed".into(),
                Refusal::NotARequester { who: "zed".into() },
            ),
            (
                "bad target",
                |n| n.target = "web-1".into(),
                Refusal::BadTarget {
                    target: "web-1".into(),
                },
            ),
            (
                "short reason",
                |n| n.reason = "  fix   ".into(),
                Refusal::ReasonTooShort { got: 3, min: 10 },
            ),
            (
                "zero duration",
                |n| n.duration = Duration::ZERO,
                Refusal::ZeroDuration,
            ),
            (
                "too long",
                |n| n.duration = Duration::from_secs(7200),
                Refusal::DurationTooLong {
                    asked: "2h".into(),
                    max: "1h".into(),
                },
            ),
        ];
        for (name, edit, want) in cases {
            let mut n = new_req();
            edit(&mut n);
            assert_eq!(
                create("req-0000000a", n, &rules(), t(0)),
                Err(want),
                "{name}"
            );
        }
        assert_eq!(
            create("req-0000000a", new_req(), &incident_rules, t(0)),
            Err(Refusal::IncidentRequired {
                pattern: "^INC-[0-9]+$".into()
            })
        );
        let mut n = new_req();
        n.incident = Some("JIRA-1".into());
        assert!(matches!(
            create("req-0000000a", n, &incident_rules, t(0)),
            Err(Refusal::IncidentMismatch { .. })
        ));
        let mut n = new_req();
        n.incident = Some("INC-42".into());
        assert!(create("req-0000000a", n, &incident_rules, t(0)).is_ok());
    }

    #[test]
    fn two_distinct_approvals_approve() {
        let r = pending();
        let o1 = apply(&r, approve("ann"), &rules(), t(5)).unwrap();
        assert_eq!(o1.request.state, State::Pending);
        assert_eq!(kinds(&o1), vec![EventKind::ApprovalGiven]);
        let o2 = apply(&o1.request, approve("bob"), &rules(), t(6)).unwrap();
        assert_eq!(o2.request.state, State::Approved);
        assert_eq!(o2.request.grant_expires_at, Some(t(306)));
        assert_eq!(
            kinds(&o2),
            vec![EventKind::ApprovalGiven, EventKind::RequestApproved]
        );
    }

    #[test]
    fn threshold_of_one_and_three() {
        let mut one = rules();
        one.approvals_required = 1;
        let o = apply(&pending(), approve("ann"), &one, t(1)).unwrap();
        assert_eq!(o.request.state, State::Approved);
        let mut three = rules();
        three.approvals_required = 3;
        let r = [approve("ann"), approve("bob")]
            .into_iter()
            .fold(pending(), |r, c| {
                apply(&r, c, &three, t(1)).unwrap().request
            });
        assert_eq!(r.state, State::Pending);
        let o = apply(&r, approve("cat"), &three, t(2)).unwrap();
        assert_eq!(o.request.state, State::Approved);
    }

    #[test]
    fn approval_refusals() {
        let one = run(&pending(), vec![approve("ann")], t(1));
        let cases: Vec<(&str, Request, Command, Refusal)> = vec![
            (
                "self approval",
                pending(),
                approve("rita"),
                Refusal::OwnRequest {
                    who: "rita".into(),
                    id: "req-0000000a".into(),
                },
            ),
            (
                "self denial",
                pending(),
                Command::Deny {
                    by: "rita".into(),
                    comment: None,
                },
                Refusal::OwnRequest {
                    who: "rita".into(),
                    id: "req-0000000a".into(),
                },
            ),
            (
                "non approver",
                pending(),
                approve("zed"),
                Refusal::NotAnApprover { who: "zed".into() },
            ),
            (
                "non approver deny",
                pending(),
                Command::Deny {
                    by: "zed".into(),
                    comment: None,
                },
                Refusal::NotAnApprover { who: "zed".into() },
            ),
            (
                "duplicate approver",
                one,
                approve("ann"),
                Refusal::AlreadyApproved {
                    who: "ann".into(),
                    id: "req-0000000a".into(),
                    required: 2,
                },
            ),
        ];
        for (name, r, cmd, want) in cases {
            assert_eq!(apply(&r, cmd, &rules(), t(2)), Err(want), "{name}");
        }
    }

    #[test]
    fn one_denial_ends_it() {
        let r = run(&pending(), vec![approve("ann")], t(1));
        let o = apply(
            &r,
            Command::Deny {
                by: "bob".into(),
                comment: Some("use the runbook".into()),
            },
            &rules(),
            t(2),
        )
        .unwrap();
        assert_eq!(o.request.state, State::Denied);
        assert_eq!(kinds(&o), vec![EventKind::RequestDenied]);
        let e = apply(&o.request, approve("cat"), &rules(), t(3)).unwrap_err();
        assert!(matches!(
            e,
            Refusal::WrongState {
                state: State::Denied,
                ..
            }
        ));
        assert!(e.to_string().contains("create a new request"), "{e}");
    }

    #[test]
    fn cancel_only_by_requester_from_pending_or_approved() {
        for r in [pending(), approved()] {
            let o = apply(&r, Command::Cancel { by: "rita".into() }, &rules(), t(30)).unwrap();
            assert_eq!(o.request.state, State::Cancelled);
            assert_eq!(kinds(&o), vec![EventKind::RequestCancelled]);
            assert_eq!(
                apply(&r, Command::Cancel { by: "ann".into() }, &rules(), t(30)),
                Err(Refusal::NotTheRequester {
                    requester: "rita".into(),
                    id: "req-0000000a".into(),
                    action: "cancel".into()
                })
            );
        }
        assert!(matches!(
            apply(
                &active(),
                Command::Cancel { by: "rita".into() },
                &rules(),
                t(30)
            ),
            Err(Refusal::WrongState { .. })
        ));
    }

    #[test]
    fn expiry_in_each_timed_state() {
        // Pending: TTL 600 s from t(0).
        let p = pending();
        assert_eq!(
            apply(&p, Command::Expire, &rules(), t(599)),
            Err(Refusal::NotDue {
                id: "req-0000000a".into()
            })
        );
        let o = apply(&p, Command::Expire, &rules(), t(600)).unwrap();
        assert_eq!(o.request.state, State::Expired);
        assert_eq!(kinds(&o), vec![EventKind::RequestExpired]);
        // Approved at t(10): grant window 300 s.
        let o = apply(&approved(), Command::Expire, &rules(), t(310)).unwrap();
        assert_eq!(o.request.state, State::Expired);
        // Active at t(20): 1800 s session.
        let a = active();
        assert_eq!(a.session_ends_at, Some(t(1820)));
        let o = apply(&a, Command::Expire, &rules(), t(1820)).unwrap();
        assert_eq!(o.request.state, State::Closed);
        assert_eq!(o.request.close_reason, Some(CloseReason::Expired));
        assert_eq!(kinds(&o), vec![EventKind::SessionClosed]);
    }

    #[test]
    fn commands_after_deadline_are_timed_out() {
        let cases: Vec<(Request, Command, DateTime<Utc>)> = vec![
            (pending(), approve("ann"), t(600)),
            (
                pending(),
                Command::Deny {
                    by: "ann".into(),
                    comment: None,
                },
                t(601),
            ),
            (pending(), Command::Cancel { by: "rita".into() }, t(700)),
            (
                approved(),
                Command::Open {
                    by: "rita".into(),
                    session_id: None,
                },
                t(310),
            ),
            (
                active(),
                Command::SessionStarted {
                    session_id: "s-1".into(),
                },
                t(1820),
            ),
        ];
        for (r, cmd, now) in cases {
            let e = apply(&r, cmd.clone(), &rules(), now).unwrap_err();
            assert!(matches!(e, Refusal::TimedOut { .. }), "{cmd:?}: {e}");
            assert!(e.to_string().contains("create a new request"));
        }
        // Closing a session past its end is still allowed (the session part reports it).
        let o = apply(
            &active(),
            Command::Close {
                reason: CloseReason::Exited { code: Some(0) },
            },
            &rules(),
            t(5000),
        )
        .unwrap();
        assert_eq!(o.request.state, State::Closed);
    }

    #[test]
    fn open_claims_the_one_session() {
        let a = active();
        assert_eq!(a.state, State::Active);
        assert_eq!(a.opened_at, Some(t(20)));
        let again = apply(
            &a,
            Command::Open {
                by: "rita".into(),
                session_id: None,
            },
            &rules(),
            t(21),
        )
        .unwrap_err();
        assert!(again.to_string().contains("at most one session"), "{again}");
        assert_eq!(
            apply(
                &approved(),
                Command::Open {
                    by: "ann".into(),
                    session_id: None
                },
                &rules(),
                t(20)
            ),
            Err(Refusal::NotTheRequester {
                requester: "rita".into(),
                id: "req-0000000a".into(),
                action: "open".into()
            })
        );
        assert!(matches!(
            apply(
                &pending(),
                Command::Open {
                    by: "rita".into(),
                    session_id: None
                },
                &rules(),
                t(20)
            ),
            Err(Refusal::WrongState {
                state: State::Pending,
                ..
            })
        ));
    }

    #[test]
    fn session_started_records_one_id() {
        let o = apply(
            &active(),
            Command::SessionStarted {
                session_id: "s-1".into(),
            },
            &rules(),
            t(30),
        )
        .unwrap();
        assert_eq!(o.request.session_id.as_deref(), Some("s-1"));
        assert_eq!(kinds(&o), vec![EventKind::SessionOpened]);
        let same = apply(
            &o.request,
            Command::SessionStarted {
                session_id: "s-1".into(),
            },
            &rules(),
            t(31),
        );
        assert!(same.is_ok());
        assert_eq!(
            apply(
                &o.request,
                Command::SessionStarted {
                    session_id: "s-2".into()
                },
                &rules(),
                t(31)
            ),
            Err(Refusal::SessionAlreadyRecorded {
                id: "req-0000000a".into(),
                existing: "s-1".into()
            })
        );
        assert!(matches!(
            apply(
                &approved(),
                Command::SessionStarted {
                    session_id: "s-1".into()
                },
                &rules(),
                t(30)
            ),
            Err(Refusal::WrongState { .. })
        ));
    }

    #[test]
    fn close_reasons() {
        for reason in [
            CloseReason::Exited { code: Some(0) },
            CloseReason::Expired,
            CloseReason::Terminated { by: "ann".into() },
            CloseReason::ConnectionLost,
            CloseReason::OpenFailed {
                why: "taint failed".into(),
            },
        ] {
            let o = apply(
                &active(),
                Command::Close {
                    reason: reason.clone(),
                },
                &rules(),
                t(40),
            )
            .unwrap();
            assert_eq!(o.request.state, State::Closed);
            assert_eq!(o.request.close_reason, Some(reason.clone()));
            let want_actor = match &reason {
                CloseReason::Terminated { by } => by.as_str(),
                _ => "rita",
            };
            assert_eq!(o.events[0].actor, want_actor);
        }
    }

    #[test]
    fn every_command_in_every_final_state_is_refused() {
        let finals = [
            run(
                &pending(),
                vec![Command::Deny {
                    by: "ann".into(),
                    comment: None,
                }],
                t(1),
            ),
            run(
                &pending(),
                vec![Command::Cancel { by: "rita".into() }],
                t(1),
            ),
            run(&pending(), vec![Command::Expire], t(600)),
            run(
                &active(),
                vec![Command::Close {
                    reason: CloseReason::ConnectionLost,
                }],
                t(30),
            ),
        ];
        let cmds = all_commands();
        for r in &finals {
            assert!(r.state.is_final());
            for c in &cmds {
                let e = apply(r, c.clone(), &rules(), t(20_000)).unwrap_err();
                assert!(
                    matches!(e, Refusal::WrongState { state, .. } if state == r.state),
                    "{:?} {c:?}: {e}",
                    r.state
                );
            }
        }
    }

    #[test]
    fn approvals_on_approved_and_active_are_refused() {
        for r in [approved(), active()] {
            let e = apply(&r, approve("cat"), &rules(), t(25)).unwrap_err();
            assert!(matches!(e, Refusal::WrongState { .. }), "{e}");
            let e = apply(
                &r,
                Command::Deny {
                    by: "cat".into(),
                    comment: None,
                },
                &rules(),
                t(25),
            )
            .unwrap_err();
            assert!(matches!(e, Refusal::WrongState { .. }), "{e}");
        }
        let e = apply(&approved(), approve("cat"), &rules(), t(25)).unwrap_err();
        assert!(e.to_string().contains("already has the approvals"), "{e}");
    }

    #[test]
    fn pending_cannot_be_closed_or_started() {
        for c in [
            Command::Close {
                reason: CloseReason::ConnectionLost,
            },
            Command::SessionStarted {
                session_id: "s".into(),
            },
        ] {
            assert!(matches!(
                apply(&pending(), c, &rules(), t(1)),
                Err(Refusal::WrongState { .. })
            ));
        }
    }

    /// Every command in every live state, before any deadline: the full transition table.
    #[test]
    fn transition_table() {
        use State::*;
        let cmds = all_commands();
        // Ok(state after) or Err(refusal name), one column per command above.
        let table: [(Request, [Result<State, &str>; 7]); 3] = [
            (
                pending(),
                [
                    Ok(Pending),
                    Ok(Denied),
                    Ok(Cancelled),
                    Err("NotDue"),
                    Err("WrongState"),
                    Err("WrongState"),
                    Err("WrongState"),
                ],
            ),
            (
                approved(),
                [
                    Err("WrongState"),
                    Err("WrongState"),
                    Ok(Cancelled),
                    Err("NotDue"),
                    Ok(Active),
                    Err("WrongState"),
                    Err("WrongState"),
                ],
            ),
            (
                active(),
                [
                    Err("WrongState"),
                    Err("WrongState"),
                    Err("WrongState"),
                    Err("NotDue"),
                    Err("WrongState"),
                    Ok(Active),
                    Ok(Closed),
                ],
            ),
        ];
        for (r, row) in table {
            for (cmd, want) in cmds.iter().zip(row) {
                let got = apply(&r, cmd.clone(), &rules(), t(30))
                    .map(|o| o.request.state)
                    .map_err(|e| {
                        let dbg = format!("{e:?}");
                        dbg.split([' ', '{']).next().unwrap_or_default().to_string()
                    });
                assert_eq!(got, want.map_err(str::to_string), "{:?} x {cmd:?}", r.state);
            }
        }
    }

    #[test]
    fn ids_and_reason_format() {
        let id = new_request_id();
        assert!(is_request_id(&id), "{id}");
        assert!(!is_request_id("req-ABCDEF01"));
        assert!(!is_request_id("req-123"));
        assert_eq!(session_reason("req-0000abcd"), "pink sombrero req-0000abcd");
        assert!(is_target_id("i-0abc1234"));
        assert!(is_target_id("mi-0123456789abcdef0"));
        assert!(!is_target_id("i-XYZ"));
        assert!(!is_target_id("i-"));
    }

    #[test]
    fn state_names_round_trip() {
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(State::parse("bogus"), None);
    }
}
