//! The fleet on the daemon: the listing any mapped identity may see, and the rogue scan
//! approvers and reviewers may run, and the reaper likewise, both with the daemon's own fleet credentials.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::Utc;

use crate::broker::Broker;
use crate::fleet::Fleet;
use crate::fleet::aws::AwsFleet;
use crate::policy::Role;
use crate::wire::ErrorKind;
use crate::wire::body::ReapBody;
use crate::workflows::reaper::{self, Reaped};
use crate::workflows::scan::{self, NodeRow, RogueReport, ScanError};

use super::AppState;
use super::error::ApiError;
use super::identity::Identity;

/// The fleet routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/fleet", get(list))
        .route("/v1/rogue", post(rogue))
        .route("/v1/reap", post(reap))
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

/// Runs `job` (fleet calls mixed with blocking store calls) driven by one blocking thread,
/// then wakes the long-polls for what it audited.
async fn driven<T, F>(
    s: &AppState,
    what: &str,
    job: impl FnOnce(Arc<Broker>) -> F + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, ScanError>>,
{
    let broker = Arc::clone(&s.broker);
    let rt = tokio::runtime::Handle::current();
    let out = tokio::task::spawn_blocking(move || rt.block_on(job(broker)))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("{what} failed: {e}")))??;
    s.write(|_| Ok(())).await?;
    Ok(out)
}

/// Refuses `what` unless `me` is an approver or a reviewer.
pub(super) async fn overseer(s: &AppState, me: &Identity, what: &str) -> Result<(), ApiError> {
    let user = me.user.clone();
    let allowed = s
        .read(move |b| Ok(b.permits(&user, Role::Approver)? || b.permits(&user, Role::Reviewer)?))
        .await?;
    if allowed {
        return Ok(());
    }
    tracing::warn!(user = me.user, what, "refused: not an approver or reviewer");
    Err(ApiError::new(
        ErrorKind::Forbidden,
        format!(
            "{} may not {what}: it is for approvers and reviewers",
            me.user
        ),
    ))
}

async fn reap(
    State(s): State<AppState>,
    Extension(me): Extension<Identity>,
    Json(body): Json<ReapBody>,
) -> Result<Json<Vec<Reaped>>, ApiError> {
    let fleet = fleet(&s)?;
    overseer(&s, &me, "run the reaper").await?;
    let done = driven(&s, "the reaper", move |broker| async move {
        reaper::reap(&broker, &fleet, &me.user, body.dry_run, |p| {
            tracing::info!(progress = p, "reap");
        })
        .await
    })
    .await?;
    Ok(Json(done))
}

async fn rogue(
    State(s): State<AppState>,
    Extension(me): Extension<Identity>,
) -> Result<Json<RogueReport>, ApiError> {
    let fleet = fleet(&s)?;
    overseer(&s, &me, "run the rogue scan").await?;
    let report = driven(&s, "the rogue scan", move |broker| async move {
        scan::rogue(&broker, fleet.as_ref(), &me.user).await
    })
    .await?;
    Ok(Json(report))
}
