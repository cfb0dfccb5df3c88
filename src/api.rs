//! The broker as the CLI and the TUI see it: one trait, two homes.
//!
//! [`BrokerApi`] is implemented by [`Broker`] (embedded: this process owns the store) and by
//! [`crate::remote::RemoteBroker`] (a `sombrero serve` daemon). Embedded, the caller names the
//! actor (`--as`, else the OS user). Remote, the daemon names the caller by its connection and
//! acts as that identity whatever the client says; [`BrokerApi::identity`] tells callers which
//! case they are in.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::audit::Event;
use crate::broker::{AuditCheck, Broker, BrokerError, Result, UserInfo};
use crate::policy::{Policy, Role};
use crate::request::{NewRequest, Request, State};

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

/// What kind of failure an API error is; decides the CLI's exit status on both sides of the
/// wire (refused: 1, input: 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A rule said no (lifecycle, TOTP, enrolment, role).
    Refused,
    /// Bad input or an unknown request.
    Input,
    /// The connection's identity maps to no sombrero user.
    Identity,
    /// Only possible on the broker host (enrolment shows a secret).
    LocalOnly,
    /// The identity is known, but its roles do not let it see this (recordings).
    Forbidden,
    /// The daemon could not be reached or answered nonsense.
    Unavailable,
    /// Something broke inside the broker.
    Internal,
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

    /// Exit status 1 in the CLI.
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            ErrorKind::Refused | ErrorKind::Identity | ErrorKind::Forbidden
        )
    }

    /// Exit status 2 in the CLI.
    pub fn is_input(self) -> bool {
        matches!(self, ErrorKind::Input | ErrorKind::LocalOnly)
    }
}

/// Where a broker daemon listens (`--listen`) or is reached (`--broker`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix:PATH`: a Unix socket; the peer's OS user is the identity.
    Unix(PathBuf),
    /// `tcp://HOST:PORT` (or `https://HOST:PORT`): TLS plus an AWS IAM identity proof.
    Tcp(String),
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Endpoint, String> {
        if let Some(rest) = s.strip_prefix("unix:") {
            // Accept `unix:///run/x.sock` as well as `unix:/run/x.sock`.
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(format!(
                    "{s:?} names no socket: write unix:/path/to/sombrero.sock"
                ));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        // `https://` is the client's spelling of the same TLS endpoint.
        if let Some(addr) = s
            .strip_prefix("tcp://")
            .or_else(|| s.strip_prefix("https://").map(|a| a.trim_end_matches('/')))
        {
            if addr
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(format!(
                    "{s:?} is not https://HOST:PORT (or tcp://HOST:PORT)"
                ));
            }
            return Ok(Endpoint::Tcp(addr.to_string()));
        }
        Err(format!(
            "{s:?} is not a broker address: write unix:/path/to/sombrero.sock or https://HOST:PORT"
        ))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// The bodies that travel between [`crate::remote::RemoteBroker`] and `sombrero serve`.
pub mod wire {
    use serde::{Deserialize, Serialize};

    use super::ErrorKind;

    /// Every error reply: `{"kind": ..., "message": ...}`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct ErrorBody {
        /// What kind of failure.
        pub kind: ErrorKind,
        /// The broker's message, for the person.
        pub message: String,
    }

    /// `POST /v1/requests`: the requester is the connection's identity. Unknown fields (a
    /// `requester`, say) are refused, not ignored.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct CreateBody {
        /// Instance or managed node id.
        pub target: String,
        /// Why.
        pub reason: String,
        /// Incident reference.
        pub incident: Option<String>,
        /// Session length in seconds.
        pub duration_secs: u64,
        /// The one command the request is for, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub command: Option<String>,
        /// The requester's TOTP code.
        pub code: String,
    }

    /// `POST /v1/requests/{id}/approve` and `/deny`; the approver is the connection's identity.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct DecideBody {
        /// The approver's TOTP code.
        pub code: String,
        /// Optional comment (required to deny).
        pub comment: Option<String>,
    }

    /// `POST /v1/requests/{id}/kill`; the approver is the connection's identity.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct KillBody {
        /// The approver's TOTP code.
        pub code: String,
    }

    /// `GET /v1/revision`.
    #[derive(Debug, Clone, Copy, Serialize, Deserialize)]
    pub struct RevisionReply {
        /// The store's revision.
        pub revision: u64,
    }

    /// `GET /v1/policy`: the file's text, so the client parses exactly what the broker does.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct PolicyReply {
        /// Where the file is on the broker host.
        pub path: String,
        /// Its text.
        pub text: String,
    }

    /// `GET /v1/permits/{role}`.
    #[derive(Debug, Clone, Copy, Serialize, Deserialize)]
    pub struct PermitsReply {
        /// Whether the user may act in the role.
        pub permitted: bool,
    }

    /// `POST /v1/recordings/{name}/review`; the reviewer is the connection's identity.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ReviewBody {
        /// The reviewer's TOTP code.
        pub code: String,
        /// What the review concluded.
        pub comment: String,
    }

    /// `GET /v1/keys/recorder`: the public key the broker seals recordings with.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct RecorderKeyReply {
        /// Always `ed25519`.
        pub algorithm: String,
        /// The public key, 64 hex digits (as `sombrero keys show` prints it on the broker host).
        pub public_key: String,
    }

    /// `POST /v1/expire`.
    #[derive(Debug, Clone, Copy, Serialize, Deserialize)]
    pub struct ExpireReply {
        /// Requests that changed.
        pub expired: usize,
    }

    /// `POST /v1/reap`.
    #[derive(Debug, Clone, Copy, Serialize, Deserialize)]
    pub struct ReapBody {
        /// Say what would be done, change nothing.
        pub dry_run: bool,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            "unix:/run/s.sock".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/run/s.sock".into())
        );
        assert_eq!(
            "unix:///run/s.sock".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/run/s.sock".into())
        );
        assert_eq!(
            "tcp://0.0.0.0:8443".parse::<Endpoint>().unwrap(),
            Endpoint::Tcp("0.0.0.0:8443".into())
        );
        assert_eq!(
            "https://broker.example:8443/".parse::<Endpoint>().unwrap(),
            Endpoint::Tcp("broker.example:8443".into())
        );
        for bad in [
            "unix:",
            "tcp://nohost",
            "tcp://:1",
            "http://x:1",
            "/run/s.sock",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
        assert_eq!(
            Endpoint::Unix("/a".into()).to_string(),
            "unix:/a".to_string()
        );
    }

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
