//! Recordings over the wire: the listing (verified with the broker's own key), the cast and
//! chain files streamed for clients to verify themselves, review sign-offs as the connection's
//! identity, and the recorder's public key.
//!
//! Who may see recordings: reviewers and approvers see all of them; a requester sees only the
//! recordings of sessions they requested (they watched every byte live, and may check what is
//! kept about them); anyone else gets 403. Names are bare file names the listing knows, never
//! paths.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use ed25519_dalek::VerifyingKey;
use tokio::io::AsyncReadExt;

use crate::audit::Event;
use crate::broker::Broker;
use crate::policy::Role;
use crate::recording::audited::{self, Lookup};
use crate::recording::cast::SombreroHeader;
use crate::recording::flags::FlagRule;
use crate::recording::list::{self, ListCache, RecordingSummary};
use crate::recording::writer::chain_path_for;
use crate::review;
use crate::wire::ErrorKind;
use crate::wire::body::{RecorderKeyReply, ReviewBody};

use super::AppState;
use super::error::ApiError;
use super::identity::Identity;

/// The broker's recordings: its directory, its key (or why there is none) and a listing cache.
pub struct Archive {
    dir: PathBuf,
    key: Result<VerifyingKey, String>,
    cache: Mutex<ListCache>,
}

impl Archive {
    /// The recordings in `dir`, sealed with `key` (or why the key could not be loaded).
    pub fn new(dir: PathBuf, key: Result<VerifyingKey, String>) -> Arc<Archive> {
        Arc::new(Archive {
            dir,
            key,
            cache: Mutex::default(),
        })
    }

    fn key(&self) -> Result<&VerifyingKey, ApiError> {
        self.key.as_ref().map_err(|why| {
            ApiError::new(
                ErrorKind::Unavailable,
                format!("the broker has no recorder key: {why}"),
            )
        })
    }

    /// The listing, verified again only where files changed.
    /// Fills flag counts (see [`ListCache::attach_flags`]).
    fn attach_flags(&self, all: &mut [RecordingSummary], rules: &[FlagRule]) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.attach_flags(all, rules);
    }

    fn list(&self) -> Result<Vec<RecordingSummary>, ApiError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.list(&self.dir, self.key.as_ref().ok()).map_err(|e| {
            ApiError::new(
                ErrorKind::Internal,
                format!("cannot list {}: {e}", self.dir.display()),
            )
        })
    }
}

/// The recording routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/keys/recorder", get(recorder_key))
        .route("/v1/recordings", get(listing))
        .route("/v1/recordings/{name}", get(cast))
        .route("/v1/recordings/{name}/chain", get(chain))
        .route("/v1/recordings/{name}/audit", get(audit_facts))
        .route("/v1/recordings/{name}/review", post(sign_off))
}

/// What a user may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Every recording (reviewers, approvers).
    All,
    /// The recordings of their own requests (requesters).
    Own,
}

fn access(b: &Broker, me: &str) -> Result<Access, ApiError> {
    if b.permits(me, Role::Reviewer)? || b.permits(me, Role::Approver)? {
        return Ok(Access::All);
    }
    if b.permits(me, Role::Requester)? {
        return Ok(Access::Own);
    }
    tracing::warn!(user = me, "recordings refused");
    Err(ApiError::new(
        ErrorKind::Forbidden,
        format!(
            "{me} may not see recordings: only reviewers, approvers and the requester of a session may"
        ),
    ))
}

/// True when the recording's header names `me` as the session's requester.
fn requested_by(meta: Option<&SombreroHeader>, me: &str) -> bool {
    meta.is_some_and(|m| m.requester == me)
}

/// The archive, or why this broker keeps none.
fn archive_of(s: &AppState) -> Result<Arc<Archive>, ApiError> {
    s.recordings()
        .map(Arc::clone)
        .map_err(|why| ApiError::new(ErrorKind::Unavailable, format!("no recordings here: {why}")))
}

/// Runs `f` with the broker and the archive on a blocking thread.
async fn blocking<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&Broker, &Archive) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let archive = archive_of(s)?;
    let broker = Arc::clone(&s.broker);
    tokio::task::spawn_blocking(move || f(&broker, &archive))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("recordings call failed: {e}")))?
}

async fn recorder_key(State(s): State<AppState>) -> Result<Json<RecorderKeyReply>, ApiError> {
    let key = blocking(&s, |_, a| a.key().copied()).await?;
    Ok(Json(RecorderKeyReply {
        algorithm: "ed25519".into(),
        public_key: hex::encode(key.as_bytes()),
    }))
}

async fn listing(
    State(s): State<AppState>,
    Extension(me): Extension<Identity>,
) -> Result<Json<Vec<RecordingSummary>>, ApiError> {
    let all = blocking(&s, move |b, a| {
        let access = access(b, &me.user)?;
        let mut all: Vec<RecordingSummary> = a
            .list()?
            .into_iter()
            .filter(|r| access == Access::All || requested_by(r.meta.as_ref(), &me.user))
            .collect();
        // Risk flags under the broker's rules (defaults plus the policy's), counted once per
        // file and rules.
        let mut rules = crate::recording::flags::default_rules();
        rules.extend(b.policy()?.review_flags);
        a.attach_flags(&mut all, &rules);
        // Held to the audit log; what it records and the disk lacks is listed MISSING (to
        // those who may see every recording: such a row has no header to match a requester).
        let before = all.len();
        audited::check_listing(&mut all, &review::audit_log(b)?);
        if access == Access::Own {
            all.truncate(before);
        }
        review::attach(&mut all, review::by_digest(b)?);
        // Clients name recordings by file name; the broker's own paths stay on the broker.
        for r in &mut all {
            if let Some(n) = r.path.file_name() {
                r.path = PathBuf::from(n);
            }
        }
        Ok(all)
    })
    .await?;
    Ok(Json(all))
}

/// The cast `name` if `me` may see it. A requester asking for anything but their own gets the
/// same answer whether it exists or not.
fn allowed(b: &Broker, a: &Archive, me: &str, name: &str) -> Result<PathBuf, ApiError> {
    let access = access(b, me)?;
    let found = list::find(&a.dir, name).map_err(|e| {
        ApiError::new(
            ErrorKind::Internal,
            format!("cannot list {}: {e}", a.dir.display()),
        )
    })?;
    match (access, found) {
        (Access::All, Some(p)) => Ok(p),
        (Access::Own, Some(p)) if requested_by(list::summarize(&p, None).meta.as_ref(), me) => {
            Ok(p)
        }
        (Access::All, None) => Err(ApiError::new(
            ErrorKind::Input,
            format!("no recording {name:?} on the broker: `sombrero recordings` lists their names"),
        )),
        (Access::Own, _) => Err(ApiError::new(
            ErrorKind::Forbidden,
            format!("{name:?} is not a recording of a session {me} requested"),
        )),
    }
}

async fn cast(
    State(s): State<AppState>,
    Extension(me): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let who = me.user.clone();
    let path = blocking(&s, move |b, a| allowed(b, a, &me.user, &name)).await?;
    tracing::info!(user = who, recording = %path.display(), "recording downloaded");
    stream(path).await
}

async fn chain(
    State(s): State<AppState>,
    Extension(me): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let path = blocking(&s, move |b, a| {
        let chain = chain_path_for(&allowed(b, a, &me.user, &name)?);
        if list::is_regular(&chain) {
            Ok(chain)
        } else {
            Err(ApiError::new(
                ErrorKind::Input,
                format!("{name:?} has no chain file on the broker: it cannot be verified"),
            ))
        }
    })
    .await?;
    stream(path).await
}

/// What the audit log says about recording `name`, for a client that verifies it itself.
async fn audit_facts(
    State(s): State<AppState>,
    Extension(me): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<Json<Lookup>, ApiError> {
    let lookup = blocking(&s, move |b, a| {
        let path = allowed(b, a, &me.user, &name)?;
        let request = list::summarize(&path, None).meta.map(|m| m.request_id);
        Ok(review::audit_log(b)?.lookup(&name, request.as_deref()))
    })
    .await?;
    Ok(Json(lookup))
}

/// Read size for streamed files.
const CHUNK: usize = 64 * 1024;

/// The file as the body, read in chunks (a recording can be large; a live one still grows).
async fn stream(path: PathBuf) -> Result<Response, ApiError> {
    let opened = tokio::task::spawn_blocking(move || {
        crate::private_fs::open_regular(&path).map_err(|e| {
            ApiError::new(
                ErrorKind::Internal,
                format!("cannot read {}: {e}", path.display()),
            )
        })
    })
    .await
    .map_err(|e| ApiError::new(ErrorKind::Internal, format!("recordings call failed: {e}")))?;
    let file = tokio::fs::File::from_std(opened?);
    let chunks = futures_util::stream::unfold(Some(file), |file| async move {
        let mut f = file?;
        let mut buf = vec![0u8; CHUNK];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(f)))
            }
            // Yield the error once, then end.
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok((
        [(CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(chunks),
    )
        .into_response())
}

async fn sign_off(
    State(s): State<AppState>,
    Extension(me): Extension<Identity>,
    Path(name): Path<String>,
    Json(body): Json<ReviewBody>,
) -> Result<Json<Event>, ApiError> {
    let archive = archive_of(&s)?;
    // A write: a sign-off (or a refused code) lands in the audit log and wakes long-polls.
    let event = s
        .write(move |b| Ok(review_in(b, &archive, &me.user, &name, &body)))
        .await??;
    Ok(Json(event))
}

/// `me` signs off `name` with the rules `sombrero review` applies.
fn review_in(
    b: &Broker,
    a: &Archive,
    me: &str,
    name: &str,
    body: &ReviewBody,
) -> Result<Event, ApiError> {
    let path = allowed(b, a, me, name)?;
    let r = review::check(b, me, &path, a.key()?)?;
    Ok(review::sign_off(b, me, &r, &body.code, &body.comment)?)
}
