//! The websocket endpoint `/v1/data-channel/{SessionId}`: reads the text open frame, checks
//! its token, then shuttles binary frames between the socket and the session's task.
//! An Authorization header on the upgrade is accepted but not required (newer clients sign
//! the upgrade, release 1.2.677 of the official plugin does not).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::channel::payload::OpenDataChannelInput;

use super::mailbox::{AgentEvent, WsOut};
use super::state::LabState;

/// How long a client may take to send its open frame.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Close code for a refused token (policy violation).
const CLOSE_POLICY: u16 = 1008;

/// Upgrades the request and serves the data channel of `session_id`.
pub(crate) async fn upgrade(
    Path(session_id): Path<String>,
    State(state): State<Arc<LabState>>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.on_upgrade(move |socket| serve(state, session_id, socket))
}

async fn refuse(mut socket: WebSocket, why: &str) {
    tracing::warn!(why, "data channel refused");
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: CLOSE_POLICY,
            reason: why.into(),
        })))
        .await;
}

/// The first data message: the official client pings (`keepalive`) before its open frame.
async fn first_message(socket: &mut WebSocket) -> Option<Message> {
    loop {
        match socket.recv().await? {
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(m) => return Some(m),
            Err(_) => return None,
        }
    }
}

async fn serve(state: Arc<LabState>, session_id: String, mut socket: WebSocket) {
    let open = match tokio::time::timeout(OPEN_TIMEOUT, first_message(&mut socket)).await {
        Ok(Some(Message::Text(t))) => t,
        _ => return refuse(socket, "expected the open-data-channel text frame first").await,
    };
    let open: OpenDataChannelInput = match serde_json::from_str(open.as_str()) {
        Ok(o) => o,
        Err(_) => return refuse(socket, "unreadable open-data-channel frame").await,
    };
    let agent = match state.authorize(&session_id, &open.token_value) {
        Ok(a) => a,
        Err(r) => return refuse(socket, r.message()).await,
    };
    let conn = state.next_conn_id();
    tracing::info!(session = %session_id, conn, client = %open.client_id, "data channel attached");
    let (tx, mut rx) = mpsc::unbounded_channel();
    if agent.send(AgentEvent::Attach { conn, tx }).is_err() {
        return refuse(socket, "session is terminated").await;
    }
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(WsOut::Frame(b)) => {
                    if sink.send(Message::Binary(b.into())).await.is_err() {
                        break;
                    }
                }
                Some(WsOut::Close) => {
                    let _ = sink.send(Message::Close(Some(CloseFrame {
                        code: 1000,
                        reason: "session closed".into(),
                    }))).await;
                    break;
                }
                Some(WsOut::Abort) | None => break,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Binary(b))) => {
                    // A finished session still has its channel_closed queued for us: keep
                    // draining `rx` (it ends when the session drops its sender).
                    let _ = agent.send(AgentEvent::Frame { data: b.to_vec() });
                }
                Some(Ok(Message::Text(_))) => tracing::debug!("ignored text frame after open"),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            },
        }
    }
    let _ = agent.send(AgentEvent::Detach { conn });
    tracing::info!(session = %session_id, conn, "data channel detached");
}
