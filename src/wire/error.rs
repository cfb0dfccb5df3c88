//! The kinds of failure both sides of the wire agree on.

use serde::{Deserialize, Serialize};

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
