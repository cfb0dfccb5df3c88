//! The request lifecycle: each command one transaction that expires what is due, applies
//! [`crate::request::apply`], checks the TOTP code and stores the outcome with its events.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use super::users::{check_code, confirmed, limits_of};
use super::{Broker, BrokerError, Result, SYSTEM_ACTOR, TxResult, check_fields};
use crate::audit::{EventKind, NewEvent};
use crate::policy::{Policy, Role};
use crate::request::{
    self, CloseReason, Command, NewRequest, Outcome, Refusal, Request, Rules, State,
};
use crate::store::{Store, StoreError, WriteTx};
use crate::text::Field;

/// What `begin_open` grants: the claimed request and when its session must end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenGrant {
    /// The request, now Active.
    pub request: Request,
    /// When the session must be terminated.
    pub session_ends_at: DateTime<Utc>,
}

/// The input rule for a new request's human-written fields.
fn check_new(new: &NewRequest) -> Result<()> {
    check_fields(&[
        (Field::User, &new.requester),
        (Field::Target, &new.target),
        (Field::Reason, new.reason.trim()),
    ])?;
    if let Some(incident) = &new.incident {
        check_fields(&[(Field::Incident, incident)])?;
    }
    Ok(())
}

impl Broker {
    /// Creates a request after checking the requester's TOTP code.
    pub fn create_request(&self, new: NewRequest, code: &str) -> Result<Request> {
        check_new(&new)?;
        let policy = self.policy()?;
        let limits = limits_of(&policy);
        let now = self.now();
        let who = new.requester.clone();
        self.write_tx(|tx| -> TxResult<Request> {
            let rules = rules(tx, &policy, &[&who])?;
            let mut id = request::new_request_id();
            while tx.request(&id)?.is_some() {
                id = request::new_request_id();
            }
            // Rules first, so a refused request does not spend the person's code.
            let outcome = match request::create(&id, new.clone(), &rules, now) {
                Ok(outcome) => outcome,
                Err(refusal) => return refuse(tx, &who, None, "request", refusal, now),
            };
            if let Err(e) = check_code(tx, &who, code, "request", Some(&id), limits, now)? {
                return Ok(Err(e));
            }
            Ok(Ok(store_outcome(tx, outcome, now)?))
        })?
    }

    /// Creates an emergency request (the policy's `[emergency]` door) after checking the
    /// requester's TOTP code: state EMERGENCY, announced at once, vetoable by any approver
    /// until its window ends, then approved without the usual approvals. Refusals (door off,
    /// not listed, no incident, over the daily limit) are audited and spend no code. The daily
    /// count is read before the transaction: two emergencies racing in the same instant could
    /// both pass it.
    pub fn create_emergency(&self, new: NewRequest, code: &str) -> Result<Request> {
        check_new(&new)?;
        let policy = self.policy()?;
        let limits = self.limits()?;
        let now = self.now();
        let who = new.requester.clone();
        let day_ago = now - chrono::TimeDelta::hours(24);
        let used_today = self
            .store
            .requests(None)?
            .iter()
            .filter(|r| r.requester == who && r.emergency.is_some() && r.created_at > day_ago)
            .count();
        let used_today = u32::try_from(used_today).unwrap_or(u32::MAX);
        self.write_tx(|tx| -> TxResult<Request> {
            let rules = rules(tx, &policy, &[&who])?;
            let em = match tx.user(&who)? {
                Some(u) => policy.emergency_rules(&who, &u.roles),
                None => policy.emergency_rules(&who, &BTreeSet::new()),
            };
            let mut id = request::new_request_id();
            while tx.request(&id)?.is_some() {
                id = request::new_request_id();
            }
            let outcome =
                match request::create_emergency(&id, new.clone(), &rules, &em, used_today, now) {
                    Ok(outcome) => outcome,
                    Err(refusal) => {
                        return refuse(tx, &who, None, "emergency request", refusal, now);
                    }
                };
            if let Err(e) = check_code(tx, &who, code, "emergency", Some(&id), limits, now)? {
                return Ok(Err(e));
            }
            Ok(Ok(store_outcome(tx, outcome, now)?))
        })?
    }

    /// Approves `id` as `by` after checking their code.
    pub fn approve(
        &self,
        id: &str,
        by: &str,
        code: &str,
        comment: Option<&str>,
    ) -> Result<Request> {
        check_fields(&[(Field::Comment, comment.unwrap_or_default())])?;
        let cmd = Command::Approve {
            by: by.to_string(),
            comment: comment.map(str::to_string),
        };
        self.act(id, by, Some(code), cmd)
    }

    /// Denies `id` as `by` after checking their code; the comment (why) is required.
    pub fn deny(&self, id: &str, by: &str, code: &str, comment: Option<&str>) -> Result<Request> {
        check_fields(&[(Field::Comment, comment.unwrap_or_default())])?;
        if comment.is_none_or(|c| c.trim().is_empty()) {
            return Err(BrokerError::Input(
                "a denial needs a comment saying why (the requester reads it)".into(),
            ));
        }
        let cmd = Command::Deny {
            by: by.to_string(),
            comment: comment.map(str::to_string),
        };
        self.act(id, by, Some(code), cmd)
    }

    /// Cancels `id`; only its requester may.
    pub fn cancel(&self, id: &str, by: &str) -> Result<Request> {
        self.act(id, by, None, Command::Cancel { by: by.to_string() })
    }

    /// Claims the one session of an approved request (Approved -> Active). Call it before
    /// tainting and StartSession; a second call for the same request is refused. The policy's
    /// `mfa.at_open` (default) makes `code` required; a code given is always checked.
    pub fn begin_open(&self, id: &str, by: &str, code: Option<&str>) -> Result<OpenGrant> {
        let cmd = Command::Open {
            by: by.to_string(),
            session_id: None,
        };
        let request = self.act(id, by, code, cmd)?;
        let session_ends_at = request.session_ends_at.ok_or_else(|| {
            StoreError::Corrupt(format!("active request {id} has no session end"))
        })?;
        Ok(OpenGrant {
            request,
            session_ends_at,
        })
    }

    /// Records the SSM session id of an Active request.
    pub fn session_started(&self, id: &str, ssm_session_id: &str) -> Result<Request> {
        let cmd = Command::SessionStarted {
            session_id: ssm_session_id.to_string(),
        };
        self.act(id, SYSTEM_ACTOR, None, cmd)
    }

    /// Closes the session of an Active request. Closing an already Closed request (for example
    /// one the broker expired) returns it unchanged.
    pub fn close_session(&self, id: &str, reason: CloseReason) -> Result<Request> {
        match self.act(id, SYSTEM_ACTOR, None, Command::Close { reason }) {
            Err(BrokerError::Refused(Refusal::WrongState {
                state: State::Closed,
                ..
            })) => self.get(id),
            other => other,
        }
    }

    /// Lets `by` watch the live session of `id` (approvers and reviewers only) and audits the
    /// start; refusals are audited too. Call [`Broker::watch_ended`] when they stop.
    pub fn watch_started(&self, id: &str, by: &str) -> Result<Request> {
        let roles = [Role::Approver, Role::Reviewer];
        self.session_act(id, by, "watch", &roles, |tx, r, now| {
            let data = json!({"target": r.target});
            tx.append(
                NewEvent::new(by, EventKind::SessionWatchStarted, Some(id), data),
                now,
            )?;
            Ok(Ok(r.clone()))
        })
    }

    /// Audits that `by` stopped watching the session of `id`.
    pub fn watch_ended(&self, id: &str, by: &str) -> Result<()> {
        self.append(NewEvent::new(
            by,
            EventKind::SessionWatchEnded,
            Some(id),
            json!({}),
        ))?;
        Ok(())
    }

    /// Cuts off the live session of `id` on an approver's order: the request is closed as
    /// terminated by `by` and the kill audited, in one transaction, after `by`'s TOTP code
    /// (checked only once role and state allow the kill). The caller then ends the session
    /// itself (the process holding it also sees the request closed and stops).
    pub fn kill_session(&self, id: &str, by: &str, code: &str) -> Result<Request> {
        let policy = self.policy()?;
        let limits = self.limits()?;
        self.session_act(id, by, "kill", &[Role::Approver], |tx, r, now| {
            if let Err(e) = check_code(tx, by, code, "kill", Some(id), limits, now)? {
                return Ok(Err(e));
            }
            let rules = rules(tx, &policy, &[])?;
            let reason = CloseReason::Terminated { by: by.to_string() };
            let closed = match request::apply(r, Command::Close { reason }, &rules, now) {
                Ok(outcome) => store_outcome(tx, outcome, now)?,
                Err(refusal) => return Ok(Err(refusal.into())),
            };
            let data = json!({"target": r.target, "session_id": r.session_id});
            tx.append(
                NewEvent::new(by, EventKind::SessionKilled, Some(id), data),
                now,
            )?;
            Ok(Ok(closed))
        })
    }

    /// Checks that `by` holds one of `roles` and that `id` is Active, then runs `then` in the
    /// same transaction; a refusal is audited.
    fn session_act<T>(
        &self,
        id: &str,
        by: &str,
        action: &str,
        roles: &[Role],
        mut then: impl FnMut(&mut dyn WriteTx, &Request, DateTime<Utc>) -> TxResult<T>,
    ) -> Result<T> {
        check_fields(&[(Field::User, by)])?;
        if !request::is_request_id(id) {
            // Never audit an id that cannot exist (it came from a URL or a command line).
            return Err(BrokerError::NotFound { id: id.to_string() });
        }
        let policy = self.policy()?;
        let now = self.now();
        self.write_tx(|tx| -> TxResult<T> {
            let allowed = tx
                .user(by)?
                .is_some_and(|u| roles.iter().any(|&role| policy.permits(by, &u.roles, role)));
            let refusal = match tx.request(id)? {
                _ if !allowed => BrokerError::NotPermitted {
                    name: by.to_string(),
                    action: format!("{action} the session of {id}"),
                },
                None => BrokerError::NotFound { id: id.to_string() },
                Some(r) if r.state != State::Active => BrokerError::Input(format!(
                    "{id} has no live session to {action} (it is {})",
                    r.state
                )),
                Some(r) => match confirmed(tx, by, Some(id), action, now)? {
                    Ok(()) => return then(tx, &r, now),
                    Err(e) => return Ok(Err(e)),
                },
            };
            let data = json!({"action": action, "message": refusal.to_string()});
            tx.append(NewEvent::new(by, EventKind::Refused, Some(id), data), now)?;
            Ok(Err(refusal))
        })?
    }

    /// Expires every request past its deadline; returns the requests that changed.
    pub fn expire_due(&self) -> Result<Vec<Request>> {
        let policy = self.policy()?;
        let now = self.now();
        Ok(self.write_tx(|tx| {
            let rules = rules(tx, &policy, &[])?;
            let mut changed = Vec::new();
            for r in tx.timed_requests()? {
                if r.is_due(now)
                    && let Ok(outcome) = request::apply(&r, Command::Expire, &rules, now)
                {
                    changed.push(store_outcome(tx, outcome, now)?);
                }
            }
            Ok(changed)
        })?)
    }

    /// Runs one lifecycle command in one transaction: expire if due, check MFA, apply, store.
    fn act(&self, id: &str, actor: &str, code: Option<&str>, cmd: Command) -> Result<Request> {
        check_fields(&[(Field::User, actor)])?;
        let policy = self.policy()?;
        let limits = limits_of(&policy);
        let now = self.now();
        let action = cmd.action();
        self.write_tx(|tx| -> TxResult<Request> {
            let Some(r) = tx.request(id)? else {
                return Ok(Err(BrokerError::NotFound { id: id.to_string() }));
            };
            // The earlier approvers too: their approvals count only while they are approvers.
            let mut names = vec![actor];
            names.extend(r.approvals.iter().map(|a| a.by.as_str()));
            let rules = rules(tx, &policy, &names)?;
            let mut r = r;
            if r.is_due(now) && !matches!(cmd, Command::Close { .. }) {
                // Time ran out: record the expiry, then refuse what was asked; an emergency's
                // veto window running out opens its door instead, and the command goes on.
                let emergency = r.state == State::Emergency;
                let expired = match request::apply(&r, Command::Expire, &rules, now) {
                    Ok(outcome) => Some(store_outcome(tx, outcome, now)?),
                    Err(_) => None,
                };
                match expired {
                    Some(opened) if emergency => r = opened,
                    _ => return refuse(tx, actor, Some(id), action, request::timed_out(&r), now),
                }
            }
            // Rules first, so a refused action does not spend the person's code.
            let outcome = match request::apply(&r, cmd.clone(), &rules, now) {
                Ok(outcome) => outcome,
                Err(refusal) => return refuse(tx, actor, Some(id), action, refusal, now),
            };
            match code {
                Some(code) => {
                    if let Err(e) = check_code(tx, actor, code, action, Some(id), limits, now)? {
                        return Ok(Err(e));
                    }
                }
                // Opening needs the code too unless the policy says otherwise; refused before
                // anything is claimed, tainted or started.
                None if matches!(cmd, Command::Open { .. }) && policy.mfa.at_open => {
                    let refusal = BrokerError::CodeNeeded {
                        name: actor.to_string(),
                        action: format!("opening {id}"),
                    };
                    let data = json!({"action": action, "message": refusal.to_string()});
                    tx.append(
                        NewEvent::new(actor, EventKind::Refused, Some(id), data),
                        now,
                    )?;
                    return Ok(Err(refusal));
                }
                // A person acting without a code (cancel; open when the policy allows) must
                // still have confirmed their enrolment.
                None if actor != SYSTEM_ACTOR => {
                    if let Err(e) = confirmed(tx, actor, Some(id), action, now)? {
                        return Ok(Err(e));
                    }
                }
                None => {}
            }
            Ok(Ok(store_outcome(tx, outcome, now)?))
        })?
    }

    // ---- reading ----

    /// One request.
    pub fn get(&self, id: &str) -> Result<Request> {
        self.store
            .request(id)?
            .ok_or_else(|| BrokerError::NotFound { id: id.to_string() })
    }

    /// Requests, newest first, optionally in one state.
    pub fn list(&self, state: Option<State>) -> Result<Vec<Request>> {
        Ok(self.store.requests(state)?)
    }
}

/// The lifecycle rules with the policy's lists resolved for `names` only: the people the
/// transaction acts for, the only ones whose roles the lifecycle checks (the requester of a new
/// request, the approver of an approval or denial); anyone else counts as holding no role, so
/// a name left out refuses, never permits. Reading just those users, rather than every enrolled
/// one, keeps each transaction's cost independent of the team's size.
fn rules(tx: &mut dyn WriteTx, policy: &Policy, names: &[&str]) -> Result<Rules, StoreError> {
    let mut users = Vec::with_capacity(names.len());
    for name in names {
        users.extend(tx.user(name)?);
    }
    Ok(policy.rules(users.iter().map(|u| (u.name.as_str(), &u.roles))))
}

/// Stores a successful outcome and its events.
fn store_outcome(
    tx: &mut dyn WriteTx,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> Result<Request, StoreError> {
    tx.put_request(&outcome.request)?;
    for e in outcome.events {
        tx.append(e, now)?;
    }
    Ok(outcome.request)
}

/// Audits a refusal and hands it back.
fn refuse(
    tx: &mut dyn WriteTx,
    actor: &str,
    id: Option<&str>,
    action: &str,
    refusal: Refusal,
    now: DateTime<Utc>,
) -> TxResult<Request> {
    tracing::info!(actor, action, %refusal, "refused");
    tx.append(
        NewEvent::new(
            actor,
            EventKind::Refused,
            id,
            json!({"action": action, "refusal": refusal, "message": refusal.to_string()}),
        ),
        now,
    )?;
    Ok(Err(refusal.into()))
}
