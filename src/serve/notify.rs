//! Notifications on the daemon: `notify test`, and the review queue (`review --pending`), for
//! approvers and reviewers. Delivery itself runs in the daemon's worker
//! ([`crate::notify::worker::run`]).

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use crate::notify::worker::{TestResult, test_all};
use crate::review_queue::PendingReview;

use super::AppState;
use super::error::ApiError;
use super::fleet::overseer;
use super::identity::Identity;

/// The notify routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/notify/test", post(test))
        .route("/v1/reviews/pending", get(pending_reviews))
}

async fn pending_reviews(
    State(s): State<AppState>,
    Extension(me): Extension<Identity>,
) -> Result<Json<Vec<PendingReview>>, ApiError> {
    overseer(&s, &me, "see the review queue").await?;
    Ok(Json(s.read(|b| b.pending_reviews()).await?))
}

async fn test(
    State(s): State<AppState>,
    Extension(me): Extension<Identity>,
) -> Result<Json<Vec<TestResult>>, ApiError> {
    overseer(&s, &me, "send test notifications").await?;
    tracing::info!(user = me.user, "test notifications");
    Ok(Json(test_all(&s.broker, &me.user).await?))
}
