//! One break-glass session, end to end.
//!
//! The lifecycle rules live in `request`; this module performs their side effects in the one
//! safe order: claim the request, create the recording, taint the target, start the SSM
//! session, connect the data channel; then close, seal, and replace. Every failure before the
//! shell is reached fails closed: the claimed request is closed as `OpenFailed` and no data
//! channel is ever connected.

pub mod saga;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::audit::EventKind;
use crate::broker::{Broker, BrokerError};
use crate::channel::client::{self, ClientOptions, SessionEvent, SessionHandle, SessionTarget};
use crate::channel::payload::SizeData;
use crate::channel::terminal::{BridgeError, EndReason, SessionEnd};
use crate::fleet::{
    Fleet, FleetError, ReplaceOptions, ReplaceProgress, ReplaceStrategy, ReplacementOutcome,
    SessionReason, Taint,
};
use crate::recording::commands::Command;
use crate::recording::flags::{FlagRule, default_rules};
use crate::recording::live_flags::LiveFlags;
use crate::recording::{Recorder, RecorderKey, RecordingError, RecordingMeta, SealInfo};
use crate::request::{CloseReason, Request, State};

/// How long to watch a replacement before reporting it unfinished (ASGs take minutes).
pub const REPLACE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How long before the end of the approved duration the person is warned.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(60);
/// How often the watchdog flushes the recording and checks the clock and the store.
const WATCHDOG_TICK: Duration = Duration::from_millis(500);
/// Actor name for actions the session itself takes.
const SESSION_ACTOR: &str = "sombrero";

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

/// Records both directions of a live session; the first write failure ends the session.
#[derive(Clone)]
pub struct RecorderTap {
    recorder: Arc<Mutex<Option<Recorder>>>,
    failure: Arc<Mutex<Option<String>>>,
    handle: SessionHandle,
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

    fn take(&self) -> Option<Recorder> {
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
    cause: Arc<Mutex<Option<CloseReason>>>,
    flags: Arc<Mutex<LiveFlags>>,
    watchdog: JoinHandle<()>,
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

/// Claims (checking `by`'s TOTP `code` first, as the policy asks), records, taints, starts
/// and connects. On any failure after the claim the request is closed as `OpenFailed`, the
/// failure is audited, and no shell is reachable.
pub async fn open<F: Fleet + Send + Sync + 'static>(
    deps: &SessionDeps<F>,
    request_id: &str,
    by: &str,
    code: Option<&str>,
    size: SizeData,
    step: impl FnMut(Step) + Send + 'static,
) -> Result<LiveSession, SessionError> {
    open_for(deps, request_id, by, code, size, None, step).await
}

/// The command line a session may run: `argv` (`open REQ -- CMD ARGS`) checked against the
/// request's own command. A request made for a command opens nothing else, shell included.
async fn allowed_command(
    broker: &Arc<Broker>,
    request_id: &str,
    argv: Option<&[String]>,
) -> Result<Option<String>, SessionError> {
    let b = broker.clone();
    let id = request_id.to_string();
    let request = blocking(move || b.get(&id)).await?;
    let refuse = |why: String| Err(SessionError::CommandRefused(why));
    match (request.command.as_deref(), argv) {
        (None, None) => Ok(None),
        (Some(approved), None) => refuse(format!(
            "{request_id} was approved for one command only; run: sombrero open {request_id} -- {approved}"
        )),
        (approved, Some(argv)) => {
            let line = crate::command_line::join(argv);
            if let Err(e) = crate::command_line::check(&line) {
                return refuse(e.to_string());
            }
            match approved {
                Some(a) if crate::command_line::split(a).as_deref() != Some(argv) => refuse(
                    format!("{request_id} was approved for `{a}` only, not `{line}`"),
                ),
                _ => Ok(Some(line)),
            }
        }
    }
}

/// [`open`] for a shell (`command` `None`) or one command (`open REQ -- CMD ARGS`), which runs
/// through the `PinkSombrero-Command` document with its stdout, stderr and exit status apart.
pub async fn open_for<F: Fleet + Send + Sync + 'static>(
    deps: &SessionDeps<F>,
    request_id: &str,
    by: &str,
    code: Option<&str>,
    size: SizeData,
    command: Option<&[String]>,
    mut step: impl FnMut(Step) + Send + 'static,
) -> Result<LiveSession, SessionError> {
    // Checked before the claim: a refused command leaves the request Approved and untouched.
    let command = allowed_command(&deps.broker, request_id, command).await?;
    let broker = deps.broker.clone();
    let (id, user) = (request_id.to_string(), by.to_string());
    let code = code.map(str::to_string);
    let grant = blocking(move || broker.begin_open(&id, &user, code.as_deref())).await?;
    let request = grant.request;
    let ends_at = grant.session_ends_at;
    step(Step::Claimed { ends_at });

    let fail = |why: String| {
        let broker = deps.broker.clone();
        let id = request.id.clone();
        async move {
            let _ =
                blocking(move || broker.close_session(&id, CloseReason::OpenFailed { why })).await;
        }
    };

    let recording_failed = |e: RecordingError| async {
        audit(
            &deps.broker,
            EventKind::RecordingFailed,
            Some(&request.id),
            json!({"error": e.to_string()}),
        )
        .await;
        fail(format!("no recording: {e}")).await;
        SessionError::Recording(e)
    };

    // 1. The recording must be possible before anything touches the instance.
    if let Err(e) = preflight(&deps.recordings_dir) {
        return Err(recording_failed(e).await);
    }

    // 2. Taint before any session: the instance is contaminated from here on.
    let taint = Taint {
        request: request.id.clone(),
        by: request.requester.clone(),
        at: Utc::now(),
    };
    let tainted = match deps.fleet.taint(&request.target, &taint).await {
        // Through the emergency door: the instance says so too, or no session opens.
        Ok(()) if request.emergency.is_some() => deps.fleet.mark_emergency(&request.target).await,
        other => other,
    };
    if let Err(e) = tainted {
        audit(
            &deps.broker,
            EventKind::TaintFailed,
            Some(&request.id),
            json!({"target": request.target, "error": e.to_string()}),
        )
        .await;
        fail(format!("taint failed: {e}")).await;
        return Err(SessionError::Taint {
            target: request.target.clone(),
            source: e,
        });
    }
    audit(
        &deps.broker,
        EventKind::Tainted,
        Some(&request.id),
        json!({"target": request.target, "by": taint.by, "at": taint.at,
               "emergency": request.emergency.is_some()}),
    )
    .await;
    step(Step::Tainted {
        target: request.target.clone(),
    });

    // 3. StartSession with the pink-sombrero reason.
    let started = match (SessionReason::for_request(&request.id), &command) {
        (Ok(reason), None) => deps.fleet.start_session(&request.target, &reason).await,
        (Ok(reason), Some(line)) => {
            deps.fleet
                .start_command_session(&request.target, &reason, line)
                .await
        }
        (Err(e), _) => Err(e),
    };
    let started = match started {
        Ok(s) => s,
        Err(e) => {
            fail(format!("StartSession failed: {e}")).await;
            return Err(SessionError::Start {
                target: request.target.clone(),
                source: e,
            });
        }
    };
    let session_id = started.session_id.clone();
    {
        let broker = deps.broker.clone();
        let (id, sid) = (request.id.clone(), session_id.clone());
        if let Err(e) = blocking(move || broker.session_started(&id, &sid)).await {
            let _ = deps.fleet.terminate_session(&session_id).await;
            fail(format!(
                "the session could not be recorded in the store: {e}"
            ))
            .await;
            return Err(e.into());
        }
    }
    step(Step::Started {
        session_id: session_id.clone(),
    });

    // The recording, named for the session, exists before the data channel is connected: no
    // byte can reach the shell unrecorded. If it cannot be created the session is terminated.
    let meta = RecordingMeta {
        request_id: request.id.clone(),
        requester: request.requester.clone(),
        approvers: request.approvals.iter().map(|a| a.by.clone()).collect(),
        target: request.target.clone(),
        reason: request.reason.clone(),
        session_id: session_id.clone(),
        width: u16::try_from(size.cols).unwrap_or(u16::MAX),
        height: u16::try_from(size.rows).unwrap_or(u16::MAX),
        term: std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into()),
        shell: "/bin/sh".into(),
        // The header (line 1, under the chain) says when the session came through the
        // emergency door.
        title: format!(
            "{}pink sombrero {} on {}",
            if request.emergency.is_some() {
                "EMERGENCY "
            } else {
                ""
            },
            request.id,
            request.target
        ),
    };
    let approvers: Vec<&str> = request.approvals.iter().map(|a| a.by.as_str()).collect();
    let created = Recorder::create(&deps.recordings_dir, meta, &deps.key).and_then(|mut r| {
        r.marker(&format!("approved by {}", approvers.join(", ")))?;
        r.marker(&format!(
            "tainted {} at {}",
            request.target,
            taint.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))?;
        r.marker(&format!("opened session {session_id}"))?;
        if let Some(line) = &command {
            r.marker(&format!("command: {line}"))?;
        }
        // Typed commands are checked against the risk rules as they are recorded.
        r.index_commands();
        Ok(r)
    });
    let recorder = match created {
        Ok(r) => r,
        Err(e) => {
            let _ = deps.fleet.terminate_session(&session_id).await;
            return Err(recording_failed(e).await);
        }
    };
    let recording_path = recorder.path().to_path_buf();
    audit(
        &deps.broker,
        EventKind::RecordingStarted,
        Some(&request.id),
        json!({"path": recording_path.display().to_string(), "session_id": session_id}),
    )
    .await;
    step(Step::Recording {
        path: recording_path.clone(),
    });
    let recorder = Arc::new(Mutex::new(Some(recorder)));

    // 4. The data channel.
    let mut options = deps.channel.clone();
    options.initial_size = size;
    let target = SessionTarget {
        stream_url: started.stream_url.clone(),
        token: started.token.clone(),
        session_id: session_id.clone(),
    };
    let (handle, events) = match client::connect(target, options).await {
        Ok(c) => c,
        Err(e) => {
            let _ = deps.fleet.terminate_session(&session_id).await;
            if let Ok(mut g) = recorder.lock()
                && let Some(r) = g.as_mut()
            {
                let _ = r.marker(&format!("data channel failed: {e}"));
            }
            seal_quietly(&deps.broker, &recorder, &request.id).await;
            fail(format!("data channel failed: {e}")).await;
            return Err(e.into());
        }
    };
    step(Step::Connected);

    let tap = RecorderTap {
        recorder,
        failure: Arc::new(Mutex::new(None)),
        handle: handle.clone(),
    };
    let cause = Arc::new(Mutex::new(None));
    let flags = Arc::new(Mutex::new(LiveFlags::new(flag_rules(&deps.broker).await)));
    let watchdog = tokio::spawn(watchdog(
        deps.broker.clone(),
        request.id.clone(),
        ends_at,
        tap.clone(),
        cause.clone(),
        flags.clone(),
        step,
    ));
    Ok(LiveSession {
        request,
        session_id,
        ends_at,
        handle,
        events: Some(events),
        tap,
        recording_path,
        cause,
        flags,
        watchdog,
    })
}

/// What happened after the shell ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// The request, Closed.
    pub request: Request,
    /// Why the session ended.
    pub reason: CloseReason,
    /// The remote exit status, when known.
    pub exit_code: Option<i32>,
    /// The sealed recording digest, or why sealing failed.
    pub seal: Result<String, String>,
    /// The replacement outcome.
    pub replacement: ReplacementOutcome,
}

/// Closes the request, seals the recording, and replaces the instance per the policy.
pub async fn finish<F: Fleet + Send + Sync + 'static>(
    deps: &SessionDeps<F>,
    live: LiveSession,
    end: Result<SessionEnd, BridgeError>,
    mut step: impl FnMut(Step),
) -> Finished {
    live.watchdog.abort();
    let id = live.request.id.clone();
    tell_flags(&deps.broker, &id, &live.tap, &live.flags, &mut step).await;
    let exit_code = end.as_ref().ok().and_then(|e| e.exit_code);
    let decided = live.cause.lock().ok().and_then(|c| c.clone());
    let recording_failure = live.tap.failure();
    let reason = match (decided, &recording_failure, &end) {
        (Some(r), _, _) => r,
        (None, Some(why), _) => CloseReason::Terminated {
            by: format!("{SESSION_ACTOR} (recording failed: {why})"),
        },
        (None, None, Ok(e)) => match &e.reason {
            EndReason::Failed(_) if e.exit_code.is_none() => CloseReason::ConnectionLost,
            _ => CloseReason::Exited { code: e.exit_code },
        },
        (None, None, Err(_)) => CloseReason::ConnectionLost,
    };
    if let Some(why) = &recording_failure {
        audit(
            &deps.broker,
            EventKind::RecordingFailed,
            Some(&id),
            json!({"error": why}),
        )
        .await;
    }
    // Make sure the service side is gone too (a no-op when the shell exited by itself).
    if !matches!(reason, CloseReason::Exited { .. })
        && let Err(e) = deps.fleet.terminate_session(&live.session_id).await
    {
        tracing::warn!(error = %e, session = %live.session_id, "TerminateSession failed");
    }

    let request = {
        let broker = deps.broker.clone();
        let (rid, r) = (id.clone(), reason.clone());
        match blocking(move || broker.close_session(&rid, r)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "could not record the session's end");
                live.request.clone()
            }
        }
    };
    // Closed elsewhere first (an approver's kill): the stored reason is the true one.
    let reason = request.close_reason.clone().unwrap_or(reason);
    step(Step::Closed {
        reason: reason.clone(),
    });

    // Without a readable policy nothing can say how to replace: record a failed replacement
    // (the node stays tainted, so the reaper retries) rather than quietly tagging only.
    let strategy = deps
        .broker
        .policy()
        .map(|p| ReplaceStrategy::from(&p.replacement));
    live.tap.marker(&format!("closed: {reason}"));
    match &strategy {
        Ok(s) => live.tap.marker(&format!("replacement requested: {s}")),
        Err(e) => live.tap.marker(&format!("replacement impossible: {e}")),
    }
    let seal = match live.tap.take() {
        Some(rec) => seal_audited(&deps.broker, rec, &id).await.map(|info| {
            step(Step::Sealed {
                digest: info.digest.clone(),
                path: info.path.clone(),
            });
            info.digest
        }),
        None => Err(live
            .tap
            .failure()
            .unwrap_or_else(|| "the recording was already closed".to_string())),
    };

    let replacement = match strategy {
        Ok(strategy) => replace(deps, &id, &request.target, &strategy, &mut step).await,
        Err(e) => {
            let why = crate::fleet::ReplaceFailure::Api(format!(
                "the policy cannot be read ({e}); {} stays tainted for `sombrero reap`",
                request.target
            ));
            audit(
                &deps.broker,
                EventKind::ReplacementFailed,
                Some(&id),
                json!({"target": request.target, "why": why.to_string()}),
            )
            .await;
            let outcome = ReplacementOutcome::Failed { why };
            step(Step::Replaced {
                outcome: outcome.clone(),
            });
            outcome
        }
    };
    Finished {
        request,
        reason,
        exit_code,
        seal,
        replacement,
    }
}

/// Runs the policy's replacement for `target` and audits request and outcome.
pub async fn replace<F: Fleet + Send + Sync + 'static>(
    deps: &SessionDeps<F>,
    request_id: &str,
    target: &str,
    strategy: &ReplaceStrategy,
    step: &mut impl FnMut(Step),
) -> ReplacementOutcome {
    let opts = ReplaceOptions {
        timeout: deps.replace_timeout,
        ..ReplaceOptions::default()
    };
    let outcome = replace_audited(
        &deps.broker,
        &deps.fleet,
        Some(request_id),
        target,
        strategy,
        opts,
        "session",
        |note| step(Step::Replacing { note }),
    )
    .await;
    step(Step::Replaced {
        outcome: outcome.clone(),
    });
    outcome
}

/// Replaces `target` with `strategy`, reporting progress, and audits the request and the
/// outcome (`via` says who asked: the session's end or the reaper).
#[allow(clippy::too_many_arguments)]
pub async fn replace_audited<F: Fleet + Send + Sync + 'static>(
    broker: &Arc<Broker>,
    fleet: &Arc<F>,
    request_id: Option<&str>,
    target: &str,
    strategy: &ReplaceStrategy,
    opts: ReplaceOptions,
    via: &str,
    mut progress: impl FnMut(String),
) -> ReplacementOutcome {
    audit(
        broker,
        EventKind::ReplacementRequested,
        request_id,
        json!({"target": target, "strategy": strategy.to_string(), "via": via}),
    )
    .await;
    progress(format!("replacing {target} ({strategy})"));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let fleet = fleet.clone();
    let (t, s) = (target.to_string(), strategy.clone());
    let work = tokio::spawn(async move {
        fleet
            .replace(&t, &s, &opts, move |p: ReplaceProgress| {
                let _ = tx.send(p.to_string());
            })
            .await
    });
    while let Some(note) = rx.recv().await {
        progress(note);
    }
    let outcome = match work.await {
        Ok(o) => o,
        Err(e) => ReplacementOutcome::Failed {
            why: crate::fleet::ReplaceFailure::Api(format!("replacement task failed: {e}")),
        },
    };
    let (kind, data) = match &outcome {
        ReplacementOutcome::Completed { old, new } => (
            EventKind::ReplacementCompleted,
            json!({"old": old, "new": new}),
        ),
        ReplacementOutcome::Failed { why } => (
            EventKind::ReplacementFailed,
            json!({"target": target, "why": why.to_string()}),
        ),
        ReplacementOutcome::Requested { note } => (
            EventKind::ReplacementRequested,
            json!({"target": target, "note": note, "outcome": "requested"}),
        ),
    };
    audit(broker, kind, request_id, data).await;
    outcome
}

/// Flushes the recording, warns before the end, and terminates at the end of the approved
/// duration or when the store says the request is no longer Active (killed or expired
/// elsewhere).
async fn watchdog(
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
async fn tell_flags(
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
async fn flag_rules(broker: &Arc<Broker>) -> Vec<FlagRule> {
    let mut rules = default_rules();
    let b = broker.clone();
    match blocking(move || b.policy()).await {
        Ok(policy) => rules.extend(policy.review_flags),
        Err(e) => tracing::warn!(error = %e, "policy unreadable: live risk flags use the defaults"),
    }
    rules
}

/// Seals a recording and audits the digest, or the failure.
async fn seal_audited(broker: &Arc<Broker>, rec: Recorder, id: &str) -> Result<SealInfo, String> {
    match rec.seal() {
        Ok(info) => {
            audit(
                broker,
                EventKind::RecordingSealed,
                Some(id),
                json!({"digest": info.digest, "lines": info.lines, "path": info.path.display().to_string()}),
            )
            .await;
            Ok(info)
        }
        Err(e) => {
            audit(
                broker,
                EventKind::RecordingFailed,
                Some(id),
                json!({"error": e.to_string()}),
            )
            .await;
            Err(e.to_string())
        }
    }
}

/// Seals a recording that ends before the shell was reached.
async fn seal_quietly(broker: &Arc<Broker>, recorder: &Arc<Mutex<Option<Recorder>>>, id: &str) {
    let rec = recorder.lock().ok().and_then(|mut g| g.take());
    if let Some(rec) = rec {
        let _ = seal_audited(broker, rec, id).await;
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
