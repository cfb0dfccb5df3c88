//! The JSON bodies that travel between [`crate::remote::RemoteBroker`] and `sombrero serve`.

use serde::{Deserialize, Serialize};

use super::ErrorKind;
use crate::request::Refusal;

/// Every error reply: `{"kind": ..., "message": ...}`, plus `"refusal"` when a lifecycle rule
/// said no, so the client holds the same typed refusal the broker made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The broker's message, for the person.
    pub message: String,
    /// The lifecycle rule's refusal, typed (a daemon older than this field sends none).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "refusal_if_known"
    )]
    pub refusal: Option<Refusal>,
}

/// A refusal this client knows, or none: a newer daemon's new rule still arrives as its kind
/// and message rather than making the whole error unreadable.
pub(crate) fn refusal_if_known<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Refusal>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

impl ErrorBody {
    /// An error reply with no typed refusal.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            kind,
            message: message.into(),
            refusal: None,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_crosses_the_wire_typed_and_its_absence_is_read() {
        let refusal = Refusal::ReasonTooShort { got: 4, min: 10 };
        let body = ErrorBody {
            refusal: Some(refusal.clone()),
            ..ErrorBody::new(ErrorKind::Refused, refusal.to_string())
        };
        let text = serde_json::to_string(&body).unwrap();
        let back: ErrorBody = serde_json::from_str(&text).unwrap();
        assert_eq!(back.refusal, Some(refusal));
        // A body without the field (an older daemon, or any other error) has none.
        let plain: ErrorBody = serde_json::from_str(r#"{"kind":"input","message":"bad"}"#).unwrap();
        assert_eq!(plain.refusal, None);
        assert!(!serde_json::to_string(&plain).unwrap().contains("refusal"));
        // A refusal this client does not know keeps the kind and message, untyped.
        let odd = r#"{"kind":"refused","message":"m","refusal":{"refusal":"no_such_rule"}}"#;
        let odd: ErrorBody = serde_json::from_str(odd).unwrap();
        assert_eq!(
            (odd.kind, odd.message.as_str(), odd.refusal),
            (ErrorKind::Refused, "m", None)
        );
    }
}
