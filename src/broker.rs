//! The broker: the one place where state changes.
//!
//! Every operation is one store transaction: read the request and users, apply the lifecycle
//! ([`crate::request::apply`]; a refusal here spends no code), check the TOTP code, write the
//! request, append the audit events. Refusals and failed codes still commit, so every attempt
//! is audited.
//! The API is synchronous; async callers run it on a blocking thread.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use thiserror::Error;

use crate::audit::{self, ChainBreak, Event, EventKind, NewEvent};
use crate::config::{ConfigError, Paths};
use crate::mfa::{self, Enrolment, Limits, MfaError, MfaRefusal, MfaState, Verdict};
use crate::policy::{Policy, PolicyError, Role};
use crate::request::{
    self, CloseReason, Command, NewRequest, Outcome, Refusal, Request, Rules, State,
};
use crate::store::any::{AnyStore, StoreSpec};
use crate::store::{Store, StoreError, UserRecord, WriteTx};
use crate::text::{self, Field, FieldError};

pub use crate::audit::SYSTEM_ACTOR;

/// Where "now" comes from; tests set it.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock tests move by hand.
#[derive(Debug)]
pub struct TestClock(Mutex<DateTime<Utc>>);

impl TestClock {
    /// A clock stopped at `t`.
    pub fn at(t: DateTime<Utc>) -> Arc<TestClock> {
        Arc::new(TestClock(Mutex::new(t)))
    }

    /// Sets the time.
    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }

    /// Moves the time forward.
    pub fn advance(&self, d: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t = request::after(*t, d);
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Everything that can go wrong in a broker call.
#[derive(Debug, Error)]
pub enum BrokerError {
    /// A lifecycle rule said no.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The TOTP check said no.
    #[error(transparent)]
    Mfa(#[from] MfaRefusal),
    /// The person is not enrolled.
    #[error("{name} is not enrolled: run `sombrero user add {name} --role ...` first")]
    NotEnrolled {
        /// The name.
        name: String,
    },
    /// The person lacks the role for this action.
    #[error("{name} may not {action}: enrol them with that role and list them in policy.toml")]
    NotPermitted {
        /// The name.
        name: String,
        /// What was attempted.
        action: String,
    },
    /// The person's enrolment was never confirmed with a code from their authenticator.
    #[error(
        "{name}'s enrolment is not confirmed yet: on the broker host run `sombrero user confirm {name}` and type the current code from the authenticator"
    )]
    NotConfirmed {
        /// The name.
        name: String,
    },
    /// The action needs the person's TOTP code and none came with it.
    #[error("{action} needs {name}'s TOTP code: pass --code CODE or type it when asked")]
    CodeNeeded {
        /// Who acted.
        name: String,
        /// What was attempted, e.g. "opening req-1a2b3c4d".
        action: String,
    },
    /// Enrolling a name twice.
    #[error("{name} is already enrolled; pick another name")]
    AlreadyEnrolled {
        /// The name.
        name: String,
    },
    /// No such request.
    #[error(
        "no request {}: `sombrero list` shows the requests",
        text::bounded(id, 40)
    )]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// Bad input from the caller.
    #[error("{0}")]
    Input(String),
    /// A human-written field broke the input rule (refused before anything is audited).
    #[error(transparent)]
    Field(#[from] FieldError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The policy file is missing or wrong.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A stored TOTP secret is unusable.
    #[error(transparent)]
    Secret(#[from] MfaError),
    /// The data dir could not be created.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A broker call could not run to completion (its worker thread failed).
    #[error("internal error: {0}")]
    Internal(String),
    /// A `sombrero serve` daemon refused or failed the call; the message is its own.
    #[error("{message}")]
    Remote {
        /// What kind of failure (decides the exit status).
        kind: crate::wire::ErrorKind,
        /// The daemon's message.
        message: String,
    },
}

impl BrokerError {
    /// True for refusals by a rule (exit status 1 in the CLI).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            BrokerError::Refused(_)
                | BrokerError::Mfa(_)
                | BrokerError::NotEnrolled { .. }
                | BrokerError::NotPermitted { .. }
                | BrokerError::CodeNeeded { .. }
                | BrokerError::NotConfirmed { .. }
                | BrokerError::AlreadyEnrolled { .. }
        ) || matches!(self, BrokerError::Remote { kind, .. } if kind.is_refusal())
    }

    /// True for bad input (exit status 2 in the CLI).
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            BrokerError::NotFound { .. }
                | BrokerError::Input(_)
                | BrokerError::Field(_)
                | BrokerError::Policy(_)
        ) || matches!(self, BrokerError::Remote { kind, .. } if kind.is_input())
    }
}

/// Result of a broker call.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

/// Options for [`Broker::open`].
#[derive(Clone, Default)]
pub struct BrokerOptions {
    /// Policy file (default: `policy.toml` in the data dir).
    pub policy_path: Option<PathBuf>,
    /// Clock (default: the system clock).
    pub clock: Option<Arc<dyn Clock>>,
}

/// A user as others may see them (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// Name.
    pub name: String,
    /// Roles enrolled with.
    pub roles: BTreeSet<Role>,
    /// When enrolled.
    pub enrolled_at: DateTime<Utc>,
    /// When the first code was confirmed.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// Locked out until, if now locked.
    pub locked_until: Option<DateTime<Utc>>,
}

/// What `begin_open` grants: the claimed request and when its session must end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenGrant {
    /// The request, now Active.
    pub request: Request,
    /// When the session must be terminated.
    pub session_ends_at: DateTime<Utc>,
}

/// The outcome of checking the audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCheck {
    /// Events that hold, from the start.
    pub events: u64,
    /// The first break, if any.
    pub broken: Option<ChainBreak>,
}

/// The broker over its store (SQLite or DynamoDB).
pub struct Broker {
    store: AnyStore,
    policy_path: PathBuf,
    policy_created: bool,
    clock: Arc<dyn Clock>,
    /// Audited refusals per identity and minute ([`crate::refusals`]).
    refusals: crate::refusals::Budget,
}

/// Inside a transaction: an outcome to commit, whose value may still be a refusal.
type TxResult<T> = std::result::Result<Result<T>, StoreError>;

/// The input rule ([`text::validate_field`]) for each field, checked before anything is
/// audited, so a refused value is never stored.
fn check_fields(fields: &[(Field, &str)]) -> Result<()> {
    for (field, value) in fields {
        text::validate_field(*field, value)?;
    }
    Ok(())
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

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != SYSTEM_ACTOR
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

impl Broker {
    /// Opens the data dir: creates it, the SQLite store and (first run only) the default
    /// policy file.
    pub fn open(paths: &Paths, opts: BrokerOptions) -> Result<Broker> {
        Broker::open_store(paths, opts, &StoreSpec::Sqlite)
    }

    /// Like [`Broker::open`] over the store `spec` names. The policy file and the recorder key
    /// stay in the data dir; users, their TOTP secrets, requests and the audit log live in the
    /// store.
    pub fn open_store(paths: &Paths, opts: BrokerOptions, spec: &StoreSpec) -> Result<Broker> {
        paths.ensure()?;
        let policy_path = opts.policy_path.unwrap_or_else(|| paths.policy());
        let (_, policy_created) = Policy::load_or_create(&policy_path)?;
        let store = spec.open(paths)?;
        let clock = opts.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let broker = Broker {
            store,
            policy_path,
            policy_created,
            clock,
            refusals: crate::refusals::Budget::default(),
        };
        if policy_created {
            tracing::info!(path = %broker.policy_path.display(), "wrote the default policy");
            broker.append_event(
                SYSTEM_ACTOR,
                EventKind::PolicyCreated,
                None,
                json!({"path": broker.policy_path.display().to_string()}),
            )?;
        }
        Ok(broker)
    }

    /// One write transaction whose refusal events go through the audit budget and whose
    /// notifiable events queue their notifications in the same transaction.
    pub(crate) fn write_tx<T>(
        &self,
        mut f: impl FnMut(&mut dyn WriteTx) -> std::result::Result<T, StoreError>,
    ) -> std::result::Result<T, StoreError> {
        let targets = self.notify_targets();
        crate::refusals::budgeted_write(
            &self.refusals,
            |run| self.store.write(run),
            |tx| f(&mut crate::outbox::Notifying::new(tx, &targets)),
        )
    }

    /// The policy's `[[notify]]` targets; none while the policy cannot be read (the call that
    /// needs the policy reports that itself).
    fn notify_targets(&self) -> Vec<crate::policy::notify::NotifyTarget> {
        match self.policy() {
            Ok(p) => p.notify,
            Err(e) => {
                tracing::warn!(error = %e, "policy unreadable: no notifications queued");
                Vec::new()
            }
        }
    }

    /// The store (the notification worker reads and settles the outbox directly).
    pub(crate) fn store(&self) -> &AnyStore {
        &self.store
    }

    /// Records one summary event for each identity whose refusals went over the budget in a
    /// minute now over (every such minute when `all`: the daemon is stopping).
    pub fn record_suppressed(&self, all: bool) -> Result<usize> {
        let due = self.refusals.take(self.now(), all);
        for s in &due {
            tracing::warn!(
                actor = s.actor,
                suppressed = s.count,
                "refusals over the audit budget"
            );
            let now = self.now();
            self.store.write(|tx| tx.append(s.event(), now))?;
        }
        Ok(due.len())
    }

    /// The current time by the broker's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The policy file in use.
    pub fn policy_path(&self) -> &Path {
        &self.policy_path
    }

    /// True when this `open` wrote the default policy file.
    pub fn policy_created(&self) -> bool {
        self.policy_created
    }

    /// The policy as the file says now (re-read on every call, so edits apply at once).
    pub fn policy(&self) -> Result<Policy> {
        Ok(Policy::load(&self.policy_path)?)
    }

    /// A counter that changes whenever anything is written (poll it to refresh a UI).
    pub fn revision(&self) -> Result<u64> {
        Ok(self.store.revision()?)
    }

    // ---- users and MFA ----

    /// Enrols a user with a fresh TOTP secret. The secret is returned once, to show the person.
    pub fn enrol_user(&self, name: &str, roles: BTreeSet<Role>) -> Result<Enrolment> {
        if !valid_name(name) {
            return Err(BrokerError::Input(format!(
                "{name:?} is not a valid user name: use letters, digits, '.', '_', '-' or '@' (at most 64), not {SYSTEM_ACTOR:?}"
            )));
        }
        if roles.is_empty() {
            return Err(BrokerError::Input(
                "a user needs at least one role: requester, approver, reviewer or both".into(),
            ));
        }
        let enrolment = mfa::enrol(name)?;
        let now = self.now();
        let rec = UserRecord {
            name: name.to_string(),
            roles: roles.clone(),
            secret_base32: enrolment.secret_base32.clone(),
            enrolled_at: now,
            confirmed_at: None,
            mfa: MfaState::default(),
        };
        let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        self.write_tx(|tx| -> TxResult<()> {
            // A removed user (no roles) may be enrolled again, with a new secret.
            if tx.user(name)?.is_some_and(|u| !u.roles.is_empty()) {
                return Ok(Err(BrokerError::AlreadyEnrolled {
                    name: name.to_string(),
                }));
            }
            tx.put_user(&rec)?;
            tx.append(
                NewEvent::new(name, EventKind::UserEnrolled, None, json!({"roles": roles})),
                now,
            )?;
            Ok(Ok(()))
        })??;
        tracing::info!(user = name, "enrolled");
        Ok(enrolment)
    }

    /// Removes `name`: they keep no role and their secret is replaced by one nobody ever sees,
    /// so no code of theirs works; approvals they gave stop counting. The record stays (the
    /// audit log names them) and `enrol_user` may enrol the name again.
    pub fn remove_user(&self, name: &str) -> Result<()> {
        let secret = mfa::enrol(name)?.secret_base32;
        self.replace_user(name, EventKind::UserRemoved, |u| {
            u.roles.clear();
            u.secret_base32 = secret;
        })?;
        tracing::info!(user = name, "removed");
        Ok(())
    }

    /// Gives `name` a new TOTP secret (returned once, to show the person); the old secret no
    /// longer works, and the enrolment waits for a confirming code again.
    pub fn rotate_user(&self, name: &str) -> Result<Enrolment> {
        let enrolment = mfa::enrol(name)?;
        let secret = enrolment.secret_base32.clone();
        self.replace_user(name, EventKind::UserRotated, |u| {
            u.secret_base32 = secret;
            u.confirmed_at = None;
            u.mfa = MfaState::default();
        })?;
        tracing::info!(user = name, "secret rotated");
        Ok(enrolment)
    }

    /// Changes an enrolled (not removed) user's record with `change` and audits `kind`.
    fn replace_user(
        &self,
        name: &str,
        kind: EventKind,
        change: impl FnOnce(&mut UserRecord),
    ) -> Result<()> {
        let now = self.now();
        let mut change = Some(change);
        self.store.write(|tx| -> TxResult<()> {
            let Some(mut user) = tx.user(name)?.filter(|u| !u.roles.is_empty()) else {
                return Ok(Err(BrokerError::NotEnrolled {
                    name: name.to_string(),
                }));
            };
            let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
            let data = json!({"roles": roles});
            if let Some(change) = change.take() {
                change(&mut user);
            }
            tx.put_user(&user)?;
            tx.append(NewEvent::new(name, kind, None, data), now)?;
            Ok(Ok(()))
        })?
    }

    /// Confirms an enrolment with one valid code (audited like every attempt).
    pub fn confirm_enrolment(&self, name: &str, code: &str) -> Result<()> {
        check_fields(&[(Field::User, name)])?;
        let now = self.now();
        let limits = self.limits()?;
        self.write_tx(|tx| -> TxResult<()> {
            let mut user = match check_code(tx, name, code, ENROLMENT, None, limits, now)? {
                Ok(u) => u,
                Err(e) => return Ok(Err(e)),
            };
            user.confirmed_at = Some(now);
            tx.put_user(&user)?;
            tx.append(
                NewEvent::new(name, EventKind::EnrolmentConfirmed, None, json!({})),
                now,
            )?;
            Ok(Ok(()))
        })?
    }

    /// Checks a TOTP code for `user` (e.g. a review sign-off); `purpose` goes in the audit log.
    pub fn verify_code(&self, user: &str, code: &str, purpose: &str) -> Result<()> {
        check_fields(&[(Field::User, user)])?;
        let now = self.now();
        let limits = self.limits()?;
        self.write_tx(|tx| -> TxResult<()> {
            Ok(check_code(tx, user, code, purpose, None, limits, now)?.map(|_| ()))
        })?
    }

    /// Enrolled users, by name, without secrets (removed users are not listed).
    pub fn users(&self) -> Result<Vec<UserInfo>> {
        let now = self.now();
        Ok(self
            .store
            .users()?
            .into_iter()
            .filter(|u| !u.roles.is_empty())
            .map(|u| UserInfo {
                locked_until: u.mfa.locked_until.filter(|t| *t > now),
                name: u.name,
                roles: u.roles,
                enrolled_at: u.enrolled_at,
                confirmed_at: u.confirmed_at,
            })
            .collect())
    }

    /// True when `name` is enrolled with `role` and the policy's list for it admits them
    /// (e.g. before a review sign-off: `permits(name, Role::Reviewer)`, then `verify_code`).
    pub fn permits(&self, name: &str, role: Role) -> Result<bool> {
        let policy = self.policy()?;
        Ok(self
            .store
            .users()?
            .iter()
            .any(|u| u.name == name && policy.permits(name, &u.roles, role)))
    }

    fn limits(&self) -> Result<Limits> {
        let p = self.policy()?;
        Ok(Limits {
            max_failures: p.mfa.max_failures,
            lockout: p.mfa.lockout,
        })
    }

    // ---- the lifecycle ----

    /// Creates a request after checking the requester's TOTP code.
    pub fn create_request(&self, new: NewRequest, code: &str) -> Result<Request> {
        check_new(&new)?;
        let policy = self.policy()?;
        let limits = Limits {
            max_failures: policy.mfa.max_failures,
            lockout: policy.mfa.lockout,
        };
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
        self.append_event(by, EventKind::SessionWatchEnded, Some(id), json!({}))?;
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
        let limits = Limits {
            max_failures: policy.mfa.max_failures,
            lockout: policy.mfa.lockout,
        };
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

    /// Audit events after `after_seq` (0 for all), at most `limit`.
    pub fn audit_events(&self, after_seq: u64, limit: usize) -> Result<Vec<Event>> {
        Ok(self.store.audit_events(after_seq, limit)?)
    }

    /// The audit events of one request.
    pub fn audit_for_request(&self, id: &str) -> Result<Vec<Event>> {
        Ok(self.store.audit_for_request(id)?)
    }

    /// Appends an audit event from another part (taint, replacement, recording, review, rogue
    /// sessions). Lifecycle and MFA kinds are refused: the broker writes those itself.
    pub fn record(
        &self,
        actor: &str,
        kind: EventKind,
        request_id: Option<&str>,
        data: Value,
    ) -> Result<Event> {
        if kind.is_broker_only() {
            return Err(BrokerError::Input(format!(
                "{kind} events are written by the broker as part of the state change; call the broker method for it instead"
            )));
        }
        self.append_event(actor, kind, request_id, data)
    }

    fn append_event(
        &self,
        actor: &str,
        kind: EventKind,
        request_id: Option<&str>,
        data: Value,
    ) -> Result<Event> {
        let now = self.now();
        let e = NewEvent::new(actor, kind, request_id, data);
        Ok(self.write_tx(|tx| tx.append(e.clone(), now))?)
    }

    /// The newest signed audit checkpoint of this broker's keys dir.
    pub fn newest_checkpoint(
        &self,
    ) -> std::result::Result<crate::checkpoint::Checkpoint, ChainBreak> {
        self.store.newest_checkpoint()
    }

    /// Checks the whole audit chain.
    pub fn verify_audit(&self) -> Result<AuditCheck> {
        let (events, recorded) = self.store.audit_all()?;
        Ok(match audit::verify(&events, recorded) {
            // A chain that holds by itself must also match what was signed outside the store.
            Ok(n) => AuditCheck {
                events: n,
                broken: self.store.check_checkpoints(&events).err(),
            },
            Err(b) => AuditCheck {
                events: good_prefix(&b),
                broken: Some(b),
            },
        })
    }
}

/// How many events hold before a break.
fn good_prefix(b: &ChainBreak) -> u64 {
    match b {
        ChainBreak::Edited { seq } | ChainBreak::BadLink { seq, .. } => seq.saturating_sub(1),
        ChainBreak::Missing { previous, .. }
        | ChainBreak::OutOfOrder { previous, .. }
        | ChainBreak::Reordered { previous, .. } => *previous,
        ChainBreak::Extra { recorded, .. } => *recorded,
        ChainBreak::Truncated { last, .. } => *last,
        // Found only after the whole chain held by itself.
        ChainBreak::Cut { last, .. } => *last,
        ChainBreak::Forged { first, .. } => first.saturating_sub(1),
        ChainBreak::Checkpoint { .. } => 0,
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

/// The purpose of the code that confirms an enrolment: the only one an unconfirmed user may use.
const ENROLMENT: &str = "enrolment";

/// Refuses (and audits) `name` when their enrolment was never confirmed; a name with no record
/// passes here (the role checks refuse it).
fn confirmed(
    tx: &mut dyn WriteTx,
    name: &str,
    request_id: Option<&str>,
    purpose: &str,
    now: DateTime<Utc>,
) -> TxResult<()> {
    if tx.user(name)?.is_none_or(|u| u.confirmed_at.is_some()) {
        return Ok(Ok(()));
    }
    tx.append(
        NewEvent::new(
            name,
            EventKind::MfaRejected,
            request_id,
            json!({"purpose": purpose, "why": "enrolment not confirmed"}),
        ),
        now,
    )?;
    Ok(Err(BrokerError::NotConfirmed {
        name: name.to_string(),
    }))
}

/// Checks `code` for `name` inside the transaction, storing the new MFA state and auditing the
/// attempt. Returns the updated user when accepted. Only the enrolment's own confirmation is
/// checked for a user who has not confirmed yet; any other purpose is refused unchecked.
fn check_code(
    tx: &mut dyn WriteTx,
    name: &str,
    code: &str,
    purpose: &str,
    request_id: Option<&str>,
    limits: Limits,
    now: DateTime<Utc>,
) -> TxResult<UserRecord> {
    // A removed user (no roles) is not enrolled any more.
    let Some(mut user) = tx.user(name)?.filter(|u| !u.roles.is_empty()) else {
        tx.append(
            NewEvent::new(
                name,
                EventKind::MfaRejected,
                request_id,
                json!({"purpose": purpose, "why": "not enrolled"}),
            ),
            now,
        )?;
        return Ok(Err(BrokerError::NotEnrolled {
            name: name.to_string(),
        }));
    };
    if purpose != ENROLMENT
        && let Err(e) = confirmed(tx, name, request_id, purpose, now)?
    {
        return Ok(Err(e));
    }
    let (state, verdict) =
        match mfa::verify(name, &user.secret_base32, &user.mfa, code, now, limits) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e.into())),
        };
    user.mfa = state;
    tx.put_user(&user)?;
    let (kind, data) = match &verdict {
        Verdict::Accepted { step } => (EventKind::MfaAccepted, json!({"step": step})),
        Verdict::Wrong { failures } => (
            EventKind::MfaRejected,
            json!({"failures": failures, "max_failures": limits.max_failures}),
        ),
        Verdict::Replayed { failures } => (
            EventKind::MfaReplayed,
            json!({"failures": failures, "max_failures": limits.max_failures}),
        ),
        Verdict::Locked { until } => (EventKind::MfaLocked, json!({"locked_until": until})),
        Verdict::LockedOut { until } => (EventKind::MfaLockedOut, json!({"locked_until": until})),
    };
    let mut data = data;
    if let Value::Object(m) = &mut data {
        m.insert("purpose".into(), Value::String(purpose.to_string()));
    }
    tx.append(NewEvent::new(name, kind, request_id, data), now)?;
    tracing::info!(user = name, purpose, verdict = ?kind, "totp attempt");
    Ok(verdict
        .into_result(name, limits)
        .map(|_| user)
        .map_err(Into::into))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    struct Fixture {
        _dir: tempfile::TempDir,
        clock: Arc<TestClock>,
        broker: Broker,
        secrets: std::collections::HashMap<String, String>,
    }

    impl Fixture {
        fn new(policy: &str) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
            let clock = TestClock::at(Utc.timestamp_opt(1_800_000_000, 0).unwrap());
            let broker = Broker::open(
                &Paths::at(dir.path()),
                BrokerOptions {
                    policy_path: None,
                    clock: Some(clock.clone()),
                },
            )
            .unwrap();
            let mut f = Fixture {
                _dir: dir,
                clock,
                broker,
                secrets: Default::default(),
            };
            for (name, role) in [
                ("rita", "requester"),
                ("ann", "approver"),
                ("bob", "approver"),
            ] {
                f.enrol(name, role);
            }
            // cat stays unconfirmed.
            let e = f
                .broker
                .enrol_user("cat", Role::parse_set("both").unwrap())
                .unwrap();
            f.secrets.insert("cat".into(), e.secret_base32);
            f
        }

        /// Enrols `name` and confirms the enrolment with a code of the current step.
        fn enrol(&mut self, name: &str, role: &str) {
            let e = self
                .broker
                .enrol_user(name, Role::parse_set(role).unwrap())
                .unwrap();
            let code = mfa::code_at(name, &e.secret_base32, self.clock.now()).unwrap();
            self.broker.confirm_enrolment(name, &code).unwrap();
            self.secrets.insert(name.into(), e.secret_base32);
        }

        /// A fresh code: each call moves the clock one step so no code is a replay.
        fn code(&self, who: &str) -> String {
            self.clock.advance(Duration::from_secs(30));
            mfa::code_at(who, &self.secrets[who], self.clock.now()).unwrap()
        }

        fn request(&self) -> Request {
            let code = self.code("rita");
            self.broker
                .create_request(
                    NewRequest {
                        requester: "rita".into(),
                        target: "i-0abc1234".into(),
                        reason: "database disk is full".into(),
                        incident: None,
                        duration: Duration::from_secs(600),
                        command: None,
                    },
                    &code,
                )
                .unwrap()
        }
    }

    const POLICY: &str =
        "requesters = [\"*\"]\napprovers = [\"*\"]\nrequest_ttl = \"10m\"\ngrant_window = \"5m\"\n";

    #[test]
    fn full_flow_and_audit_chain() {
        let f = Fixture::new(POLICY);
        let r = f.request();
        assert_eq!(r.state, State::Pending);
        let code = f.code("ann");
        let r1 = f.broker.approve(&r.id, "ann", &code, Some("ok")).unwrap();
        assert_eq!(r1.state, State::Pending);
        let code = f.code("bob");
        let r2 = f.broker.approve(&r.id, "bob", &code, None).unwrap();
        assert_eq!(r2.state, State::Approved);
        let e = f.broker.begin_open(&r.id, "rita", None).unwrap_err();
        assert!(matches!(e, BrokerError::CodeNeeded { .. }), "{e}");
        assert_eq!(f.broker.get(&r.id).unwrap().state, State::Approved);
        let code = f.code("rita");
        let g = f.broker.begin_open(&r.id, "rita", Some(&code)).unwrap();
        assert_eq!(g.request.state, State::Active);
        let code = f.code("rita");
        assert!(f.broker.begin_open(&r.id, "rita", Some(&code)).is_err());
        f.broker.session_started(&r.id, "rita-0123").unwrap();
        let c = f
            .broker
            .close_session(&r.id, CloseReason::Exited { code: Some(0) })
            .unwrap();
        assert_eq!(c.state, State::Closed);
        let check = f.broker.verify_audit().unwrap();
        assert_eq!(check.broken, None);
        let kinds: Vec<EventKind> = f
            .broker
            .audit_for_request(&r.id)
            .unwrap()
            .iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![
                EventKind::MfaAccepted,
                EventKind::RequestCreated,
                EventKind::MfaAccepted,
                EventKind::ApprovalGiven,
                EventKind::MfaAccepted,
                EventKind::ApprovalGiven,
                EventKind::RequestApproved,
                EventKind::Refused,
                EventKind::MfaAccepted,
                EventKind::RequestOpened,
                EventKind::Refused,
                EventKind::SessionOpened,
                EventKind::SessionClosed
            ]
        );
    }

    #[test]
    fn revoked_approvers_and_removed_requesters_do_not_open() {
        let f = Fixture::new(POLICY);
        let approved = || {
            let r = f.request();
            for who in ["ann", "bob"] {
                let code = f.code(who);
                f.broker.approve(&r.id, who, &code, None).unwrap();
            }
            assert_eq!(f.broker.get(&r.id).unwrap().state, State::Approved);
            r.id
        };
        let (a, b, c) = (approved(), approved(), approved());
        let revoked = |id: &str| {
            let code = f.code("rita");
            let e = f.broker.begin_open(id, "rita", Some(&code)).unwrap_err();
            assert!(
                matches!(
                    e,
                    BrokerError::Refused(Refusal::ApprovalsRevoked { standing: 1, .. })
                ),
                "{e}"
            );
        };
        // ann dropped from the policy's approvers after approving: one of two still counts.
        std::fs::write(
            f.broker.policy_path(),
            POLICY.replace("approvers = [\"*\"]", "approvers = [\"bob\"]"),
        )
        .unwrap();
        revoked(&a);
        std::fs::write(f.broker.policy_path(), POLICY).unwrap();
        // ann removed as a user: the same.
        f.broker.remove_user("ann").unwrap();
        revoked(&b);
        // The requester removed: their approved request does not open.
        f.broker.remove_user("rita").unwrap();
        let e = f.broker.begin_open(&c, "rita", Some("123456")).unwrap_err();
        assert!(
            matches!(e, BrokerError::Refused(Refusal::NotARequester { .. })),
            "{e}"
        );
        assert!(f.broker.users().unwrap().iter().all(|u| u.name != "rita"));
    }

    #[test]
    fn refusals_are_audited_and_typed() {
        let f = Fixture::new(POLICY);
        let r = f.request();
        let code = f.code("rita");
        let e = f.broker.approve(&r.id, "rita", &code, None).unwrap_err();
        assert!(
            matches!(e, BrokerError::Refused(Refusal::OwnRequest { .. })),
            "{e}"
        );
        assert!(e.is_refusal());
        let last = f.broker.audit_events(0, 1000).unwrap();
        assert_eq!(last.last().unwrap().kind, EventKind::Refused);
        // The refusal came before the code check, so the code is still unspent.
        f.broker.verify_code("rita", &code, "test").unwrap();
        let e = f.broker.approve(&r.id, "zed", "123456", None).unwrap_err();
        assert!(
            matches!(e, BrokerError::Refused(Refusal::NotAnApprover { .. })),
            "{e}"
        );
        let e = f.broker.get("req-ffffffff").unwrap_err();
        assert!(e.is_input());
    }

    #[test]
    fn replay_and_lockout() {
        let f = Fixture::new(POLICY);
        let code = f.code("ann");
        f.broker.verify_code("ann", &code, "test").unwrap();
        let e = f.broker.verify_code("ann", &code, "test").unwrap_err();
        assert!(e.to_string().contains("already used"), "{e}");
        for _ in 0..4 {
            assert!(f.broker.verify_code("ann", "000000x", "test").is_err());
        }
        let good = f.code("ann");
        let e = f.broker.verify_code("ann", &good, "test").unwrap_err();
        assert!(e.to_string().contains("locked out"), "{e}");
        assert!(f.broker.users().unwrap()[0].locked_until.is_some());
        f.clock.advance(Duration::from_secs(300));
        let good = f.code("ann");
        f.broker.verify_code("ann", &good, "test").unwrap();
    }

    #[test]
    fn expiry_on_access_and_in_sweep() {
        let f = Fixture::new(POLICY);
        let r = f.request();
        f.clock.advance(Duration::from_secs(600));
        let code = f.code("ann");
        let e = f.broker.approve(&r.id, "ann", &code, None).unwrap_err();
        assert!(e.to_string().contains("timed out"), "{e}");
        assert_eq!(f.broker.get(&r.id).unwrap().state, State::Expired);
        let r2 = f.request();
        f.clock.advance(Duration::from_secs(601));
        let changed = f.broker.expire_due().unwrap();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].id, r2.id);
        assert!(f.broker.expire_due().unwrap().is_empty());
    }

    #[test]
    fn revision_moves_on_every_write_only() {
        let f = Fixture::new(POLICY);
        let before = f.broker.revision().unwrap();
        f.broker
            .record(
                "fleet",
                EventKind::Tainted,
                None,
                json!({"target": "i-0abc1234"}),
            )
            .unwrap();
        let after = f.broker.revision().unwrap();
        assert!(after > before);
        assert!(f.broker.expire_due().unwrap().is_empty());
        assert_eq!(f.broker.revision().unwrap(), after);
    }

    #[test]
    fn permits_follows_roles_and_policy() {
        let f = Fixture::new("requesters = [\"*\"]\napprovers = [\"ann\"]\nreviewers = [\"*\"]\n");
        assert!(f.broker.permits("ann", Role::Approver).unwrap());
        // bob is enrolled as an approver but the policy does not list him.
        assert!(!f.broker.permits("bob", Role::Approver).unwrap());
        assert!(!f.broker.permits("ann", Role::Reviewer).unwrap());
        assert!(!f.broker.permits("zed", Role::Requester).unwrap());
        f.broker
            .enrol_user("rev", Role::parse_set("reviewer").unwrap())
            .unwrap();
        assert!(f.broker.permits("rev", Role::Reviewer).unwrap());
    }

    #[test]
    fn watch_and_kill_follow_roles_and_state() {
        let mut f = Fixture::new(
            "requesters = [\"*\"]\napprovers = [\"ann\", \"bob\"]\nreviewers = [\"rev\"]\n",
        );
        f.enrol("rev", "reviewer");
        let r = f.request();
        // Nothing to watch or kill before the session is live.
        let e = f.broker.kill_session(&r.id, "ann", "123456").unwrap_err();
        assert!(e.is_input(), "{e}");
        for who in ["ann", "bob"] {
            let code = f.code(who);
            f.broker.approve(&r.id, who, &code, None).unwrap();
        }
        let code = f.code("rita");
        f.broker.begin_open(&r.id, "rita", Some(&code)).unwrap();
        assert!(
            f.broker
                .watch_started(&r.id, "rita")
                .unwrap_err()
                .is_refusal()
        );
        assert!(
            f.broker
                .kill_session(&r.id, "rev", "123456")
                .unwrap_err()
                .is_refusal()
        );
        f.broker.watch_started(&r.id, "rev").unwrap();
        f.broker.watch_ended(&r.id, "rev").unwrap();
        // A wrong code is refused and audited; the session lives on.
        let e = f.broker.kill_session(&r.id, "ann", "000000").unwrap_err();
        assert!(matches!(e, BrokerError::Mfa(_)), "{e}");
        assert_eq!(f.broker.get(&r.id).unwrap().state, State::Active);
        let code = f.code("ann");
        let closed = f.broker.kill_session(&r.id, "ann", &code).unwrap();
        assert_eq!(closed.state, State::Closed);
        assert_eq!(
            closed.close_reason,
            Some(CloseReason::Terminated { by: "ann".into() })
        );
        let events: Vec<(EventKind, String)> = f
            .broker
            .audit_for_request(&r.id)
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.actor))
            .collect();
        for (kind, actor) in [
            (EventKind::SessionWatchStarted, "rev"),
            (EventKind::SessionWatchEnded, "rev"),
            (EventKind::SessionKilled, "ann"),
            (EventKind::SessionClosed, "ann"),
        ] {
            assert!(events.contains(&(kind, actor.to_string())), "{events:?}");
        }
        let refusals = events
            .iter()
            .filter(|(k, _)| *k == EventKind::Refused)
            .count();
        assert_eq!(refusals, 3, "every refusal is audited: {events:?}");
        assert!(
            f.broker
                .record("mallory", EventKind::SessionKilled, Some(&r.id), json!({}))
                .is_err()
        );
    }

    #[test]
    fn record_refuses_broker_only_kinds() {
        let f = Fixture::new(POLICY);
        let e = f
            .broker
            .record("mallory", EventKind::RequestApproved, None, json!({}))
            .unwrap_err();
        assert!(matches!(e, BrokerError::Input(_)), "{e}");
        f.broker
            .record(
                "rec",
                EventKind::RecordingSealed,
                Some("req-00000001"),
                json!({"digest": "ab"}),
            )
            .unwrap();
    }

    #[test]
    fn broker_can_move_to_a_blocking_thread() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Broker>();
    }

    #[test]
    fn first_open_writes_default_policy() {
        let dir = tempfile::tempdir().unwrap();
        let b = Broker::open(&Paths::at(dir.path()), BrokerOptions::default()).unwrap();
        assert!(b.policy_created());
        assert_eq!(b.policy().unwrap().approvals_required, 2);
        let b = Broker::open(&Paths::at(dir.path()), BrokerOptions::default()).unwrap();
        assert!(!b.policy_created());
        assert_eq!(
            b.audit_events(0, 10).unwrap()[0].kind,
            EventKind::PolicyCreated
        );
    }

    #[test]
    fn enrolment_rules() {
        let f = Fixture::new(POLICY);
        assert!(matches!(
            f.broker
                .enrol_user("ann", Role::parse_set("approver").unwrap()),
            Err(BrokerError::AlreadyEnrolled { .. })
        ));
        assert!(matches!(
            f.broker
                .enrol_user("bad name", Role::parse_set("approver").unwrap()),
            Err(BrokerError::Input(_))
        ));
        // Until confirmed, cat can do nothing with codes or without them.
        let code = f.code("cat");
        let e = f.broker.verify_code("cat", &code, "test").unwrap_err();
        assert!(matches!(e, BrokerError::NotConfirmed { .. }), "{e}");
        assert!(e.to_string().contains("sombrero user confirm cat"), "{e}");
        let e = f
            .broker
            .create_request(
                NewRequest {
                    requester: "cat".into(),
                    target: "i-0abc1234".into(),
                    reason: "database disk is full".into(),
                    incident: None,
                    duration: Duration::from_secs(600),
                    command: None,
                },
                &code,
            )
            .unwrap_err();
        assert!(matches!(e, BrokerError::NotConfirmed { .. }), "{e}");
        let r = f.request();
        let e = f.broker.approve(&r.id, "cat", &code, None).unwrap_err();
        assert!(matches!(e, BrokerError::NotConfirmed { .. }), "{e}");
        // The refusals spent nothing: the same code confirms.
        f.broker.confirm_enrolment("cat", &code).unwrap();
        let code = f.code("cat");
        f.broker.approve(&r.id, "cat", &code, None).unwrap();
        let cat = f
            .broker
            .users()
            .unwrap()
            .into_iter()
            .find(|u| u.name == "cat")
            .unwrap();
        assert!(cat.confirmed_at.is_some());
    }
}
