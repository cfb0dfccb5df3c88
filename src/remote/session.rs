//! The client half of a relayed session: the broker holds the session and its recording;
//! this end carries keystrokes in and output out over a websocket (see
//! [`crate::wire::session`]), on any byte stream the broker is reached by.

use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
pub use tokio_tungstenite::tungstenite::handshake::client::Request;

use super::screen::WatchScreen;
use super::{BoxIo, Connector};
use crate::channel::client::{Control, SessionEvent, SessionHandle};
use crate::channel::limits;
use crate::channel::payload::SizeData;
use crate::channel::terminal::{BridgeError, bridge_command_stdio, bridge_stdio};
use crate::request::Refusal;
use crate::text::escape_for_terminal;
use crate::wire::session::{CODE_HEADER, ClientMsg, ServerMsg, clamp_size, exit_status};

/// What can go wrong on the client side of a relayed session.
#[derive(Debug, Error)]
pub enum RelayError {
    /// The websocket could not be set up.
    #[error("cannot reach the broker's session endpoint: {0}")]
    Connect(String),
    /// The broker refused (a rule: not your request, not approved, not an approver...).
    #[error("{0}")]
    Refused(String),
    /// A lifecycle rule refused, typed as the broker made it.
    #[error(transparent)]
    Rule(Refusal),
    /// The broker could not open or relay the session.
    #[error("{0}")]
    Failed(String),
    /// The local terminal failed.
    #[error(transparent)]
    Bridge(#[from] BridgeError),
}

/// The websocket request for `path` (e.g. `/v1/requests/REQ/session?cols=80&rows=24`) on
/// `io`, a stream `connector` connected, with its identity proof (bound to `io`) when the
/// transport needs one.
pub fn request_for<'a>(
    connector: &'a dyn Connector,
    io: &BoxIo,
    path: &'a str,
) -> impl std::future::Future<Output = Result<Request, RelayError>> + Send + 'a {
    // Read before the future: a stream is not Sync, so it may not be held across an await.
    let binding = connector.binding(io);
    async move { request_bound(connector, binding, path).await }
}

async fn request_bound(
    connector: &dyn Connector,
    binding: Result<Option<String>, String>,
    path: &str,
) -> Result<Request, RelayError> {
    let mut req = format!("ws://{}{path}", connector.host())
        .into_client_request()
        .map_err(|e| RelayError::Connect(e.to_string()))?;
    // Over TLS every request, the upgrade included, carries the IAM identity proof.
    let binding = binding.map_err(RelayError::Connect)?;
    if let Some(auth) = connector
        .authorization(binding.as_deref())
        .await
        .map_err(RelayError::Connect)?
    {
        let value = auth
            .parse()
            .map_err(|_| RelayError::Connect("the identity proof is not a valid header".into()))?;
        req.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::header::AUTHORIZATION,
            value,
        );
    }
    Ok(req)
}

/// `req` carrying the requester's TOTP code in [`CODE_HEADER`] (never in the URL: URLs get
/// logged); `None` sends none (the broker refuses unless its policy opens without a code).
pub fn with_code(mut req: Request, code: Option<&str>) -> Result<Request, RelayError> {
    if let Some(code) = code {
        let value = code
            .parse()
            .map_err(|_| RelayError::Refused("a TOTP code is 6 digits".into()))?;
        req.headers_mut().insert(CODE_HEADER, value);
    }
    Ok(req)
}

/// The path that opens the session of `id` at terminal size `size`.
pub fn session_path(id: &str, size: SizeData) -> String {
    let (cols, rows) = clamp_size(size.cols, size.rows);
    format!("/v1/requests/{id}/session?cols={cols}&rows={rows}")
}

/// The path that runs one command (`open REQ -- CMD ARGS`) as the session of `id`.
pub fn command_path(id: &str, size: SizeData, argv: &[String]) -> String {
    let line = crate::command_line::join(argv);
    let query: String = url::form_urlencoded::byte_serialize(line.as_bytes()).collect();
    format!("{}&command={query}", session_path(id, size))
}

/// Bytes of a [`ServerMsg::Stderr`]; `None` (logged) when they are not base64.
fn decode(data: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .inspect_err(|e| tracing::warn!(error = %e, "unreadable stderr from the broker"))
        .ok()
}

/// The path that watches the session of `id`.
pub fn watch_path(id: &str) -> String {
    format!("/v1/requests/{id}/watch")
}

/// How a relayed session ended, as the broker reported it.
#[derive(Debug, Clone, PartialEq)]
enum Ending {
    End(u8),
    Error { message: String, refused: bool },
}

/// A session the broker holds, as seen from here: a [`SessionHandle`] whose input, resizes
/// and terminate go to the broker. With the events [`connect`] returns (lifecycle steps
/// arrive as notices) it is driven like a local session: [`bridge_stdio`], or a TUI pane.
pub struct Relayed {
    /// Sends keystrokes, resizes, terminate.
    pub handle: SessionHandle,
    /// Where the session runs.
    pub target: String,
    /// When the approved duration ends.
    pub ends_at: Option<chrono::DateTime<chrono::Utc>>,
    ending: Arc<Mutex<Option<Ending>>>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for Relayed {
    fn drop(&mut self) {
        self.close();
    }
}

impl Relayed {
    /// Drops the connection (a watcher stops watching); the events then end.
    pub fn close(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }

    /// The exit status to report once the events have ended: the shell's own when it
    /// exited; 1 when it was terminated, expired or lost.
    pub fn outcome(&self) -> Result<u8, RelayError> {
        let ending = self.ending.lock().ok().and_then(|mut e| e.take());
        match ending {
            Some(Ending::End(status)) => Ok(status),
            Some(Ending::Error { message, refused }) => Err(ending_error(message, refused)),
            None => Err(RelayError::Failed(
                "the connection to the broker ended before the session did".into(),
            )),
        }
    }
}

/// The error an error frame stands for: the typed refusal when it carries one.
fn frame_error(message: String, refused: bool, refusal: Option<Refusal>) -> RelayError {
    refusal.map_or_else(|| ending_error(message, refused), RelayError::Rule)
}

fn ending_error(message: String, refused: bool) -> RelayError {
    if refused {
        RelayError::Refused(message)
    } else {
        RelayError::Failed(message)
    }
}

/// Asks the broker on `stream` to open (or reconnect to) the session in `req` and waits
/// until the shell is live; the steps so far are the first events. A refusal or a failed
/// open is an error here.
pub async fn connect<S>(
    stream: S,
    req: Request,
) -> Result<(Relayed, mpsc::Receiver<SessionEvent>), RelayError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ws, _) = tokio_tungstenite::client_async(req, stream)
        .await
        .map_err(|e| RelayError::Connect(e.to_string()))?;
    let (mut sink, mut source) = ws.split();
    let (events, events_rx) = mpsc::channel(limits::BYTE_CHANNEL_CAPACITY);

    // Until the shell is live: steps become the first notices; an error ends it here.
    let (target, ends_at) = loop {
        let Some(Ok(msg)) = source.next().await else {
            return Err(RelayError::Failed(
                "the broker closed the connection before the session opened".into(),
            ));
        };
        let Message::Text(t) = msg else { continue };
        match serde_json::from_str::<ServerMsg>(&t) {
            Ok(ServerMsg::Step { text } | ServerMsg::Notice { text }) => {
                let _ = events.try_send(SessionEvent::Notice(text));
            }
            Ok(ServerMsg::Live {
                target, ends_at, ..
            }) => break (target, ends_at),
            Ok(ServerMsg::Error {
                message,
                refused,
                refusal,
            }) => return Err(frame_error(message, refused, refusal)),
            Ok(other) => tracing::debug!(?other, "before the session opened; ignored"),
            Err(e) => tracing::warn!(error = %e, "unreadable message from the broker"),
        }
    };

    let ending: Arc<Mutex<Option<Ending>>> = Arc::new(Mutex::new(None));
    let seen = ending.clone();
    let inbound = tokio::spawn(async move {
        let set = |e: Ending| {
            if let Ok(mut s) = seen.lock() {
                *s = Some(e);
            }
        };
        while let Some(Ok(msg)) = source.next().await {
            let event = match msg {
                Message::Binary(b) => SessionEvent::Output(b.to_vec()),
                Message::Text(t) => match serde_json::from_str::<ServerMsg>(&t) {
                    Ok(ServerMsg::Step { text } | ServerMsg::Notice { text }) => {
                        SessionEvent::Notice(text)
                    }
                    Ok(ServerMsg::Live { .. } | ServerMsg::Resize { .. }) => continue,
                    Ok(ServerMsg::Stderr { data }) => match decode(&data) {
                        Some(bytes) => SessionEvent::Stderr(bytes),
                        None => continue,
                    },
                    Ok(ServerMsg::Error {
                        message, refused, ..
                    }) => {
                        set(Ending::Error {
                            message: message.clone(),
                            refused,
                        });
                        let _ = events.send(SessionEvent::Failed { error: message }).await;
                        return;
                    }
                    Ok(ServerMsg::End {
                        reason,
                        exit_code,
                        seal_error,
                    }) => {
                        if let Some(why) = seal_error {
                            let text = format!("the recording could not be sealed: {why}");
                            let _ = events.send(SessionEvent::Notice(text)).await;
                        }
                        set(Ending::End(exit_status(&reason, exit_code)));
                        let closed = SessionEvent::Closed {
                            reason: reason.to_string(),
                        };
                        let _ = events.send(closed).await;
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable message from the broker");
                        continue;
                    }
                },
                Message::Close(_) => break,
                _ => continue,
            };
            if events.send(event).await.is_err() {
                return;
            }
        }
        let error = "lost the connection to the broker; it ends the session and replaces the \
                     instance unless you reconnect at once with `sombrero open`"
            .to_string();
        let _ = events.send(SessionEvent::Failed { error }).await;
    });

    let (handle, mut ends) = SessionHandle::detached();
    let outbound = tokio::spawn(async move {
        let mut control_open = true;
        loop {
            let msg = tokio::select! {
                input = ends.input.recv() => match input {
                    Some(bytes) => Message::Binary(bytes.into()),
                    None => break,
                },
                ctl = ends.control.recv(), if control_open => match ctl {
                    Some(Control::Resize(size)) => {
                        let (cols, rows) = clamp_size(size.cols, size.rows);
                        control(&ClientMsg::Resize { cols, rows })
                    }
                    Some(Control::Terminate) => control(&ClientMsg::Terminate),
                    None => {
                        control_open = false;
                        continue;
                    }
                },
            };
            if sink.send(msg).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let relayed = Relayed {
        handle,
        target,
        ends_at,
        ending,
        tasks: [inbound, outbound],
    };
    Ok((relayed, events_rx))
}

/// Opens the session of the request in `req` through the broker on `stream` and bridges it
/// to this process's terminal. Returns the exit status to report.
pub async fn open<S>(stream: S, req: Request) -> Result<u8, RelayError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (relayed, events) = connect(stream, req).await?;
    // The broker records; nothing is recorded here.
    bridge_stdio(relayed.handle.clone(), events, |_| {}, |_| {}).await?;
    relayed.outcome()
}

/// Runs one command through the broker on `stream` (`req` made for [`command_path`]): its
/// stdout to stdout, its stderr to stderr. Returns the exit status to report, the command's.
pub async fn open_command<S>(stream: S, req: Request) -> Result<u8, RelayError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (relayed, events) = connect(stream, req).await?;
    bridge_command_stdio(relayed.handle.clone(), events, |_| {}).await?;
    relayed.outcome()
}

fn control(msg: &ClientMsg) -> Message {
    Message::Text(serde_json::to_string(msg).unwrap_or_default().into())
}

/// How a watch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// Why the session ended, as a person reads it; `None` if the connection ended first.
    pub ended: Option<String>,
}

/// Watches the session of the request in `req`, read-only, until the session ends or the
/// connection does: the session's output goes through a terminal emulator and only its screen
/// is drawn on `out` ([`WatchScreen`], clipped to `view` = the watcher's rows and columns);
/// notices, escaped, go to `notices`.
pub async fn watch<S, W, E>(
    stream: S,
    req: Request,
    mut out: W,
    mut notices: E,
    view: Option<(u16, u16)>,
) -> Result<Watched, RelayError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream)
        .await
        .map_err(|e| RelayError::Connect(e.to_string()))?;
    let say = |text: String| format!("\r\n[sombrero] {}\r\n", escape_for_terminal(&text));
    // Until `live` says the session's size, the usual default.
    let mut screen = WatchScreen::new(24, 80, view);
    while let Some(Ok(msg)) = ws.next().await {
        let (bytes, note) = match msg {
            Message::Binary(b) => (b.to_vec(), None),
            Message::Text(t) => match serde_json::from_str::<ServerMsg>(&t) {
                Ok(ServerMsg::Live {
                    request,
                    target,
                    requester,
                    cols,
                    rows,
                    ..
                }) => (
                    {
                        screen.resize(rows, cols);
                        Vec::new()
                    },
                    Some(format!(
                        "watching {request}: {requester} on {target} ({cols}x{rows}); read-only, Ctrl-C stops watching"
                    )),
                ),
                Ok(ServerMsg::Step { text } | ServerMsg::Notice { text }) => {
                    (Vec::new(), Some(text))
                }
                // The broker sends watchers a command's stderr as screen bytes already.
                Ok(ServerMsg::Stderr { data }) => (decode(&data).unwrap_or_default(), None),
                Ok(ServerMsg::Resize { cols, rows }) => (
                    {
                        screen.resize(rows, cols);
                        Vec::new()
                    },
                    Some(format!("the session is now {cols}x{rows}")),
                ),
                Ok(ServerMsg::Error {
                    message,
                    refused,
                    refusal,
                }) => return Err(frame_error(message, refused, refusal)),
                Ok(ServerMsg::End { reason, .. }) => {
                    let _ = out.write_all(&screen.finish()).await;
                    let _ = out.flush().await;
                    let text = format!("session ended: {reason}");
                    let _ = notices.write_all(say(text).as_bytes()).await;
                    let _ = notices.flush().await;
                    return Ok(Watched {
                        ended: Some(reason.to_string()),
                    });
                }
                Err(_) => continue,
            },
            Message::Close(_) => break,
            _ => continue,
        };
        if !bytes.is_empty() {
            screen.process(&bytes);
            out.write_all(&screen.render())
                .await
                .and(out.flush().await)
                .map_err(|e| RelayError::Bridge(BridgeError::Output(e)))?;
        }
        if let Some(text) = note {
            let _ = notices.write_all(say(text).as_bytes()).await;
            let _ = notices.flush().await;
            screen.invalidate();
        }
    }
    let _ = out.write_all(&screen.finish()).await;
    let _ = out.flush().await;
    Ok(Watched { ended: None })
}
