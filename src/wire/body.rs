//! The JSON bodies that travel between [`crate::remote::RemoteBroker`] and `sombrero serve`.

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
