//! Fleet errors: what failed, in words that say what to do.

use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use thiserror::Error;

/// Errors from the fleet.
#[derive(Debug, Error)]
pub enum FleetError {
    /// No region in flags, environment or profile.
    #[error(
        "no AWS region configured: pass --region or set AWS_REGION (or a region in the profile)"
    )]
    NoRegion,
    /// The id names neither an instance nor a managed node.
    #[error(
        "{target:?} is not a node id: expected an instance id (i-…) or a managed node id (mi-…)"
    )]
    InvalidTarget {
        /// The offending id.
        target: String,
    },
    /// The session reason breaks the StartSession rules.
    #[error("cannot use {reason:?} as a session reason: {why}")]
    InvalidReason {
        /// The reason asked for.
        reason: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// A tag value breaks the tagging rules.
    #[error("cannot tag {key}={value:?}: {why}")]
    InvalidTag {
        /// Tag key.
        key: String,
        /// Tag value.
        value: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// An AWS call failed.
    #[error("AWS {op} failed: {message}")]
    Api {
        /// The operation, e.g. `TagResources`.
        op: &'static str,
        /// The AWS error code, when there is one (`AccessDeniedException`, …).
        code: Option<String>,
        /// What AWS (or the transport) said.
        message: String,
    },
    /// The answer lacked something it must carry.
    #[error("AWS {op} answered without {what}")]
    Incomplete {
        /// The operation.
        op: &'static str,
        /// What was missing.
        what: &'static str,
    },
    /// Tagging did not take on the target: the caller must not open a session.
    #[error("could not taint {target}: {why}; no session may open until it is tagged")]
    TaintFailed {
        /// The node.
        target: String,
        /// What went wrong.
        why: String,
    },
    /// Tagging a node (other than the taint) did not take.
    #[error("could not tag {target}: {why}")]
    TagFailed {
        /// The node.
        target: String,
        /// What went wrong.
        why: String,
    },
}

impl FleetError {
    /// The AWS error code, if this came from an AWS error response.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            FleetError::Api { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// Turns an SDK error into [`FleetError::Api`], keeping the service's code and message.
pub(crate) fn api<E, R>(op: &'static str, err: SdkError<E, R>) -> FleetError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = err.code().map(str::to_owned);
    let message = match (err.code(), err.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_owned(),
        // No service answer (unreachable endpoint, no credentials): the causes, without the
        // SDK's debug dump.
        _ => {
            let mut m = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(s) = source {
                m.push_str(": ");
                m.push_str(&s.to_string());
                source = s.source();
            }
            m
        }
    };
    FleetError::Api { op, code, message }
}
