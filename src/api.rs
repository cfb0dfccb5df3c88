//! The broker as the CLI and the TUI see it: one trait, two homes.
//!
//! [`BrokerApi`] is implemented by [`Broker`] (embedded: this process owns the store) and by
//! [`crate::remote::RemoteBroker`] (a `sombrero serve` daemon). Embedded, the caller names the
//! actor (`--as`, else the OS user). Remote, the daemon names the caller by its connection and
//! acts as that identity whatever the client says; [`BrokerApi::identity`] tells callers which
//! case they are in.

use std::time::{Duration, Instant};

use crate::audit::Event;
use crate::broker::{AuditCheck, Broker, BrokerError, Result, UserInfo};
use crate::policy::{Policy, Role};
use crate::request::{NewRequest, Request, State};
use crate::review_queue::PendingReview;
use crate::wire::ErrorKind;

/// The longest a [`BrokerApi::wait_revision`] call waits.
pub const MAX_WAIT: Duration = Duration::from_secs(25);

/// Everything the CLI access commands and the TUI ask of a broker.
pub trait BrokerApi: Send + Sync {
    /// `Some(user)` when the broker names the caller (remote); `None` when the caller says who
    /// acts (embedded).
    fn identity(&self) -> Result<Option<String>>;
    /// A counter that changes on every write.
    fn revision(&self) -> Result<u64>;
    /// Waits until the revision differs from `after` or `timeout` passes (capped at
    /// [`MAX_WAIT`]); returns the revision then.
    fn wait_revision(&self, after: u64, timeout: Duration) -> Result<u64>;
    /// True when [`BrokerApi::wait_revision`] is a daemon's long-poll (cheap to call in a
    /// loop), false when it polls the store itself (embedded).
    fn waits_for_changes(&self) -> bool {
        false
    }
    /// The policy in force.
    fn policy(&self) -> Result<Policy>;
    /// True when `name` is enrolled with `role` and the policy admits them.
    fn permits(&self, name: &str, role: Role) -> Result<bool>;
    /// Enrolled users, without secrets.
    fn users(&self) -> Result<Vec<UserInfo>>;
    /// Creates a request after checking the requester's TOTP code.
    fn create_request(&self, new: NewRequest, code: &str) -> Result<Request>;
    /// Creates a request through the emergency door (`[emergency]`), announced at once.
    fn create_emergency(&self, new: NewRequest, code: &str) -> Result<Request>;
    /// Sessions waiting for a required review, soonest due first.
    fn pending_reviews(&self) -> Result<Vec<PendingReview>>;
    /// Approves `id` as `by`.
    fn approve(&self, id: &str, by: &str, code: &str, comment: Option<&str>) -> Result<Request>;
    /// Denies `id` as `by`.
    fn deny(&self, id: &str, by: &str, code: &str, comment: Option<&str>) -> Result<Request>;
    /// Cancels `id` as `by` (its requester).
    fn cancel(&self, id: &str, by: &str) -> Result<Request>;
    /// Cuts off the live session of `id` as `by` (an approver, with their TOTP code); the
    /// request closes as theirs.
    fn kill_session(&self, id: &str, by: &str, code: &str) -> Result<Request>;
    /// One request.
    fn get(&self, id: &str) -> Result<Request>;
    /// Requests, newest first, optionally in one state.
    fn list(&self, state: Option<State>) -> Result<Vec<Request>>;
    /// Expires every request past its deadline; returns how many changed.
    fn expire_due(&self) -> Result<usize>;
    /// Audit events after `after_seq`, at most `limit`.
    fn audit_events(&self, after_seq: u64, limit: usize) -> Result<Vec<Event>>;
    /// The audit events of one request.
    fn audit_for_request(&self, id: &str) -> Result<Vec<Event>>;
    /// Checks the whole audit chain.
    fn verify_audit(&self) -> Result<AuditCheck>;
    /// Proves `name` holds their authenticator before acting as them (the TUI's `u`).
    fn switch_user(&self, name: &str, code: &str) -> Result<()>;
}

/// How often the embedded broker's revision is polled while waiting.
const EMBEDDED_POLL: Duration = Duration::from_millis(50);

impl BrokerApi for Broker {
    fn identity(&self) -> Result<Option<String>> {
        Ok(None)
    }
    fn revision(&self) -> Result<u64> {
        Broker::revision(self)
    }
    fn wait_revision(&self, after: u64, timeout: Duration) -> Result<u64> {
        let until = Instant::now() + timeout.min(MAX_WAIT);
        loop {
            let rev = Broker::revision(self)?;
            if rev != after || Instant::now() >= until {
                return Ok(rev);
            }
            std::thread::sleep(EMBEDDED_POLL);
        }
    }
    fn policy(&self) -> Result<Policy> {
        Broker::policy(self)
    }
    fn permits(&self, name: &str, role: Role) -> Result<bool> {
        Broker::permits(self, name, role)
    }
    fn users(&self) -> Result<Vec<UserInfo>> {
        Broker::users(self)
    }
    fn create_request(&self, new: NewRequest, code: &str) -> Result<Request> {
        Broker::create_request(self, new, code)
    }
    fn create_emergency(&self, new: NewRequest, code: &str) -> Result<Request> {
        Broker::create_emergency(self, new, code)
    }
    fn pending_reviews(&self) -> Result<Vec<PendingReview>> {
        Broker::pending_reviews(self)
    }
    fn approve(&self, id: &str, by: &str, code: &str, comment: Option<&str>) -> Result<Request> {
        Broker::approve(self, id, by, code, comment)
    }
    fn deny(&self, id: &str, by: &str, code: &str, comment: Option<&str>) -> Result<Request> {
        Broker::deny(self, id, by, code, comment)
    }
    fn cancel(&self, id: &str, by: &str) -> Result<Request> {
        Broker::cancel(self, id, by)
    }
    fn kill_session(&self, id: &str, by: &str, code: &str) -> Result<Request> {
        Broker::kill_session(self, id, by, code)
    }
    fn get(&self, id: &str) -> Result<Request> {
        Broker::get(self, id)
    }
    fn list(&self, state: Option<State>) -> Result<Vec<Request>> {
        Broker::list(self, state)
    }
    fn expire_due(&self) -> Result<usize> {
        Ok(Broker::expire_due(self)?.len())
    }
    fn audit_events(&self, after_seq: u64, limit: usize) -> Result<Vec<Event>> {
        Broker::audit_events(self, after_seq, limit)
    }
    fn audit_for_request(&self, id: &str) -> Result<Vec<Event>> {
        Broker::audit_for_request(self, id)
    }
    fn verify_audit(&self) -> Result<AuditCheck> {
        Broker::verify_audit(self)
    }
    fn switch_user(&self, name: &str, code: &str) -> Result<()> {
        Broker::verify_code(self, name, code, "switch user")
    }
}

impl ErrorKind {
    /// The kind of a broker error.
    pub fn of(e: &BrokerError) -> ErrorKind {
        match e {
            BrokerError::Remote { kind, .. } => *kind,
            e if e.is_refusal() => ErrorKind::Refused,
            e if e.is_input() => ErrorKind::Input,
            _ => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_decide_exit_status() {
        let e = BrokerError::NotEnrolled { name: "x".into() };
        assert_eq!(ErrorKind::of(&e), ErrorKind::Refused);
        let e = BrokerError::NotFound { id: "x".into() };
        assert_eq!(ErrorKind::of(&e), ErrorKind::Input);
        let e = BrokerError::Remote {
            kind: ErrorKind::LocalOnly,
            message: "m".into(),
        };
        assert!(e.is_input() && !e.is_refusal());
        let e = BrokerError::Remote {
            kind: ErrorKind::Identity,
            message: "m".into(),
        };
        assert!(e.is_refusal());
    }
}
