//! Who is calling: taken from the connection, never from anything the client says.
//!
//! A listener learns a [`Peer`] per connection (the Unix socket's peer credentials; over TCP,
//! the IAM ARN the client proved) and inserts it as a request extension. [`require_identity`]
//! then maps it through the policy's `[identities]` table to a sombrero user on every request
//! (so policy edits apply at once) and inserts the [`Identity`] handlers take.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use thiserror::Error;

use crate::broker::BrokerError;
use crate::policy::Policy;
use crate::wire::ErrorKind;
pub use crate::wire::identity::{Identity, Via};

use super::AppState;
use super::error::ApiError;

/// What a listener knows about the other end of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The external identity: an OS user name, `uid:N` when the uid has no name, or an ARN.
    pub external: String,
    /// How it was proved.
    pub via: Via,
}

/// Why a peer is not let in.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// Nothing in the policy or the user list names this peer.
    #[error(
        "{external} is not a sombrero user: enrol a user of that name on the broker host (`sombrero user add`) or map it in the policy's [identities] table"
    )]
    Unknown {
        /// The external identity.
        external: String,
    },
    /// The broker could not be read.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// Maps a peer to a sombrero user: the policy's `[identities]` entry for its name (then, on
/// the Unix socket, for `uid:N`); else, unless the policy sets `implicit_identities = false`,
/// a Unix user whose name is an enrolled sombrero user is that user. IAM identities must be
/// listed.
pub fn resolve(
    policy: &Policy,
    peer: &Peer,
    enrolled: impl FnOnce(&str) -> Result<bool, BrokerError>,
) -> Result<Identity, IdentityError> {
    let identity = |user: &str| Identity {
        user: user.to_string(),
        external: peer.external.clone(),
        via: peer.via.clone(),
    };
    if let Some(user) = policy.identity(&peer.external) {
        return Ok(identity(user));
    }
    if let Via::Unix { uid } = peer.via {
        if let Some(user) = policy.identity(&format!("uid:{uid}")) {
            return Ok(identity(user));
        }
        if policy.implicit_identities && enrolled(&peer.external)? {
            return Ok(identity(&peer.external));
        }
    }
    Err(IdentityError::Unknown {
        external: peer.external.clone(),
    })
}

/// Middleware: resolves the connection's [`Peer`] to an [`Identity`] or answers 403.
/// A request without a `Peer` (a listener that did not set one) is refused: fail closed.
pub async fn require_identity(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(peer) = req.extensions().get::<Peer>().cloned() else {
        tracing::error!("request without a connection identity refused");
        return ApiError::new(
            ErrorKind::Identity,
            "this connection carries no identity; the broker refuses it",
        )
        .into_response();
    };
    let p = peer.clone();
    let resolved = tokio::task::spawn_blocking(move || {
        let policy = state.broker.policy()?;
        resolve(&policy, &p, |name| state.enrolled(name))
    })
    .await;
    match resolved {
        Ok(Ok(identity)) => {
            req.extensions_mut().insert(identity);
            next.run(req).await
        }
        Ok(Err(IdentityError::Unknown { external })) => {
            tracing::warn!(external, via = ?peer.via, "unknown identity refused");
            ApiError::new(
                ErrorKind::Identity,
                IdentityError::Unknown { external }.to_string(),
            )
            .into_response()
        }
        Ok(Err(IdentityError::Broker(e))) => ApiError::from(e).into_response(),
        Err(e) => ApiError::new(ErrorKind::Internal, format!("identity check failed: {e}"))
            .into_response(),
    }
}

/// The OS user name of `uid`, if the passwd database has one.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    loop {
        let mut pwd: libc::passwd = unsafe_zeroed_passwd();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is to a live local of the right type; buf outlives the call
        // and pw_name points into it only until the next iteration.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: getpwuid_r succeeded, so pw_name is a NUL-terminated string inside buf.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        return name.to_str().ok().map(str::to_string);
    }
}

fn unsafe_zeroed_passwd() -> libc::passwd {
    // SAFETY: passwd is a plain C struct of pointers and integers; all-zero is a valid value
    // (null pointers), and getpwuid_r fills it before anything reads it.
    unsafe { std::mem::zeroed() }
}

/// The peer of a Unix socket connection: its uid's user name, else `uid:N`.
pub fn unix_peer(stream: &tokio::net::UnixStream) -> std::io::Result<Peer> {
    let cred = stream.peer_cred()?;
    let uid = cred.uid();
    Ok(Peer {
        external: user_name(uid).unwrap_or_else(|| format!("uid:{uid}")),
        via: Via::Unix { uid },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// alice and bob are enrolled.
    fn resolve_in(policy: &Policy, peer: &Peer) -> Result<Identity, IdentityError> {
        resolve(policy, peer, |n| Ok(n == "alice" || n == "bob"))
    }

    fn unix(name: &str, uid: u32) -> Peer {
        Peer {
            external: name.into(),
            via: Via::Unix { uid },
        }
    }

    #[test]
    fn mapping_then_enrolled_name_then_refused() {
        let b = Policy::parse(
            "requesters = [\"*\"]\napprovers = [\"*\"]\n[identities]\n\"ops-al\" = \"alice\"\n\"uid:1002\" = \"bob\"\n\"arn:aws:iam::1:role/bob\" = \"bob\"\n",
            Path::new("policy.toml"),
        )
        .unwrap();
        assert_eq!(resolve_in(&b, &unix("ops-al", 1001)).unwrap().user, "alice");
        // Distinct approvers on one host: two uids, two sombrero users.
        assert_eq!(resolve_in(&b, &unix("uid:1002", 1002)).unwrap().user, "bob");
        assert_eq!(resolve_in(&b, &unix("nobody2", 1002)).unwrap().user, "bob");
        assert_eq!(resolve_in(&b, &unix("alice", 1003)).unwrap().user, "alice");
        let e = resolve_in(&b, &unix("mallory", 1004)).unwrap_err();
        assert!(
            e.to_string().contains("mallory is not a sombrero user"),
            "{e}"
        );
        let iam = Peer {
            external: "arn:aws:iam::1:role/bob".into(),
            via: Via::Iam,
        };
        assert_eq!(resolve_in(&b, &iam).unwrap().user, "bob");
        // An ARN that happens to equal an enrolled name still needs a mapping.
        let iam = Peer {
            external: "alice".into(),
            via: Via::Iam,
        };
        assert!(resolve_in(&b, &iam).is_err());
    }

    #[test]
    fn implicit_identities_off_needs_a_mapping_for_everyone() {
        let b = Policy::parse(
            "requesters = [\"*\"]\napprovers = [\"*\"]\nimplicit_identities = false\n[identities]\n\"ops-al\" = \"alice\"\n",
            Path::new("policy.toml"),
        )
        .unwrap();
        assert_eq!(resolve_in(&b, &unix("ops-al", 1001)).unwrap().user, "alice");
        let e = resolve_in(&b, &unix("bob", 1002)).unwrap_err();
        assert!(e.to_string().contains("bob is not a sombrero user"), "{e}");
    }

    #[test]
    fn own_uid_has_a_name() {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        assert!(user_name(uid).is_some());
        assert_eq!(user_name(u32::MAX - 7), None);
    }
}
