//! Who a connection acts as, as the daemon names it and the client reads it (`/v1/whoami`).

use serde::{Deserialize, Serialize};

/// How the connection proved who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Via {
    /// The Unix socket's peer credentials (SO_PEERCRED).
    Unix {
        /// The peer's uid.
        uid: u32,
    },
    /// TLS plus a presigned sts:GetCallerIdentity the broker checked with STS.
    Iam,
}

/// The sombrero user a request acts as (handlers take `Extension<Identity>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The sombrero user name.
    pub user: String,
    /// The external identity it was mapped from.
    pub external: String,
    /// How the connection proved it.
    pub via: Via,
}
