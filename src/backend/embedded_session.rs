//! Sessions opened in this process: for a TUI pane (every step, the recording, the expiry
//! watchdog, sealing and replacement show up as notices in the pane) and on this terminal
//! (`sombrero open`). Moved from `cli/wiring.rs` and `cli/session.rs` as they were.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::TerminalOpen;
use super::{BackendError, OpenedSession, Progress, Result, SessionControl, SessionRequest};
use crate::channel::client::SessionEvent;
use crate::channel::payload::SizeData;
use crate::channel::terminal::{bridge_command_stdio, bridge_stdio, local_size};
use crate::fleet::aws::AwsFleet;
use crate::session::{self, SessionDeps, Terminator};
use crate::wire::session::exit_status;

/// Session events and keystrokes queued between the TUI and the data channel.
const QUEUE: usize = 256;

/// Resizes are recorded, then forwarded; terminating is recorded as the person's act.
struct Control {
    tap: session::RecorderTap,
    terminator: Terminator,
    user: String,
}

impl SessionControl for Control {
    fn resize(&self, rows: u16, cols: u16) -> Result<(), String> {
        // Recorded, then forwarded: the remote pty must follow the pane.
        self.tap.resize(cols, rows).map_err(|e| e.to_string())
    }

    fn terminate(&self) -> Result<(), String> {
        self.terminator.terminate(&self.user);
        Ok(())
    }
}

/// Opens a session for a TUI pane through the same path as `sombrero open`.
pub(super) async fn open_for_pane(
    deps: SessionDeps<AwsFleet>,
    req: SessionRequest,
) -> Result<OpenedSession> {
    if req.watch {
        return Err(BackendError::Refused(
            "Watching needs a broker daemon: a session opened without one lives in the process that opened it."
                .to_string(),
        ));
    }
    let size = SizeData {
        cols: u32::from(req.cols),
        rows: u32::from(req.rows),
    };
    let (steps_tx, steps) = mpsc::unbounded_channel();
    let mut live = session::open(
        &deps,
        &req.request_id,
        &req.user,
        req.code.as_deref(),
        size,
        move |s| {
            let _ = steps_tx.send(s);
        },
    )
    .await?;
    let mut channel = live.events.take().ok_or_else(|| {
        BackendError::Failed("the session's events were already taken".to_string())
    })?;
    let (ui, events) = mpsc::channel(QUEUE);
    let (input, mut keys) = mpsc::channel::<Vec<u8>>(QUEUE);
    let opened = OpenedSession {
        target: live.request.target.clone(),
        ends_at: Some(live.ends_at),
        recording: true,
        input,
        control: Box::new(Control {
            tap: live.tap.clone(),
            terminator: live.terminator(),
            user: req.user.clone(),
        }),
        events,
    };

    // Keystrokes: recorded, then sent, in order.
    let (tap, handle) = (live.tap.clone(), live.handle.clone());
    tokio::spawn(async move {
        while let Some(bytes) = keys.recv().await {
            tap.input(&bytes);
            if handle.send_input(bytes).await.is_err() {
                break;
            }
        }
    });

    // Output: recorded, then shown; at the end, close, seal and replace with progress.
    tokio::spawn(async move {
        let to = ui.clone();
        let Ok(end) = session::pump(&live.tap, &mut channel, session::Forward { to, steps }).await;
        let done = session::finish(&deps, live, Ok(end), |s| {
            let _ = ui.try_send(SessionEvent::Notice(s.to_string()));
        })
        .await;
        let summary = match &done.seal {
            Ok(_) => format!("{}; recording sealed", done.reason),
            Err(why) => format!("{}; RECORDING NOT SEALED: {why}", done.reason),
        };
        let _ = ui.send(SessionEvent::Closed { reason: summary }).await;
    });
    Ok(opened)
}

/// `sombrero open` here: the session bridged to this terminal, recorded, sealed and
/// finished; the exit status of the shell or command.
pub(super) async fn open_on_terminal(
    deps: SessionDeps<AwsFleet>,
    req: TerminalOpen,
    steps: Progress,
) -> Result<u8> {
    let command = (!req.command.is_empty()).then_some(req.command.as_slice());
    let say = Arc::clone(&steps);
    let mut live = session::open_for(
        &deps,
        &req.request,
        &req.user,
        req.code.as_deref(),
        local_size(),
        command,
        move |s| say(s.to_string()),
    )
    .await?;
    let Some(events) = live.events.take() else {
        return Err(BackendError::Failed(
            "session events were already taken".into(),
        ));
    };
    let (out_tap, in_tap) = (live.tap.clone(), live.tap.clone());
    let end = if command.is_some() {
        bridge_command_stdio(live.handle.clone(), events, move |b| out_tap.output(b)).await
    } else {
        let resizes = tokio::spawn(record_resizes(live.tap.clone()));
        let end = bridge_stdio(
            live.handle.clone(),
            events,
            move |b| out_tap.output(b),
            move |b| in_tap.input(b),
        )
        .await;
        resizes.abort();
        end
    };
    let done = session::finish(&deps, live, end, |s| steps(s.to_string())).await;
    if let Err(why) = &done.seal {
        eprintln!("sombrero: the recording could not be sealed: {why}");
    }
    Ok(exit_status(&done.reason, done.exit_code))
}

/// Records every terminal resize (the bridge forwards them; this puts them in the cast).
async fn record_resizes(tap: session::RecorderTap) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut winch) = signal(SignalKind::window_change()) else {
        return;
    };
    while winch.recv().await.is_some() {
        if let Ok((cols, rows)) = crossterm::terminal::size() {
            let _ = tap.resize(cols, rows);
        }
    }
}
