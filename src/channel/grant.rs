//! Ends a session when its grant window closes, with a warning shortly before: run
//! [`enforce_grant`] beside the bridge; the bridge then returns `Closed("terminated by the
//! client")` like any other terminate.

use std::time::Duration;

use tokio::time::Instant;

use super::client::SessionHandle;
use super::limits;

/// How a grant enforcement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantOutcome {
    /// The window closed and the session was told to terminate.
    Terminated,
    /// The session had already ended.
    SessionGone,
}

/// Waits until `end`, calling `warn(remaining)` once [`limits::GRANT_WARNING`] before it (at
/// once if that moment has passed), then terminates the session.
pub async fn enforce_grant(
    handle: SessionHandle,
    end: Instant,
    warn: impl FnOnce(Duration),
) -> GrantOutcome {
    let warn_at = end
        .checked_sub(limits::GRANT_WARNING)
        .unwrap_or_else(Instant::now);
    tokio::time::sleep_until(warn_at).await;
    if end > Instant::now() {
        warn(end.saturating_duration_since(Instant::now()));
    }
    tokio::time::sleep_until(end).await;
    match handle.terminate() {
        Ok(()) => GrantOutcome::Terminated,
        Err(_) => GrantOutcome::SessionGone,
    }
}
