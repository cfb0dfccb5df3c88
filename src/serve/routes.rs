//! The `/v1` JSON API. No body carries an actor: every write acts as the connection's
//! [`Identity`].

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;

use super::visibility::Sight;
use crate::api::MAX_WAIT;
use crate::audit::Event;
use crate::broker::{AuditCheck, Broker, UserInfo};
use crate::policy::Role;
use crate::request::{NewRequest, Request, State as ReqState};
use crate::wire::ErrorKind;
use crate::wire::body::{
    CreateBody, DecideBody, ExpireReply, PermitsReply, PolicyReply, RevisionReply,
};

use super::AppState;
use super::error::ApiError;
use super::identity::Identity;

type Reply<T> = Result<Json<T>, ApiError>;

/// The API routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/whoami", get(whoami))
        .route("/v1/revision", get(revision))
        .route("/v1/policy", get(policy))
        .route("/v1/permits/{role}", get(permits))
        .route("/v1/users", get(users).post(enrol))
        .route("/v1/requests", get(list).post(create))
        .route("/v1/requests/{id}", get(show))
        .route("/v1/requests/{id}/events", get(request_events))
        .route("/v1/requests/{id}/cancel", post(cancel))
        // approve or deny
        .route("/v1/requests/{id}/{decision}", post(decide))
        .route("/v1/expire", post(expire))
        .route("/v1/audit", get(audit))
        .route("/v1/audit/verify", get(verify))
}

async fn whoami(Extension(me): Extension<Identity>) -> Json<Identity> {
    Json(me)
}

/// `after`: wait until the revision differs from it; `wait_ms`: for at most this long.
#[derive(Debug, Deserialize)]
struct RevisionQuery {
    after: Option<u64>,
    wait_ms: Option<u64>,
}

async fn revision(
    State(s): State<AppState>,
    Query(q): Query<RevisionQuery>,
) -> Reply<RevisionReply> {
    let current = s.read(|b| b.revision()).await?;
    let revision = match q.after {
        Some(after) if after == current => {
            let wait = Duration::from_millis(q.wait_ms.unwrap_or(u64::MAX)).min(MAX_WAIT);
            s.wait_revision(after, wait).await
        }
        _ => current,
    };
    Ok(Json(RevisionReply { revision }))
}

async fn policy(
    State(s): State<AppState>,
    Extension(me): Extension<Identity>,
) -> Reply<PolicyReply> {
    let path = s.broker.policy_path().to_path_buf();
    let text = s
        .read(move |b| {
            // Parse first, so a broken file is reported as the broker sees it.
            b.policy()?;
            let text = std::fs::read_to_string(&path).map_err(|source| {
                crate::policy::PolicyError::Read {
                    path: path.clone(),
                    source,
                }
            })?;
            // Webhook URLs are credentials (a Slack one is all it takes to post): redacted
            // for everyone, whatever else they may see.
            let text = crate::notify::targets::redact_policy_text(&text);
            Ok(Sight::of(b, &me.user)?.policy_text(text))
        })
        .await?;
    Ok(Json(PolicyReply {
        path: s.broker.policy_path().display().to_string(),
        text,
    }))
}

/// `user`: whom to ask about (default: the caller).
#[derive(Debug, Deserialize)]
struct PermitsQuery {
    user: Option<String>,
}

async fn permits(
    State(s): State<AppState>,
    Extension(me): Extension<Identity>,
    Path(role): Path<Role>,
    Query(q): Query<PermitsQuery>,
) -> Reply<PermitsReply> {
    let user = q.user.unwrap_or(me.user);
    let permitted = s.read(move |b| b.permits(&user, role)).await?;
    Ok(Json(PermitsReply { permitted }))
}

async fn users(State(s): State<AppState>) -> Reply<Vec<UserInfo>> {
    Ok(Json(s.read(|b| b.users()).await?))
}

/// Enrolment shows a new TOTP secret: it never travels, so it is done on the broker host.
async fn enrol(Extension(me): Extension<Identity>) -> ApiError {
    tracing::warn!(user = me.user, "remote enrolment refused");
    ApiError::new(
        ErrorKind::LocalOnly,
        "enrolling a user shows their new TOTP secret, which must not travel: run `sombrero user add` on the broker host",
    )
}

/// `state`: only requests in this state.
#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
}

async fn list(State(s): State<AppState>, Query(q): Query<ListQuery>) -> Reply<Vec<Request>> {
    let state = match q.state.as_deref() {
        None => None,
        Some(x) => Some(ReqState::parse(x).ok_or_else(|| {
            ApiError::new(
                ErrorKind::Input,
                format!("state {x:?} is not a request state"),
            )
        })?),
    };
    Ok(Json(s.read(move |b| b.list(state)).await?))
}

async fn create(
    State(s): State<AppState>,
    Extension(me): Extension<Identity>,
    Json(body): Json<CreateBody>,
) -> Reply<Request> {
    let (new, code) = new_request(me.user, body);
    Ok(Json(s.write(move |b| b.create_request(new, &code)).await?))
}

/// The request `body` asks for, by `user` (the connection's identity), and its code.
pub(super) fn new_request(user: String, body: CreateBody) -> (NewRequest, String) {
    let new = NewRequest {
        requester: user,
        target: body.target,
        reason: body.reason,
        incident: body.incident,
        duration: Duration::from_secs(body.duration_secs),
        command: body.command,
    };
    (new, body.code)
}

async fn show(State(s): State<AppState>, Path(id): Path<String>) -> Reply<Request> {
    Ok(Json(s.read(move |b| b.get(&id)).await?))
}

async fn request_events(
    State(s): State<AppState>,
    Extension(me): Extension<Identity>,
    Path(id): Path<String>,
) -> Reply<Vec<Event>> {
    let sight = s.read(move |b| Sight::of(b, &me.user)).await?;
    sight.request(&id)?;
    Ok(Json(s.read(move |b| b.audit_for_request(&id)).await?))
}

/// The two decisions an approver makes with their code.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Decision {
    Approve,
    Deny,
}

async fn decide(
    State(s): State<AppState>,
    Extension(me): Extension<Identity>,
    Path((id, decision)): Path<(String, Decision)>,
    Json(d): Json<DecideBody>,
) -> Reply<Request> {
    let act = match decision {
        Decision::Approve => Broker::approve,
        Decision::Deny => Broker::deny,
    };
    Ok(Json(
        s.write(move |b| act(b, &id, &me.user, &d.code, d.comment.as_deref()))
            .await?,
    ))
}

async fn cancel(
    State(s): State<AppState>,
    Extension(me): Extension<Identity>,
    Path(id): Path<String>,
) -> Reply<Request> {
    Ok(Json(s.write(move |b| b.cancel(&id, &me.user)).await?))
}

async fn expire(State(s): State<AppState>) -> Reply<ExpireReply> {
    let expired = s.write(|b| b.expire_due()).await?.len();
    Ok(Json(ExpireReply { expired }))
}

/// `after`: events after this seq (default 0); `limit`: at most this many (default 1000).
#[derive(Debug, Deserialize)]
struct AuditQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

/// The most events one page returns.
const AUDIT_PAGE: usize = 5_000;

async fn audit(
    State(s): State<AppState>,
    Extension(me): Extension<Identity>,
    Query(q): Query<AuditQuery>,
) -> Reply<Vec<Event>> {
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(1000).min(AUDIT_PAGE);
    // Approvers and reviewers read it all; anyone else only what concerns them. A short page
    // means the end of the log to a client, so pages with none of theirs are read past here
    // (one page in memory at a time).
    let events = s
        .read(move |b| {
            let sight = Sight::of(b, &me.user)?;
            let mut shown = Vec::new();
            let mut cursor = after;
            loop {
                let page = b.audit_events(cursor, limit)?;
                let Some(last) = page.last() else { break };
                cursor = last.seq;
                let end = page.len() < limit;
                shown.extend(sight.filter(page));
                if end || shown.len() >= limit {
                    break;
                }
            }
            shown.truncate(limit);
            Ok(shown)
        })
        .await?;
    Ok(Json(events))
}

async fn verify(State(s): State<AppState>) -> Reply<AuditCheck> {
    Ok(Json(s.read(|b| b.verify_audit()).await?))
}
