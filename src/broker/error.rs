//! What a broker call can fail with, and how the CLI sorts it (refusal or bad input).

use thiserror::Error;

use crate::config::ConfigError;
use crate::mfa::{MfaError, MfaRefusal};
use crate::policy::PolicyError;
use crate::request::Refusal;
use crate::store::StoreError;
use crate::text::{self, FieldError};

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
