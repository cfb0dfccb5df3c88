//! The emergency door on the daemon: `POST /v1/requests/emergency`, as the connection's
//! identity (the broker checks the `[emergency]` rules and the requester's code).

use axum::extract::State;
use axum::routing::post;
use axum::{Extension, Json, Router};

use crate::request::Request;
use crate::wire::body::CreateBody;

use super::AppState;
use super::error::ApiError;
use super::identity::Identity;

/// The emergency route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/requests/emergency", post(create))
}

async fn create(
    State(s): State<AppState>,
    Extension(me): Extension<Identity>,
    Json(body): Json<CreateBody>,
) -> Result<Json<Request>, ApiError> {
    let (new, code) = super::routes::new_request(me.user, body);
    tracing::warn!(
        user = new.requester,
        target = new.target,
        "emergency request"
    );
    Ok(Json(
        s.write(move |b| b.create_emergency(new, &code)).await?,
    ))
}
