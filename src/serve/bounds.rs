//! Request bodies at the edge: every route reads at most [`MAX_BODY`] bytes, all of them
//! within [`BODY_DEADLINE`], before any handler (or the broker) sees the request. A client
//! trickling a body, or sending a large one, is answered and its connection closed.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::wire::ErrorKind;
use crate::wire::body::ErrorBody;

/// The largest request body any route accepts (the API's bodies are a few hundred bytes).
pub const MAX_BODY: usize = 64 * 1024;
/// How long a client has to send a whole request body, once its headers are in.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);
/// The largest websocket message (and frame) a session client may send: keystrokes and
/// control messages.
pub const MAX_WS_MESSAGE: usize = 64 * 1024;

/// Middleware: reads the whole body within the limit and the deadline, or answers 413/408
/// and closes the connection.
pub async fn bounded_body(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let bytes =
        match tokio::time::timeout(BODY_DEADLINE, axum::body::to_bytes(body, MAX_BODY)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(_)) => return too_large(),
            Err(_) => {
                tracing::warn!(
                    path = %parts.uri.path(),
                    "request body not received within the deadline; connection closed"
                );
                return closing(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {} s",
                        BODY_DEADLINE.as_secs()
                    ),
                );
            }
        };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn too_large() -> Response {
    closing(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body is larger than {} KiB (or broken)",
            MAX_BODY / 1024
        ),
    )
}

/// An input error that also closes the connection (its unread body is not drained).
fn closing(status: StatusCode, message: String) -> Response {
    let body = ErrorBody::new(ErrorKind::Input, message);
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
