//! Opening a break-glass session inside the TUI: `session::open`, then a pump that records
//! both directions through the session's tap, and `session::finish` (close, seal, replace)
//! when the shell ends. Every lifecycle step reaches the pane's status bar as a notice.

use std::sync::Arc;

use futures_util::FutureExt;
use tokio::sync::mpsc;

use crate::channel::client::SessionEvent;
use crate::channel::limits::BYTE_CHANNEL_CAPACITY;
use crate::channel::payload::SizeData;
use crate::channel::terminal::{EndReason, SessionEnd};
use crate::fleet::{Fleet, ReplacementOutcome};
use crate::session::{self, LiveSession, RecorderTap, SessionDeps, Step, Terminator};

use super::driver::{INPUT_QUEUE, OpenSessionFn, OpenedSession, SessionControl, SessionRequest};

/// An [`OpenSessionFn`] that runs the real session path with `deps`.
pub fn session_opener<F: Fleet + Send + Sync + 'static>(deps: SessionDeps<F>) -> OpenSessionFn {
    let deps = Arc::new(deps);
    Arc::new(move |req: SessionRequest| {
        let deps = Arc::clone(&deps);
        async move { open(deps, req).await }.boxed()
    })
}

async fn open<F: Fleet + Send + Sync + 'static>(
    deps: Arc<SessionDeps<F>>,
    req: SessionRequest,
) -> Result<OpenedSession, String> {
    let (ui_tx, ui_rx) = mpsc::channel(BYTE_CHANNEL_CAPACITY);
    let size = SizeData {
        cols: u32::from(req.cols),
        rows: u32::from(req.rows),
    };
    let mut live = session::open(&deps, &req.request_id, &req.user, size, notices(&ui_tx))
        .await
        .map_err(|e| e.to_string())?;
    let events = live
        .events
        .take()
        .ok_or_else(|| "the session's events were already taken".to_string())?;
    let (input, keys) = mpsc::channel(INPUT_QUEUE);
    tokio::spawn(forward_input(keys, live.handle.clone(), live.tap.clone()));
    let opened = OpenedSession {
        target: live.request.target.clone(),
        ends_at: Some(live.ends_at),
        recording: true,
        input,
        control: Box::new(Control {
            terminator: live.terminator(),
            handle: live.handle.clone(),
            tap: live.tap.clone(),
            user: req.user.clone(),
        }),
        events: ui_rx,
    };
    tokio::spawn(pump(deps, live, events, ui_tx));
    Ok(opened)
}

/// Lifecycle steps as notices for the pane (dropped, not awaited, if the UI lags).
fn notices(ui: &mpsc::Sender<SessionEvent>) -> impl FnMut(Step) + Send + 'static {
    let ui = ui.clone();
    move |step: Step| {
        let _ = ui.try_send(SessionEvent::Notice(step.to_string()));
    }
}

async fn forward_input(
    mut keys: mpsc::Receiver<Vec<u8>>,
    handle: crate::channel::client::SessionHandle,
    tap: RecorderTap,
) {
    while let Some(bytes) = keys.recv().await {
        tap.input(&bytes);
        if handle.send_input(bytes).await.is_err() {
            break;
        }
    }
}

/// Records and forwards output until the shell ends, then closes, seals and replaces.
async fn pump<F: Fleet + Send + Sync + 'static>(
    deps: Arc<SessionDeps<F>>,
    live: LiveSession,
    mut events: mpsc::Receiver<SessionEvent>,
    ui: mpsc::Sender<SessionEvent>,
) {
    let mut exit_code = None;
    let reason = loop {
        match events.recv().await {
            Some(SessionEvent::Output(b)) => {
                live.tap.output(&b);
                let _ = ui.send(SessionEvent::Output(b)).await;
            }
            Some(SessionEvent::Stderr(b)) => {
                live.tap.output(&b);
                let _ = ui.send(SessionEvent::Stderr(b)).await;
            }
            Some(SessionEvent::ExitCode(c)) => {
                exit_code = Some(c);
                let _ = ui.send(SessionEvent::ExitCode(c)).await;
            }
            Some(SessionEvent::Notice(n)) => {
                let _ = ui.send(SessionEvent::Notice(n)).await;
            }
            Some(SessionEvent::Closed { reason }) => break EndReason::Closed(reason),
            Some(SessionEvent::Failed { error }) => break EndReason::Failed(error),
            None => break EndReason::Closed(String::new()),
        }
    };
    let _ = ui
        .send(SessionEvent::Notice(
            "shell ended: closing, sealing the recording, replacing the node…".to_string(),
        ))
        .await;
    let end = SessionEnd { exit_code, reason };
    let done = session::finish(&deps, live, Ok(end), notices(&ui)).await;
    let seal = match &done.seal {
        Ok(_) => "recording sealed".to_string(),
        Err(why) => format!("recording NOT sealed: {why}"),
    };
    let replaced = match &done.replacement {
        ReplacementOutcome::Completed { new, .. } => format!("node replaced by {new}"),
        ReplacementOutcome::Failed { why } => format!("replacement failed: {why}"),
        ReplacementOutcome::Requested { note } => note.clone(),
    };
    let reason = format!("{}; {seal}; {replaced}", done.reason);
    tracing::info!(request = %done.request.id, %reason, "session finished");
    let _ = ui.send(SessionEvent::Closed { reason }).await;
}

struct Control {
    terminator: Terminator,
    handle: crate::channel::client::SessionHandle,
    tap: RecorderTap,
    user: String,
}

impl SessionControl for Control {
    fn resize(&self, rows: u16, cols: u16) -> Result<(), String> {
        self.tap.resize(cols, rows);
        self.handle.resize(cols, rows).map_err(|e| e.to_string())
    }

    fn terminate(&self) -> Result<(), String> {
        self.terminator.terminate(&self.user);
        Ok(())
    }
}
