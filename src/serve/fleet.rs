//! The fleet on the daemon: the listing any mapped identity may see, and the rogue scan
//! approvers and reviewers may run, both with the daemon's own fleet credentials.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::Utc;

use crate::api::ErrorKind;
use crate::fleet::Fleet;
use crate::fleet::aws::AwsFleet;
use crate::fleet::scan::{self, NodeRow, RogueReport, ScanError};
use crate::policy::Role;

use super::AppState;
use super::error::ApiError;
use super::identity::Identity;

/// The fleet routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/fleet", get(list))
        .route("/v1/rogue", post(rogue))
}

impl From<ScanError> for ApiError {
    fn from(e: ScanError) -> ApiError {
        match e {
            ScanError::Broker(e) => ApiError::from(e),
            ScanError::Fleet(e) => {
                tracing::warn!(error = %e, "the fleet call failed");
                ApiError::new(ErrorKind::Unavailable, format!("the broker's fleet: {e}"))
            }
            e => ApiError::new(ErrorKind::Internal, e.to_string()),
        }
    }
}

/// The daemon's fleet, or why it has none.
fn fleet(s: &AppState) -> Result<Arc<AwsFleet>, ApiError> {
    s.fleet().cloned().map_err(|why| {
        ApiError::new(
            ErrorKind::Unavailable,
            format!("this broker has no fleet to list: {why}"),
        )
    })
}

async fn list(State(s): State<AppState>) -> Result<Json<Vec<NodeRow>>, ApiError> {
    let fleet = fleet(&s)?;
    let nodes = fleet.list_nodes().await.map_err(ScanError::from)?;
    let (touched, max_age) = s
        .read(|b| Ok((scan::rogue_touched(b)?, b.policy()?.max_instance_age)))
        .await?;
    Ok(Json(scan::node_rows(nodes, &touched, max_age, Utc::now())))
}

async fn rogue(
    State(s): State<AppState>,
    Extension(me): Extension<Identity>,
) -> Result<Json<RogueReport>, ApiError> {
    let fleet = fleet(&s)?;
    let user = me.user.clone();
    let allowed = s
        .read(move |b| Ok(b.permits(&user, Role::Approver)? || b.permits(&user, Role::Reviewer)?))
        .await?;
    if !allowed {
        tracing::warn!(user = me.user, "rogue scan refused");
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            format!(
                "{} may not run the rogue scan: it is for approvers and reviewers",
                me.user
            ),
        ));
    }
    // The scan mixes fleet calls with blocking store calls: one blocking thread drives it.
    let broker = Arc::clone(&s.broker);
    let rt = tokio::runtime::Handle::current();
    let report = tokio::task::spawn_blocking(move || {
        rt.block_on(scan::rogue(&broker, fleet.as_ref(), &me.user))
    })
    .await
    .map_err(|e| ApiError::new(ErrorKind::Internal, format!("the rogue scan failed: {e}")))??;
    // Findings were audited: wake the long-polls.
    s.write(|_| Ok(())).await?;
    Ok(Json(report))
}
