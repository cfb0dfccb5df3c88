//! The AWS JSON 1.1 endpoint: `POST /` with `X-Amz-Target: AmazonSSM.<Op>`. Checks that a
//! SigV4 Authorization header is present (the signature itself is not verified), dispatches
//! to the operation, and shapes errors as AWS does so aws-sdk-ssm parses them.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::call::{ApiError, Ctx, JSON_11, request_id};
use super::state::{ApiCall, LabState};
use super::{automation, inventory, sessions};

/// The access key id from `Credential=AKID/date/region/service/aws4_request`.
fn access_key_id(auth: &str) -> Option<String> {
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256")?;
    let cred = rest
        .split(',')
        .find_map(|p| p.trim().strip_prefix("Credential="))?;
    let akid = cred.split('/').next()?;
    (!akid.is_empty()
        && akid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    .then(|| akid.to_string())
}

/// `POST /`.
pub(crate) async fn handle(
    State(state): State<Arc<LabState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = dispatch(&state, &headers, &body);
    if let Some(op) = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("AmazonSSM."))
    {
        let (status, response) = match &result {
            Ok(v) => (200, v.clone()),
            Err(e) => (
                e.status.as_u16(),
                serde_json::json!({ "__type": e.code, "message": e.message }),
            ),
        };
        state.log_call(ApiCall {
            operation: op.to_string(),
            request: serde_json::from_slice(&body).unwrap_or(Value::Null),
            status,
            response,
        });
    }
    match result {
        Ok(v) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(JSON_11)),
                (
                    header::HeaderName::from_static("x-amzn-requestid"),
                    request_id(),
                ),
            ],
            v.to_string(),
        )
            .into_response(),
        Err(e) => {
            tracing::info!(code = e.code, message = %e.message, "request refused");
            e.into_response()
        }
    }
}

fn dispatch(state: &Arc<LabState>, headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(auth) = auth else {
        return Err(ApiError::bad(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    let caller = access_key_id(auth).ok_or_else(|| {
        ApiError::bad(
            "IncompleteSignatureException",
            "Authorization header requires a SigV4 'Credential' parameter",
        )
    })?;
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(op) = target
        .strip_prefix("AmazonSSM.")
        .or_else(|| (target == TAGGING_GET_RESOURCES).then_some("GetResources"))
    else {
        return Err(unknown_operation(target));
    };
    let body: Value = if body.is_empty() {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body)
            .map_err(|_| ApiError::bad("SerializationException", "request body is not JSON"))?
    };
    tracing::debug!(op, "request");
    if state.hooks.take_operation_failure(op) {
        return Err(ApiError::bad(
            "AccessDeniedException",
            format!("lab test hook: {op} is refused"),
        ));
    }
    let ctx = Ctx {
        state,
        owner: format!("arn:aws:iam::000000000000:user/{caller}"),
        caller,
    };
    match op {
        "DescribeInstanceInformation" => inventory::describe_instance_information(&ctx, &body),
        "AddTagsToResource" => inventory::add_tags(&ctx, &body),
        "ListTagsForResource" => inventory::list_tags(&ctx, &body),
        "RemoveTagsFromResource" => inventory::remove_tags(&ctx, &body),
        "StartSession" => sessions::start_session(&ctx, &body),
        "ResumeSession" => sessions::resume_session(&ctx, &body),
        "TerminateSession" => sessions::terminate_session(&ctx, &body),
        "DescribeSessions" => sessions::describe_sessions(&ctx, &body),
        "StartAutomationExecution" => automation::start(&ctx, &body),
        "GetAutomationExecution" => automation::get(&ctx, &body),
        "GetResources" if target == TAGGING_GET_RESOURCES => inventory::get_resources(&body),
        _ => Err(unknown_operation(target)),
    }
}

/// The one Resource Groups Tagging API operation the lab answers.
const TAGGING_GET_RESOURCES: &str = "ResourceGroupsTaggingAPI_20170126.GetResources";

fn unknown_operation(target: &str) -> ApiError {
    ApiError::bad(
        "UnknownOperationException",
        format!("the lab does not implement operation {target:?}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_key_comes_from_the_credential_scope() {
        let h = "AWS4-HMAC-SHA256 Credential=lab/20260101/us-east-1/ssm/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(access_key_id(h), Some("lab".into()));
        assert_eq!(access_key_id("Bearer x"), None);
        assert_eq!(access_key_id("AWS4-HMAC-SHA256 Credential=/x"), None);
    }
}
