//! The live-session pump: the data channel's events, recorded first, then shown by an
//! outlet (the TUI's pane here, the daemon's clients in `serve::hub`, the local terminal in
//! `channel::terminal`), until the session ends.

use std::convert::Infallible;

use tokio::sync::mpsc;

use super::Step;
use super::live::RecorderTap;
use crate::channel::client::SessionEvent;
use crate::channel::pump::{self, Outlet};
use crate::channel::terminal::SessionEnd;

/// Pumps `events` until the session ends: output and standard error reach the recording
/// before `outlet` shows them.
pub async fn pump<O: Outlet>(
    tap: &RecorderTap,
    events: &mut mpsc::Receiver<SessionEvent>,
    outlet: O,
) -> Result<SessionEnd, O::Error> {
    let mut recorded = Recorded {
        tap: tap.clone(),
        outlet,
    };
    pump::pump(events, &mut recorded).await
}

/// Records what the outlet shows.
struct Recorded<O> {
    tap: RecorderTap,
    outlet: O,
}

impl<O: Outlet> Outlet for Recorded<O> {
    type Wake = O::Wake;
    type Error = O::Error;

    async fn wake(&mut self) -> O::Wake {
        self.outlet.wake().await
    }

    async fn woken(&mut self, wake: O::Wake) -> Result<(), O::Error> {
        self.outlet.woken(wake).await
    }

    async fn output(&mut self, bytes: Vec<u8>) -> Result<(), O::Error> {
        self.tap.output(&bytes);
        self.outlet.output(bytes).await
    }

    async fn stderr(&mut self, bytes: Vec<u8>) -> Result<(), O::Error> {
        self.tap.output(&bytes);
        self.outlet.stderr(bytes).await
    }

    async fn exit_code(&mut self, code: i32) -> Result<(), O::Error> {
        self.outlet.exit_code(code).await
    }

    async fn notice(&mut self, text: String) -> Result<(), O::Error> {
        self.outlet.notice(text).await
    }
}

/// Forwards a session's events, and its lifecycle steps as notices, to a queue (the TUI's
/// pane reads it).
pub struct Forward {
    /// Where the events go.
    pub to: mpsc::Sender<SessionEvent>,
    /// The session's steps (told by the watchdog while live).
    pub steps: mpsc::UnboundedReceiver<Step>,
}

impl Forward {
    async fn send(&self, event: SessionEvent) -> Result<(), Infallible> {
        // A pane that went away does not end the session: it ends as the shell does.
        let _ = self.to.send(event).await;
        Ok(())
    }
}

impl Outlet for Forward {
    type Wake = Step;
    type Error = Infallible;

    async fn wake(&mut self) -> Step {
        match self.steps.recv().await {
            Some(step) => step,
            None => std::future::pending().await,
        }
    }

    async fn woken(&mut self, step: Step) -> Result<(), Infallible> {
        self.send(SessionEvent::Notice(step.to_string())).await
    }

    async fn output(&mut self, bytes: Vec<u8>) -> Result<(), Infallible> {
        self.send(SessionEvent::Output(bytes)).await
    }

    async fn stderr(&mut self, bytes: Vec<u8>) -> Result<(), Infallible> {
        self.send(SessionEvent::Stderr(bytes)).await
    }

    async fn exit_code(&mut self, code: i32) -> Result<(), Infallible> {
        self.send(SessionEvent::ExitCode(code)).await
    }

    async fn notice(&mut self, text: String) -> Result<(), Infallible> {
        self.send(SessionEvent::Notice(text)).await
    }
}
