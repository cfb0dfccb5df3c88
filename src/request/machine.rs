//! The state machine itself: [`create`], [`create_emergency`] and [`apply`], each returning
//! the new request and the audit events it implies, or a [`Refusal`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{
    CloseReason, Command, Decision, EmergencyMark, EmergencyRules, NewRequest, Refusal, Request,
    Rules, State, after, is_target_id,
};
use crate::audit::{EventKind, NewEvent};

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
