//! Between the broker and the UI: snapshots built from the broker, broker intents performed.
//!
//! Everything here is synchronous (the broker is); the driver calls it on a blocking thread.

use crate::api::BrokerApi;
use crate::audit::EventKind;
use crate::broker::BrokerError;
use crate::policy::Role;
use crate::request::{NewRequest, Request, State};
use crate::text::escaped;

use super::action::Done;
use super::intent::Intent;
use super::model::{
    ApprovalItem, AuditRow, BrokerSnapshot, ChainStatus, FlaggedRow, MAX_FLAGGED_SHOWN,
    PolicyLimits, RecordingRow, RequestRow, ReviewRow,
};

/// Audit events shown (the newest); the chain check still covers all of them.
const AUDIT_SHOWN: usize = 2_000;
/// Longest audit detail shown.
const DETAIL_CHARS: usize = 120;

/// Reads everything the screens show, for `user`.
pub fn snapshot(
    broker: &dyn BrokerApi,
    user: &str,
    recordings: Vec<RecordingRow>,
) -> Result<BrokerSnapshot, BrokerError> {
    let policy = broker.policy()?;
    let required = policy.approvals_required;
    let requests = broker.list(None)?;
    let may_approve = broker.permits(user, Role::Approver)?;
    let approvals = requests
        .iter()
        .filter(|r| {
            may_approve
                && matches!(r.state, State::Pending | State::Emergency)
                && r.requester != user
                && !r.approvals.iter().any(|d| d.by == user)
        })
        .map(|r| ApprovalItem {
            request: request_row(r, required),
        })
        .collect();
    let check = broker.verify_audit()?;
    let chain = Some(match check.broken {
        None => ChainStatus::Intact {
            events: check.events,
        },
        Some(b) => ChainStatus::Broken {
            at: check.events + 1,
            reason: b.to_string(),
        },
    });
    let skip = check.events.saturating_sub(AUDIT_SHOWN as u64);
    let events = broker.audit_events(skip, AUDIT_SHOWN)?;
    let rogue_targets = events
        .iter()
        .filter(|e| e.kind == EventKind::RogueSessionFound)
        .filter_map(|e| e.data.get("target").and_then(|t| t.as_str()))
        .map(str::to_string)
        .collect();
    let active_targets = requests
        .iter()
        .filter(|r| r.state == State::Active)
        .map(|r| r.target.clone())
        .collect();
    let flagged = if may_approve {
        live_flags(&events, &requests)
    } else {
        Vec::new()
    };
    let reviewer = may_approve || broker.permits(user, Role::Reviewer)?;
    let reviews = if reviewer {
        // The queue is one view among many: when it cannot be read (say, a daemon older than
        // the review queue), the other screens still show, and the log says why.
        broker
            .pending_reviews()
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read the review queue");
                Vec::new()
            })
            .into_iter()
            .map(|p| ReviewRow {
                request: escaped(&p.request_id),
                requester: escaped(&p.requester),
                target: escaped(&p.target),
                ended_at: p.ended_at,
                due_at: p.due_at,
                sign_offs: p.sign_offs.iter().map(|w| escaped(w)).collect(),
                needed: p.needed,
                emergency: p.emergency,
            })
            .collect()
    } else {
        Vec::new()
    };
    let emergency_allowed = policy.emergency.enabled
        && policy
            .emergency
            .requesters
            .iter()
            .any(|n| n == "*" || n == user)
        && broker.permits(user, Role::Requester)?;
    let audit = events
        .into_iter()
        .rev()
        .map(|e| AuditRow {
            seq: e.seq,
            at: e.at,
            actor: escaped(&e.actor),
            kind: e.kind.as_str(),
            request: e.request_id.as_deref().map(escaped),
            detail: escaped(&short(&e.data.to_string())),
        })
        .collect();
    Ok(BrokerSnapshot {
        user: user.to_string(),
        requests: requests.iter().map(|r| request_row(r, required)).collect(),
        approvals,
        audit,
        chain,
        recordings,
        active_targets,
        rogue_targets,
        flagged,
        reviews,
        reviewer,
        policy: PolicyLimits {
            min_reason_len: policy.reason_min_length,
            max_duration: policy.max_session_duration,
            default_duration: policy
                .max_session_duration
                .min(PolicyLimits::default().default_duration),
            approvals_required: required,
            code_at_open: policy.mfa.at_open,
            emergency_allowed,
            veto_window: policy.emergency.veto_window,
        },
    })
}

/// The `command_flagged` events of sessions live now, newest first.
fn live_flags(events: &[crate::audit::Event], requests: &[Request]) -> Vec<FlaggedRow> {
    events
        .iter()
        .rev()
        .filter(|e| e.kind == EventKind::CommandFlagged)
        .filter_map(|e| {
            let id = e.request_id.as_deref()?;
            let r = requests
                .iter()
                .find(|r| r.id == id && r.state == State::Active)?;
            let field = |k: &str| e.data.get(k).and_then(|v| v.as_str()).unwrap_or_default();
            let label = e
                .data
                .get("labels")
                .and_then(|l| l.get(0))
                .and_then(|l| l.as_str())
                .unwrap_or("more flagged commands: see the recording");
            let summary = match field("severity") {
                "" => label.to_string(),
                severity => format!("{severity}: {label}: {}", field("text")),
            };
            Some(FlaggedRow {
                seq: e.seq,
                request: escaped(id),
                target: escaped(&r.target),
                summary: escaped(&short(&summary)),
            })
        })
        .take(MAX_FLAGGED_SHOWN)
        .collect()
}

fn short(s: &str) -> String {
    if s == "{}" {
        return String::new();
    }
    let mut out: String = s.chars().take(DETAIL_CHARS).collect();
    if s.chars().count() > DETAIL_CHARS {
        out.push('…');
    }
    out
}

/// The row for one request.
pub fn request_row(r: &Request, required: u32) -> RequestRow {
    let deadline = match r.state {
        State::Pending => Some(r.pending_expires_at),
        State::Emergency => r.due_at(),
        State::Approved => r.grant_expires_at,
        State::Active => r.session_ends_at,
        State::Denied | State::Cancelled | State::Expired | State::Closed => None,
    };
    RequestRow {
        id: r.id.clone(),
        // Stored text (an old version's, or another broker's) is shown, never obeyed: ratatui
        // drops control characters but passes bidi overrides.
        requester: escaped(&r.requester),
        target: escaped(&r.target),
        reason: escaped(&r.reason),
        incident: r.incident.as_deref().map(escaped),
        duration_secs: r.duration_secs,
        state: r.state,
        approved_by: r.approvals.iter().map(|d| escaped(&d.by)).collect(),
        approvals_required: required,
        created_at: r.created_at,
        deadline,
        emergency: r.emergency.as_ref().map(|e| e.veto_ends_at),
    }
}

/// Performs a broker intent as `user`. Returns `None` for intents that are not the broker's.
pub fn perform(
    broker: &dyn BrokerApi,
    user: &str,
    intent: &Intent,
) -> Option<Result<Done, BrokerError>> {
    Some(match intent {
        Intent::CreateRequest {
            target,
            reason,
            incident,
            duration,
            code,
            emergency,
        } => {
            let new = NewRequest {
                requester: user.to_string(),
                target: target.clone(),
                reason: reason.clone(),
                incident: incident.clone(),
                duration: *duration,
                command: None,
            };
            let created = if *emergency {
                broker.create_emergency(new, code)
            } else {
                broker.create_request(new, code)
            };
            created.map(|r| Done::RequestCreated {
                id: r.id,
                emergency: r.emergency.map(|e| e.veto_ends_at),
            })
        }
        Intent::Approve { id, code, comment } => broker
            .approve(id, user, code, comment.as_deref())
            .map(|r| Done::Approved {
                approvals: r.approvals.len(),
                complete: r.state != State::Pending,
                requester: r.requester,
                id: r.id,
            }),
        Intent::Deny { id, code, comment } => broker
            .deny(id, user, code, Some(comment))
            .map(|r| Done::Denied { id: r.id }),
        Intent::Cancel { id } => broker
            .cancel(id, user)
            .map(|r| Done::Cancelled { id: r.id }),
        Intent::Kill { id, code } => broker
            .kill_session(id, user, code)
            .map(|r| Done::Killed { id: r.id }),
        Intent::SwitchUser { name, code } => broker
            .switch_user(name, code)
            .map(|()| Done::UserSwitched { name: name.clone() }),
        _ => return None,
    })
}
