//! A session whose shell is live: the recorder tap on both directions, the watchdog (flush,
//! expiry warning, end of the approved time, kill elsewhere), the live risk flags and the
//! terminator a person ends it with.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{EXPIRY_WARNING, Step, audit, blocking};
use crate::audit::EventKind;
use crate::broker::Broker;
use crate::channel::client::{self, SessionEvent, SessionHandle};
use crate::recording::commands::Command;
use crate::recording::flags::{FlagRule, default_rules};
use crate::recording::live_flags::LiveFlags;
use crate::recording::{Recorder, RecordingError};
use crate::request::{CloseReason, Request, State};

/// How often the watchdog flushes the recording and checks the clock and the store.
const WATCHDOG_TICK: Duration = Duration::from_millis(500);

/// Records both directions of a live session; the first write failure ends the session.
#[derive(Clone)]
pub struct RecorderTap {
    pub(super) recorder: Arc<Mutex<Option<Recorder>>>,
    pub(super) failure: Arc<Mutex<Option<String>>>,
    pub(super) handle: SessionHandle,
}

impl RecorderTap {
    fn with<T>(&self, f: impl FnOnce(&mut Recorder) -> Result<T, RecordingError>) -> Option<T> {
        let outcome = match self.recorder.lock() {
            Ok(mut guard) => match guard.as_mut() {
                Some(rec) => f(rec).map_err(|e| e.to_string()),
                None => Err("the recording is already closed".to_string()),
            },
            Err(_) => Err("the recorder failed while writing (lock poisoned)".to_string()),
        };
        match outcome {
            Ok(v) => Some(v),
            Err(why) => {
                tracing::error!(error = %why, "recording failed; terminating the session");
                if let Ok(mut f) = self.failure.lock()
                    && f.is_none()
                {
                    *f = Some(why);
                }
                // Fail closed: no unrecorded keystroke may reach the instance.
                let _ = self.handle.terminate();
                None
            }
        }
    }

    /// Records remote output.
    pub fn output(&self, bytes: &[u8]) {
        self.with(|r| r.output(bytes));
    }

    /// Records keystrokes sent.
    pub fn input(&self, bytes: &[u8]) {
        self.with(|r| r.input(bytes));
    }

    /// Records a marker (lifecycle moment).
    pub fn marker(&self, label: &str) {
        self.with(|r| r.marker(label));
    }

    /// Records a resize and forwards it to the session.
    pub fn resize(&self, cols: u16, rows: u16) -> Result<(), client::ChannelError> {
        self.with(|r| r.resize(cols, rows));
        self.handle.resize(cols, rows)
    }

    /// Flushes what is buffered (at least once a second); returns the recording and its
    /// chain head when a checkpoint for the audit log is due.
    fn tick(&self) -> Option<(PathBuf, u64, String)> {
        self.with(|r| {
            r.tick()?;
            Ok(r.checkpoint_due()
                .map(|(lines, head)| (r.path().to_path_buf(), lines, head)))
        })
        .flatten()
    }

    /// The first recording failure, if any.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    pub(super) fn take(&self) -> Option<Recorder> {
        self.recorder.lock().ok().and_then(|mut g| g.take())
    }

    /// The commands submitted since the last call (see [`Recorder::take_commands`]).
    fn take_commands(&self) -> Vec<Command> {
        self.with(|r| Ok(r.take_commands())).unwrap_or_default()
    }
}

/// A session whose shell is live.
pub struct LiveSession {
    /// The request, Active.
    pub request: Request,
    /// The SSM session id.
    pub session_id: String,
    /// When the approved duration ends.
    pub ends_at: DateTime<Utc>,
    /// Sends input, resizes, terminates.
    pub handle: SessionHandle,
    /// Session events, for the bridge; taken once.
    pub events: Option<mpsc::Receiver<SessionEvent>>,
    /// Records both directions.
    pub tap: RecorderTap,
    /// The cast file.
    pub recording_path: PathBuf,
    pub(super) cause: Arc<Mutex<Option<CloseReason>>>,
    pub(super) flags: Arc<Mutex<LiveFlags>>,
    pub(super) watchdog: JoinHandle<()>,
}

/// Ends a live session at a person's request; the close is recorded as theirs.
#[derive(Clone)]
pub struct Terminator {
    cause: Arc<Mutex<Option<CloseReason>>>,
    handle: SessionHandle,
}

impl Terminator {
    /// Terminates the session, recording `by` as who ended it (first cause wins).
    pub fn terminate(&self, by: &str) {
        self.end(CloseReason::Terminated { by: by.to_string() });
    }

    /// Terminates the session because the person's connection is gone (a relayed client that
    /// vanished and did not come back).
    pub fn lost(&self) {
        self.end(CloseReason::ConnectionLost);
    }

    fn end(&self, reason: CloseReason) {
        set_cause(&self.cause, reason);
        let _ = self.handle.terminate();
    }
}

/// Records why the session ends unless a cause is already set (the first cause wins).
fn set_cause(cause: &Mutex<Option<CloseReason>>, reason: CloseReason) {
    if let Ok(mut c) = cause.lock()
        && c.is_none()
    {
        *c = Some(reason);
    }
}

impl LiveSession {
    /// A handle that ends this session on a person's request.
    pub fn terminator(&self) -> Terminator {
        Terminator {
            cause: self.cause.clone(),
            handle: self.handle.clone(),
        }
    }
}

/// Flushes the recording, warns before the end, and terminates at the end of the approved
/// duration or when the store says the request is no longer Active (killed or expired
/// elsewhere).
pub(super) async fn watchdog(
    broker: Arc<Broker>,
    request_id: String,
    ends_at: DateTime<Utc>,
    tap: RecorderTap,
    cause: Arc<Mutex<Option<CloseReason>>>,
    flags: Arc<Mutex<LiveFlags>>,
    mut step: impl FnMut(Step) + Send + 'static,
) {
    let mut warned = false;
    let mut interval = tokio::time::interval(WATCHDOG_TICK);
    loop {
        interval.tick().await;
        if let Some((path, lines, digest)) = tap.tick() {
            audit(
                &broker,
                EventKind::RecordingCheckpoint,
                Some(&request_id),
                json!({"path": path.display().to_string(), "lines": lines, "digest": digest}),
            )
            .await;
        }
        tell_flags(&broker, &request_id, &tap, &flags, &mut step).await;
        let left = (ends_at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        if !warned && left <= EXPIRY_WARNING {
            warned = true;
            tap.marker(&format!("warning: {}s left", left.as_secs()));
            step(Step::Warning { left });
        }
        let verdict = if left.is_zero() {
            Some(CloseReason::Expired)
        } else {
            let b = broker.clone();
            let id = request_id.clone();
            match blocking(move || b.get(&id)).await {
                // Closed elsewhere (an approver's kill): keep the reason the store recorded.
                Ok(r) if r.state != State::Active => {
                    Some(r.close_reason.unwrap_or_else(|| CloseReason::Terminated {
                        by: format!("the broker (request is now {})", r.state),
                    }))
                }
                _ => None,
            }
        };
        if let Some(reason) = verdict {
            set_cause(&cause, reason);
            let _ = tap.handle.terminate();
            return;
        }
    }
}

/// Audits and tells the commands flagged since the last call (the watchdog's tick, and once
/// more when the session ends, so the last commands typed are checked too).
pub(super) async fn tell_flags(
    broker: &Arc<Broker>,
    request_id: &str,
    tap: &RecorderTap,
    flags: &Mutex<LiveFlags>,
    step: &mut impl FnMut(Step),
) {
    let commands = tap.take_commands();
    if commands.is_empty() {
        return;
    }
    // Not held across an await: the watchdog may be aborted at one.
    let notices = match flags.lock() {
        Ok(mut f) => f.check(commands),
        Err(_) => return,
    };
    for notice in notices {
        audit(
            broker,
            EventKind::CommandFlagged,
            Some(request_id),
            notice.data,
        )
        .await;
        step(Step::Flagged {
            summary: notice.summary,
        });
    }
}

/// The risk rules a live session is checked with: the defaults plus the policy's
/// `[[review.flag]]` (the defaults alone, logged, when the policy cannot be read now).
pub(super) async fn flag_rules(broker: &Arc<Broker>) -> Vec<FlagRule> {
    let mut rules = default_rules();
    let b = broker.clone();
    match blocking(move || b.policy()).await {
        Ok(policy) => rules.extend(policy.review_flags),
        Err(e) => tracing::warn!(error = %e, "policy unreadable: live risk flags use the defaults"),
    }
    rules
}
