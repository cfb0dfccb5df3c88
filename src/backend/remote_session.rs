//! Sessions through a broker daemon: the daemon opens, records, seals and replaces; a pane or
//! this terminal only carries bytes (steps show as notices). Moved from `cli/wiring.rs` and
//! `cli/session.rs` as they were.

use std::io::IsTerminal;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{BackendError, OpenedSession, Result, SessionControl, SessionRequest, TerminalOpen};
use crate::channel::payload::SizeData;
use crate::channel::terminal::local_size;
use crate::remote::session::{self as relay, RelayError, Relayed};
use crate::remote::{BoxIo, Connector, RemoteBroker};

/// Keystrokes queued between the pane and the daemon.
const QUEUE: usize = 256;

/// Opens (or watches) a session for a TUI pane through the daemon on `connector`.
pub(super) async fn open_for_pane(
    connector: Arc<dyn Connector>,
    req: SessionRequest,
) -> Result<OpenedSession> {
    let size = SizeData {
        cols: u32::from(req.cols),
        rows: u32::from(req.rows),
    };
    let path = if req.watch {
        relay::watch_path(&req.request_id)
    } else {
        relay::session_path(&req.request_id, size)
    };
    let io = connector
        .connect()
        .await
        .map_err(|e| BackendError::Failed(format!("cannot reach the broker: {e}")))?;
    let http = relay::request_for(&*connector, &io, &path)
        .await
        .and_then(|http| relay::with_code(http, req.code.as_deref()))?;
    let (relayed, events) = relay::connect(io, http).await?;
    let (input, mut keys) = mpsc::channel::<Vec<u8>>(QUEUE);
    let handle = relayed.handle.clone();
    tokio::spawn(async move {
        while let Some(bytes) = keys.recv().await {
            if handle.send_input(bytes).await.is_err() {
                break;
            }
        }
    });
    Ok(OpenedSession {
        target: relayed.target.clone(),
        ends_at: relayed.ends_at,
        recording: true,
        input,
        control: Box::new(RelayControl {
            relayed,
            watch: req.watch,
        }),
        events,
    })
}

/// Resizes and terminate go to the broker, which records and forwards them; a watcher's
/// "end" only stops watching.
struct RelayControl {
    relayed: Relayed,
    watch: bool,
}

impl SessionControl for RelayControl {
    fn resize(&self, rows: u16, cols: u16) -> Result<(), String> {
        if self.watch {
            return Ok(());
        }
        self.relayed
            .handle
            .resize(cols, rows)
            .map_err(|e| e.to_string())
    }

    fn terminate(&self) -> Result<(), String> {
        if self.watch {
            self.relayed.close();
            return Ok(());
        }
        self.relayed.handle.terminate().map_err(|e| e.to_string())
    }
}

/// `sombrero open` through the daemon: this terminal carries the session.
pub(super) async fn open_on_terminal(remote: Arc<RemoteBroker>, req: TerminalOpen) -> Result<u8> {
    let code = req.code;
    if !req.command.is_empty() {
        let path = relay::command_path(&req.request, local_size(), &req.command);
        return relayed(&remote, &path, |io, http| async move {
            let http = relay::with_code(http, code.as_deref())?;
            relay::open_command(io, http).await
        })
        .await;
    }
    let path = relay::session_path(&req.request, local_size());
    relayed(&remote, &path, |io, http| async move {
        let http = relay::with_code(http, code.as_deref())?;
        relay::open(io, http).await
    })
    .await
}

/// `sombrero watch`: someone's live session drawn read-only on this terminal.
pub(super) async fn watch_on_terminal(remote: Arc<RemoteBroker>, request: String) -> Result<u8> {
    relayed(
        &remote,
        &relay::watch_path(&request),
        |io, http| async move {
            // On a terminal the screen is clipped to it; piped, it is drawn at the session's size.
            let view = std::io::stdout().is_terminal().then(|| {
                let size = local_size();
                let fit = |n: u32| u16::try_from(n).unwrap_or(u16::MAX);
                (fit(size.rows), fit(size.cols))
            });
            let watched =
                relay::watch(io, http, tokio::io::stdout(), tokio::io::stderr(), view).await?;
            Ok(match watched.ended {
                Some(_) => 0,
                None => {
                    eprintln!(
                        "sombrero: the connection to the broker ended before the session did"
                    );
                    1
                }
            })
        },
    )
    .await
}

/// Connects a websocket at `path` on the daemon's transport and runs `session` over it.
async fn relayed<Fut>(
    remote: &RemoteBroker,
    path: &str,
    session: impl FnOnce(BoxIo, relay::Request) -> Fut,
) -> Result<u8>
where
    Fut: std::future::Future<Output = Result<u8, RelayError>>,
{
    let connector = remote.connector();
    let io = connector.connect().await.map_err(|e| {
        BackendError::Refused(format!(
            "cannot reach the broker at {}: {e} (is `sombrero serve` running, and may you use its socket?)",
            remote.endpoint()
        ))
    })?;
    let req = relay::request_for(&*connector, &io, path)
        .await
        .map_err(|e| BackendError::Refused(e.to_string()))?;
    Ok(session(io, req).await?)
}
