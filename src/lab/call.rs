//! What every lab operation handler shares: the AWS-shaped error, the caller's context, input
//! parsing and pagination. The dispatcher ([`super::api`]) and the handlers build on it.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::state::LabState;

pub(super) const JSON_11: &str = "application/x-amz-json-1.1";

/// An AWS-shaped error: HTTP status, `__type` code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    /// A client error (400) with an AWS error code.
    pub(crate) fn bad(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    /// A constraint violation, worded as AWS words them.
    pub(crate) fn validation(message: impl Into<String>) -> Self {
        Self::bad(
            "ValidationException",
            format!("1 validation error detected: {}", message.into()),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "__type": self.code, "message": self.message });
        (
            self.status,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(JSON_11)),
                (
                    header::HeaderName::from_static("x-amzn-errortype"),
                    HeaderValue::from_static(self.code),
                ),
                (
                    header::HeaderName::from_static("x-amzn-requestid"),
                    request_id(),
                ),
            ],
            body.to_string(),
        )
            .into_response()
    }
}

pub(super) fn request_id() -> HeaderValue {
    HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("lab"))
}

/// Who is calling and with what lab.
pub(crate) struct Ctx<'a> {
    pub state: &'a Arc<LabState>,
    /// IAM-style owner ARN derived from the SigV4 access key id.
    pub owner: String,
    /// Access key id (prefix of session ids, as AWS uses the caller's name).
    pub caller: String,
}

/// Parses a request body into the operation's input.
pub(crate) fn input<T: DeserializeOwned>(body: &Value) -> Result<T, ApiError> {
    serde_json::from_value(body.clone()).map_err(|e| {
        ApiError::bad(
            "SerializationException",
            format!("cannot read the request: {e}"),
        )
    })
}

/// Pagination over an already filtered list: `NextToken` is the decimal offset, encoded.
pub(crate) fn page<T>(
    items: Vec<T>,
    next_token: Option<&str>,
    max: usize,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let start = match next_token {
        None => 0,
        Some(t) => engine
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("lab:")?.parse::<usize>().ok())
            .ok_or_else(|| ApiError::bad("InvalidNextToken", "The specified token isn't valid."))?,
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(max).collect();
    let next = (start + max < total).then(|| engine.encode(format!("lab:{}", start + max)));
    Ok((page, next))
}

/// Checks an optional MaxResults against AWS's bounds and returns the page size.
pub(crate) fn max_results(
    v: Option<i64>,
    field: &str,
    lo: i64,
    hi: i64,
    default: i64,
) -> Result<usize, ApiError> {
    let n = v.unwrap_or(default);
    if n < lo || n > hi {
        return Err(ApiError::validation(format!(
            "Value '{n}' at '{field}' failed to satisfy constraint: Member must have value \
             between {lo} and {hi}"
        )));
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_tokens_and_reject_forged_ones() {
        let (p, next) = page((0..7).collect(), None, 5).unwrap();
        assert_eq!(p, vec![0, 1, 2, 3, 4]);
        let (p, next) = page((0..7).collect(), next.as_deref(), 5).unwrap();
        assert_eq!((p, next), (vec![5, 6], None));
        let err = page((0..7).collect::<Vec<i32>>(), Some("nope"), 5).unwrap_err();
        assert_eq!(err.code, "InvalidNextToken");
    }
}
