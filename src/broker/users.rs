//! Users and their TOTP: enrolment, removal, rotation, confirmation, and the code check every
//! audited action goes through.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Broker, BrokerError, Result, SYSTEM_ACTOR, TxResult, check_fields};
use crate::audit::{EventKind, NewEvent};
use crate::mfa::{self, Enrolment, Limits, MfaState, Verdict};
use crate::policy::{Policy, Role};
use crate::store::{Store, UserRecord, WriteTx};
use crate::text::Field;

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

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != SYSTEM_ACTOR
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

impl Broker {
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

    /// The TOTP limits of the policy as it is now.
    pub(super) fn limits(&self) -> Result<Limits> {
        Ok(limits_of(&self.policy()?))
    }
}

/// The TOTP limits `policy` sets.
pub(super) fn limits_of(policy: &Policy) -> Limits {
    Limits {
        max_failures: policy.mfa.max_failures,
        lockout: policy.mfa.lockout,
    }
}

/// The purpose of the code that confirms an enrolment: the only one an unconfirmed user may use.
const ENROLMENT: &str = "enrolment";

/// Refuses (and audits) `name` when their enrolment was never confirmed; a name with no record
/// passes here (the role checks refuse it).
pub(super) fn confirmed(
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
pub(super) fn check_code(
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
