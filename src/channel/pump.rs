//! One pump for a live session's events, whoever shows them (the local terminal, the TUI's
//! pane, the daemon's clients): output, standard error, the exit status and notices go to an
//! [`Outlet`] until the session ends, while whatever else the outlet waits on (keystrokes, a
//! timer, a client coming back) is woken alongside.

use std::future::Future;

use tokio::sync::mpsc;

use super::client::SessionEvent;

/// How the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The service closed the channel or the client terminated it; the service's text.
    Closed(String),
    /// The session could not continue; what went wrong.
    Failed(String),
}

/// Result of a bridged session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    /// The remote shell's exit status, when the agent reported it.
    pub exit_code: Option<i32>,
    /// Why the session ended.
    pub reason: EndReason,
}

/// Where a session's events go, and what else the pump waits for.
pub trait Outlet {
    /// What [`Outlet::wake`] resolves to.
    type Wake;
    /// Why the pump stops before the session ends (the outlet cannot show it any more).
    type Error;

    /// Something the pump waits for besides the session's events. Cancel-safe: it is dropped
    /// whenever an event comes first.
    fn wake(&mut self) -> impl Future<Output = Self::Wake>;
    /// Acts on what [`Outlet::wake`] returned.
    fn woken(&mut self, wake: Self::Wake) -> impl Future<Output = Result<(), Self::Error>>;
    /// Remote output.
    fn output(&mut self, bytes: Vec<u8>) -> impl Future<Output = Result<(), Self::Error>>;
    /// A command's standard error.
    fn stderr(&mut self, bytes: Vec<u8>) -> impl Future<Output = Result<(), Self::Error>>;
    /// The remote exit status (the pump keeps it for the end too).
    fn exit_code(&mut self, code: i32) -> impl Future<Output = Result<(), Self::Error>>;
    /// A notice about the session (not session output).
    fn notice(&mut self, text: String) -> impl Future<Output = Result<(), Self::Error>>;
}

/// Carries `events` to `outlet` until the session ends; returns how it ended.
pub async fn pump<O: Outlet>(
    events: &mut mpsc::Receiver<SessionEvent>,
    outlet: &mut O,
) -> Result<SessionEnd, O::Error> {
    let mut exit_code = None;
    loop {
        let event = match tokio::select! {
            event = events.recv() => Ok(event),
            wake = outlet.wake() => Err(wake),
        } {
            Ok(event) => event,
            Err(wake) => {
                outlet.woken(wake).await?;
                continue;
            }
        };
        let reason = match event {
            Some(SessionEvent::Output(bytes)) => {
                outlet.output(bytes).await?;
                continue;
            }
            Some(SessionEvent::Stderr(bytes)) => {
                outlet.stderr(bytes).await?;
                continue;
            }
            Some(SessionEvent::ExitCode(code)) => {
                exit_code = Some(code);
                outlet.exit_code(code).await?;
                continue;
            }
            Some(SessionEvent::Notice(text)) => {
                outlet.notice(text).await?;
                continue;
            }
            Some(SessionEvent::Closed { reason }) => EndReason::Closed(reason),
            Some(SessionEvent::Failed { error }) => EndReason::Failed(error),
            // The session task vanished without saying how the session ended.
            None => EndReason::Failed("the session task stopped unexpectedly".into()),
        };
        return Ok(SessionEnd { exit_code, reason });
    }
}
