//! One break-glass session, end to end.
//!
//! The lifecycle rules live in `request`; the session's side effects run in the one safe order
//! that `saga` spells out (claim, preflight, taint, start, record, connect; then close, seal,
//! replace), performed by `driver`. Every failure before the shell is reached fails closed:
//! the claimed request is closed as `OpenFailed` and no data channel is ever connected.
//! `live` holds a session whose shell is live (recorder tap, watchdog, terminator), `pump`
//! carries its events to whoever shows them, `replace` replaces an instance (the reaper too).

mod driver;
mod finish;
mod live;
mod pump;
mod replace;
pub mod saga;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::audit::EventKind;
use crate::broker::{Broker, BrokerError};
use crate::channel::client::{self, ClientOptions};
use crate::fleet::{FleetError, ReplacementOutcome};
use crate::recording::{RecorderKey, RecordingError};
use crate::request::CloseReason;

pub use driver::{open, open_for};
pub use finish::{Finished, finish};
pub use live::{LiveSession, RecorderTap, Terminator};
pub use pump::{Forward, pump};
pub use replace::{ReplaceJob, replace_audited};
pub use saga::SESSION_ACTOR;

/// How long to watch a replacement before reporting it unfinished (ASGs take minutes).
pub const REPLACE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How long before the end of the approved duration the person is warned.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(60);

/// What a session needs from the rest of the system.
pub struct SessionDeps<F> {
    /// The broker: every state change goes through it.
    pub broker: Arc<Broker>,
    /// The fleet the target lives in.
    pub fleet: Arc<F>,
    /// Where recordings are written.
    pub recordings_dir: PathBuf,
    /// The key that seals recordings.
    pub key: Arc<RecorderKey>,
    /// Data-channel options (signing, resume) beyond the terminal size.
    pub channel: ClientOptions,
    /// How long to watch a replacement before reporting it unfinished.
    pub replace_timeout: Duration,
}

impl<F> Clone for SessionDeps<F> {
    fn clone(&self) -> Self {
        SessionDeps {
            broker: self.broker.clone(),
            fleet: self.fleet.clone(),
            recordings_dir: self.recordings_dir.clone(),
            key: self.key.clone(),
            channel: self.channel.clone(),
            replace_timeout: self.replace_timeout,
        }
    }
}

/// Progress a person should see, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The request is claimed; the session must end by then.
    Claimed {
        /// End of the approved duration.
        ends_at: DateTime<Utc>,
    },
    /// The recording file exists.
    Recording {
        /// The cast file.
        path: PathBuf,
    },
    /// The target carries the taint tags.
    Tainted {
        /// The target.
        target: String,
    },
    /// StartSession succeeded.
    Started {
        /// The SSM session id.
        session_id: String,
    },
    /// The data channel is up: the shell is live.
    Connected,
    /// The approved duration is about to end.
    Warning {
        /// Time left.
        left: Duration,
    },
    /// A command just submitted raised a risk flag (audited as `command_flagged`).
    Flagged {
        /// Severity, label and the command, escaped and bounded.
        summary: String,
    },
    /// The session is over.
    Closed {
        /// Why.
        reason: CloseReason,
    },
    /// The recording is sealed.
    Sealed {
        /// Final digest.
        digest: String,
        /// The cast file.
        path: PathBuf,
    },
    /// Replacement is under way.
    Replacing {
        /// What is happening.
        note: String,
    },
    /// Replacement finished (or can be observed no further).
    Replaced {
        /// The outcome.
        outcome: ReplacementOutcome,
    },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = match self {
            Step::Claimed { ends_at } => format!(
                "request claimed; the session ends at {} UTC",
                ends_at.format("%H:%M:%S")
            ),
            Step::Recording { path } => format!("recording to {}", path.display()),
            Step::Tainted { target } => format!("{target} tagged as tainted (it will be replaced)"),
            Step::Started { session_id } => format!("session {session_id} started"),
            Step::Connected => "connected: everything you type and see is recorded".to_string(),
            Step::Warning { left } => format!(
                "{} s left: the session will be terminated when the approved time ends",
                left.as_secs()
            ),
            Step::Flagged { summary } => summary.clone(),
            Step::Closed { reason } => format!("session closed: {reason}"),
            Step::Sealed { digest, path } => {
                format!(
                    "recording sealed ({}): {}",
                    &digest[..digest.len().min(16)],
                    path.display()
                )
            }
            Step::Replacing { note } => format!("replacement: {note}"),
            Step::Replaced { outcome } => match outcome {
                ReplacementOutcome::Completed { old, new } => {
                    format!("{old} replaced by {new}")
                }
                ReplacementOutcome::Failed { why } => format!(
                    "REPLACEMENT FAILED: {why}; `sombrero reap` will retry, or replace it by hand"
                ),
                ReplacementOutcome::Requested { note } => format!("replacement requested: {note}"),
            },
        };
        f.write_str(&line)
    }
}

/// Why a session could not open.
#[derive(Debug, Error)]
pub enum SessionError {
    /// The broker refused or failed (request not approved, not yours, grant expired...).
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The recording could not be created: no session without a recording.
    #[error("{0}")]
    Recording(#[from] RecordingError),
    /// The target could not be tainted: no session on an untainted instance.
    #[error("cannot taint {target}: {source}; no session was opened")]
    Taint {
        /// The target.
        target: String,
        /// The fleet error.
        source: FleetError,
    },
    /// StartSession failed.
    #[error("cannot start a session on {target}: {source}")]
    Start {
        /// The target.
        target: String,
        /// The fleet error.
        source: FleetError,
    },
    /// `open` asked for a command (or a shell) the request was not approved for.
    #[error("{0}; nothing was opened")]
    CommandRefused(String),
    /// The data channel could not be connected.
    #[error("cannot connect the session's data channel: {0}; the session was terminated")]
    Channel(#[from] client::ChannelError),
}

impl SessionError {
    /// Whether a rule refused the open (exit status 1 at the command line, nothing happened).
    pub fn is_refusal(&self) -> bool {
        matches!(self, SessionError::Broker(e) if e.is_refusal())
            || matches!(self, SessionError::CommandRefused(_))
    }
}

async fn audit(
    broker: &Arc<Broker>,
    kind: EventKind,
    request_id: Option<&str>,
    data: serde_json::Value,
) {
    let broker = broker.clone();
    let id = request_id.map(str::to_string);
    if let Err(e) = blocking(move || broker.record(SESSION_ACTOR, kind, id.as_deref(), data)).await
    {
        tracing::error!(error = %e, ?kind, "could not append an audit event");
    }
}

/// Runs a broker call off the async threads (SQLite may wait on a lock).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, BrokerError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(BrokerError::Internal(format!("broker task failed: {e}"))),
    }
}

/// Checks that a recording can be written in `dir` (creates it, writes and removes a probe),
/// so a session never starts where its recording would fail at once.
pub fn preflight(dir: &std::path::Path) -> Result<(), RecordingError> {
    use std::io::Write;
    let create = |source| RecordingError::Create {
        path: dir.to_path_buf(),
        source,
    };
    crate::config::create_private_dir(dir).map_err(|e| match e {
        crate::config::ConfigError::CreateDir { source, .. } => create(source),
        other => create(std::io::Error::other(other.to_string())),
    })?;
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| {
            f.write_all(b"pink sombrero recording probe\n")?;
            f.sync_all()
        });
    let _ = std::fs::remove_file(&probe);
    result.map_err(create)
}
