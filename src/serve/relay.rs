//! Session routes: the requester's relayed session, read-only watching, and kill.
//!
//! - `GET /v1/requests/{id}/session?cols=C&rows=R[&command=LINE]`: websocket; opens (or
//!   reconnects to) the session of `id` for the connection's identity, which must be the
//!   requester; with `command`, one command (`open REQ -- CMD`) instead of a shell. The TOTP
//!   code rides in the [`CODE_HEADER`] request header, never in the URL (URLs get logged).
//! - `GET /v1/requests/{id}/watch`: websocket, read-only, for approvers and reviewers.
//! - `POST /v1/requests/{id}/kill` `{code}`: ends the session (approvers, with their TOTP
//!   code); answers the closed request.
//!
//! Frames are described in [`super::session_wire`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};

use super::AppState;
use super::bounds::MAX_WS_MESSAGE;
use super::error::ApiError;
use super::hub::{Hub, HubError, Out};
use super::identity::Identity;
use crate::channel::limits;
use crate::channel::payload::SizeData;
use crate::wire::ErrorKind;
use crate::wire::body::KillBody;
use crate::wire::session::{CODE_HEADER, ClientMsg, ServerMsg, clamp_size};

/// Messages queued between a session and its requester's socket.
const CLIENT_QUEUE: usize = 256;
/// Default for how long a session's client may answer nothing before it counts as gone; it is
/// pinged three times in that span.
pub const CLIENT_SILENCE: Duration = Duration::from_secs(45);

/// The longest TOTP code header taken as it is (a code is 6 digits).
const MAX_CODE_HEADER: usize = 16;

/// The session, watch and kill routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/requests/{id}/session", get(session))
        .route("/v1/requests/{id}/watch", get(watch))
        .route("/v1/requests/{id}/kill", post(kill))
}

/// The terminal size the requester's client reports when it connects.
#[derive(Debug, Deserialize)]
struct SizeQuery {
    cols: Option<u32>,
    rows: Option<u32>,
    /// `open REQ -- CMD`: the command line (checked against the request by the session).
    command: Option<String>,
}

async fn session(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    Query(q): Query<SizeQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // A header that is not short text is a wrong code (counted), never a missing one.
    let code = headers.get(CODE_HEADER).map(|v| {
        v.to_str()
            .ok()
            .filter(|c| c.len() <= MAX_CODE_HEADER)
            .unwrap_or_default()
            .to_string()
    });
    let (cols, rows) = clamp_size(
        q.cols.filter(|&c| c > 0).unwrap_or(limits::DEFAULT_COLS),
        q.rows.filter(|&r| r > 0).unwrap_or(limits::DEFAULT_ROWS),
    );
    let size = SizeData {
        cols: u32::from(cols),
        rows: u32::from(rows),
    };
    let silence = state.client_silence();
    // An unparsable line becomes an empty argv, which the session refuses before the claim.
    let command = q
        .command
        .map(|c| crate::command_line::split(&c).unwrap_or_default());
    let ws = ws
        .max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE);
    ws.on_upgrade(move |socket| async move {
        match state.sessions() {
            Ok(hub) => {
                let opening = Opening {
                    id,
                    by: who.user,
                    code,
                    size,
                    command,
                };
                relay_session(hub.clone(), opening, socket, silence).await
            }
            Err(why) => refuse(socket, why).await,
        }
    })
}

/// What a requester's upgrade asked for.
struct Opening {
    id: String,
    by: String,
    code: Option<String>,
    size: SizeData,
    command: Option<Vec<String>>,
}

/// Carries one requester's socket: output and steps out, keystrokes and resizes in. The
/// session does not depend on it: when the socket goes, the hub's grace period starts.
async fn relay_session(hub: Arc<Hub>, opening: Opening, socket: WebSocket, silence: Duration) {
    let Opening {
        id,
        by,
        code,
        size,
        command,
    } = opening;
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Out>(CLIENT_QUEUE);
    let writer = tokio::spawn(async move {
        // Pings make a live client answer, so its silence means it is gone.
        // The first one a period from now: a ping ahead of a refusal makes the client
        // answer a pong into a socket the broker has already closed, losing the refusal.
        let period = silence / 3;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let msg = tokio::select! {
                out = rx.recv() => match out {
                    Some(out) => {
                        let last = out.is_final();
                        if sink.send(to_message(out)).await.is_err() || last {
                            break;
                        }
                        continue;
                    }
                    None => break,
                },
                _ = ping.tick() => Message::Ping(Vec::new().into()),
            };
            if sink.send(msg).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let live = match hub
        .open_for(&id, &by, code, size, command, tx.clone())
        .await
    {
        Ok(live) => live,
        Err(e) => {
            tracing::info!(request = %id, user = %by, error = %e, "session not opened");
            let _ = tx.send(Out::Msg(e.to_msg())).await;
            drop(tx);
            let _ = writer.await;
            return;
        }
    };
    loop {
        let msg = match tokio::time::timeout(silence, stream.next()).await {
            Ok(Some(Ok(msg))) => msg,
            Ok(_) => break,
            Err(_) => {
                tracing::warn!(request = %id, user = %by, silent_for = ?silence, "session client answers nothing; treating it as gone");
                break;
            }
        };
        match msg {
            Message::Binary(bytes) => live.input(bytes.to_vec()).await,
            Message::Text(text) => match serde_json::from_str::<ClientMsg>(&text) {
                Ok(ClientMsg::Resize { cols, rows }) => {
                    let (cols, rows) = clamp_size(u32::from(cols), u32::from(rows));
                    live.resize(cols, rows);
                }
                Ok(ClientMsg::Terminate) => live.terminate(&by),
                Err(e) => tracing::warn!(error = %e, "unreadable control message ignored"),
            },
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
    live.detach(&tx);
    drop(tx);
    let _ = writer.await;
}

async fn watch(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    let ws = ws
        .max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE);
    ws.on_upgrade(move |socket| async move {
        match state.sessions() {
            Ok(hub) => relay_watch(hub.clone(), id, who.user, socket).await,
            Err(why) => refuse(socket, why).await,
        }
    })
}

/// Carries one watcher's socket: the screen so far, then output; nothing goes back.
async fn relay_watch(hub: Arc<Hub>, id: String, by: String, mut socket: WebSocket) {
    let view = match hub.watch(&id, &by).await {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(request = %id, user = %by, error = %e, "watch refused");
            let _ = socket.send(to_message(Out::Msg(e.to_msg()))).await;
            let _ = socket.close().await;
            return;
        }
    };
    tracing::info!(request = %id, user = %by, "watching");
    let mut rx = view.rx;
    let mut pending = vec![Out::Msg(view.live), Out::Bytes(view.screen)];
    let mut warned = false;
    'watch: loop {
        for out in pending.drain(..) {
            let last = out.is_final();
            if socket.send(to_message(out)).await.is_err() || last {
                break 'watch;
            }
        }
        tokio::select! {
            next = rx.recv() => match next {
                Ok(out) => pending.push(out),
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    // Behind: redraw from the screen rather than show a torn stream.
                    let Some(fresh) = hub.rewatch(&id) else { break };
                    rx = fresh.rx;
                    pending.push(Out::Msg(ServerMsg::Notice {
                        text: format!("fell behind by {skipped} chunks; screen redrawn"),
                    }));
                    pending.push(Out::Bytes(fresh.screen));
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Binary(_))) if !warned => {
                    // Read-only: nothing a watcher sends reaches the session.
                    warned = true;
                    tracing::warn!(request = %id, user = %by, "watcher input refused");
                    pending.push(Out::Msg(ServerMsg::Notice {
                        text: "watching is read-only: your input was not sent".into(),
                    }));
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = socket.close().await;
    hub.watch_ended(&id, &by).await;
}

/// Ends a socket at once: this broker holds no sessions.
async fn refuse(mut socket: WebSocket, why: &str) {
    let msg = ServerMsg::Error {
        message: format!("this broker cannot hold sessions: {why}"),
        refused: false,
        refusal: None,
    };
    let _ = socket.send(to_message(Out::Msg(msg))).await;
    let _ = socket.close().await;
}

async fn kill(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    body: Result<Json<KillBody>, JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        let message = "a kill needs the approver's TOTP code: send {\"code\": \"123456\"}";
        return ApiError::new(ErrorKind::Input, message).into_response();
    };
    let hub = match state.sessions() {
        Ok(hub) => hub.clone(),
        Err(why) => {
            let message = format!("this broker cannot hold sessions: {why}");
            return ApiError::new(ErrorKind::Unavailable, message).into_response();
        }
    };
    match hub.kill(&id, &who.user, &body.code).await {
        Ok(request) => Json(request).into_response(),
        Err(HubError::Broker(e)) => ApiError::from(e).into_response(),
        Err(e) => {
            let kind = if e.is_refusal() {
                ErrorKind::Refused
            } else {
                ErrorKind::Internal
            };
            ApiError::new(kind, e.to_string()).into_response()
        }
    }
}

fn to_message(out: Out) -> Message {
    match out {
        Out::Bytes(b) => Message::Binary(b.into()),
        Out::Msg(m) => match serde_json::to_string(&m) {
            Ok(text) => Message::Text(text.into()),
            Err(e) => Message::Text(format!(r#"{{"type":"notice","text":"{e}"}}"#).into()),
        },
    }
}
