//! Error replies: the broker's message and its kind, so the client exits as embedded mode does.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::broker::BrokerError;
use crate::request::Refusal;
use crate::wire::ErrorKind;
use crate::wire::body::ErrorBody;

/// An error as the API answers it.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// For the person.
    pub message: String,
    /// The lifecycle rule's refusal, sent typed so the client keeps it.
    pub refusal: Option<Refusal>,
}

impl ApiError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            refusal: None,
        }
    }

    /// The HTTP status for a kind (clients decide by the body's kind, not by this).
    fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::Refused => StatusCode::CONFLICT,
            ErrorKind::Input => StatusCode::BAD_REQUEST,
            ErrorKind::Identity | ErrorKind::LocalOnly | ErrorKind::Forbidden => {
                StatusCode::FORBIDDEN
            }
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> ApiError {
        let kind = ErrorKind::of(&e);
        if kind == ErrorKind::Internal {
            tracing::error!(error = %e, "broker call failed");
        }
        let refusal = match &e {
            BrokerError::Refused(r) => Some(r.clone()),
            _ => None,
        };
        ApiError {
            refusal,
            ..ApiError::new(kind, e.to_string())
        }
    }
}

impl From<crate::review::ReviewError> for ApiError {
    fn from(e: crate::review::ReviewError) -> ApiError {
        use crate::review::ReviewError;
        match e {
            ReviewError::Broker(e) => ApiError::from(e),
            ReviewError::NotReviewer { .. } => ApiError::new(ErrorKind::Forbidden, e.to_string()),
            e if e.is_input() => ApiError::new(ErrorKind::Input, e.to_string()),
            e => ApiError::new(ErrorKind::Refused, e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            kind: self.kind,
            message: self.message,
            refusal: self.refusal,
        };
        (status, Json(body)).into_response()
    }
}
