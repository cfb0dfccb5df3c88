//! Performs the saga's effects against the real broker, fleet, recorder and data channel:
//! `saga::next` decides, this file does, and feeds back what happened.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde_json::json;
use tokio::sync::mpsc;

use super::live::{LiveSession, RecorderTap, flag_rules, watchdog};
use super::saga::{self, Effect, Event, Fact, State, Told};
use super::{SessionDeps, SessionError, Step, audit, blocking, preflight};
use crate::audit::EventKind;
use crate::broker::{Broker, BrokerError, OpenGrant};
use crate::channel::client::{self, SessionEvent, SessionHandle, SessionTarget};
use crate::channel::payload::SizeData;
use crate::fleet::{Fleet, SessionReason, StartedSession, Taint};
use crate::recording::live_flags::LiveFlags;
use crate::recording::{Recorder, RecordingMeta, SealInfo};
use crate::request::CloseReason;

/// Performs one effect; returns the event the saga waits on, when it waits on this one.
/// (Boxed: a session's few dozen effects cost nothing, and the future stays `Send` for the
/// daemon without naming lifetimes.)
pub(super) trait Perform {
    fn perform(&mut self, effect: Effect) -> BoxFuture<'_, Option<Event>>;
}

/// Runs the saga from `state` on `event` until it waits on nothing more.
pub(super) async fn drive(
    ctx: &mut (impl Perform + Send),
    mut state: State,
    event: Event,
) -> State {
    let mut event = Some(event);
    while let Some(e) = event.take() {
        let (next, effects) = saga::next(state, e);
        state = next;
        for effect in effects {
            if let Some(e) = ctx.perform(effect).await {
                event = Some(e);
            }
        }
    }
    state
}

/// An effect's context was not there: the saga and the driver disagree (fails closed).
fn out_of_order() -> SessionError {
    SessionError::Broker(BrokerError::Internal(
        "the session's steps ran out of order".into(),
    ))
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

/// [`open`] for a shell (`command` `None`) or one command (`open REQ -- CMD ARGS`), which runs
/// through the `PinkSombrero-Command` document with its stdout, stderr and exit status apart.
pub async fn open_for<F: Fleet + Send + Sync + 'static>(
    deps: &SessionDeps<F>,
    request_id: &str,
    by: &str,
    code: Option<&str>,
    size: SizeData,
    command: Option<&[String]>,
    step: impl FnMut(Step) + Send + 'static,
) -> Result<LiveSession, SessionError> {
    let mut opening = Opening {
        deps,
        asked: Asked {
            request_id,
            by,
            code,
            size,
            argv: command,
        },
        step: Some(step),
        command: None,
        grant: None,
        taint: None,
        started: None,
        recorder: None,
        recording_path: None,
        channel: None,
        sealed: None,
        error: None,
        live: None,
    };
    let state = drive(&mut opening, State::Idle, Event::Begin).await;
    match (state, opening.live) {
        (State::Live, Some(live)) => Ok(live),
        _ => Err(opening.error.unwrap_or_else(out_of_order)),
    }
}

/// What the caller asked to open.
struct Asked<'a> {
    request_id: &'a str,
    by: &'a str,
    code: Option<&'a str>,
    size: SizeData,
    argv: Option<&'a [String]>,
}

/// What opening holds while the saga runs: each effect's result, for the ones after it.
struct Opening<'a, F, S> {
    deps: &'a SessionDeps<F>,
    asked: Asked<'a>,
    step: Option<S>,
    command: Option<String>,
    grant: Option<OpenGrant>,
    taint: Option<Taint>,
    started: Option<StartedSession>,
    recorder: Option<Recorder>,
    recording_path: Option<PathBuf>,
    channel: Option<(SessionHandle, mpsc::Receiver<SessionEvent>)>,
    sealed: Option<SealInfo>,
    error: Option<SessionError>,
    live: Option<LiveSession>,
}

impl<F, S> Perform for Opening<'_, F, S>
where
    F: Fleet + Send + Sync + 'static,
    S: FnMut(Step) + Send + 'static,
{
    fn perform(&mut self, effect: Effect) -> BoxFuture<'_, Option<Event>> {
        Box::pin(async move {
            match self.try_perform(effect).await {
                Ok(event) => event,
                Err(e) => Some(self.failed(e.to_string(), e)),
            }
        })
    }
}

impl<F, S> Opening<'_, F, S>
where
    F: Fleet + Send + Sync + 'static,
    S: FnMut(Step) + Send + 'static,
{
    /// Keeps `error` for the caller; the saga gets `why`.
    fn failed(&mut self, why: String, error: SessionError) -> Event {
        self.error = Some(error);
        Event::Failed(why)
    }

    fn tell(&mut self, s: Step) {
        if let Some(step) = self.step.as_mut() {
            step(s);
        }
    }

    fn grant(&self) -> Result<&OpenGrant, SessionError> {
        self.grant.as_ref().ok_or_else(out_of_order)
    }

    fn session_id(&self) -> Result<String, SessionError> {
        self.started
            .as_ref()
            .map(|s| s.session_id.clone())
            .ok_or_else(out_of_order)
    }

    async fn try_perform(&mut self, effect: Effect) -> Result<Option<Event>, SessionError> {
        let deps = self.deps;
        let event = match effect {
            Effect::CheckCommand => {
                match allowed_command(&deps.broker, self.asked.request_id, self.asked.argv).await {
                    Ok(line) => {
                        self.command = line;
                        Event::Ok
                    }
                    Err(e) => self.failed(e.to_string(), e),
                }
            }
            Effect::Claim => {
                let broker = deps.broker.clone();
                let (id, user) = (self.asked.request_id.to_string(), self.asked.by.to_string());
                let code = self.asked.code.map(str::to_string);
                match blocking(move || broker.begin_open(&id, &user, code.as_deref())).await {
                    Ok(grant) => {
                        self.grant = Some(grant);
                        Event::Ok
                    }
                    Err(e) => self.failed(e.to_string(), e.into()),
                }
            }
            Effect::Preflight => match preflight(&deps.recordings_dir) {
                Ok(()) => Event::Ok,
                Err(e) => self.failed(e.to_string(), e.into()),
            },
            Effect::Taint => return self.taint().await.map(Some),
            Effect::StartSession => {
                let request = &self.grant()?.request;
                let started = match (SessionReason::for_request(&request.id), &self.command) {
                    (Ok(reason), None) => deps.fleet.start_session(&request.target, &reason).await,
                    (Ok(reason), Some(line)) => {
                        deps.fleet
                            .start_command_session(&request.target, &reason, line)
                            .await
                    }
                    (Err(e), _) => Err(e),
                };
                match started {
                    Ok(s) => {
                        self.started = Some(s);
                        Event::Ok
                    }
                    Err(e) => {
                        let target = request.target.clone();
                        self.failed(e.to_string(), SessionError::Start { target, source: e })
                    }
                }
            }
            Effect::Register => {
                let broker = deps.broker.clone();
                let (id, sid) = (self.grant()?.request.id.clone(), self.session_id()?);
                match blocking(move || broker.session_started(&id, &sid)).await {
                    Ok(_) => Event::Ok,
                    Err(e) => self.failed(e.to_string(), e.into()),
                }
            }
            Effect::CreateRecording => match self.create_recording() {
                Ok(recorder) => {
                    self.recording_path = Some(recorder.path().to_path_buf());
                    self.recorder = Some(recorder);
                    Event::Ok
                }
                Err(e) => self.failed(e.to_string(), e),
            },
            Effect::Connect => {
                let started = self.started.as_ref().ok_or_else(out_of_order)?;
                let mut options = deps.channel.clone();
                options.initial_size = self.asked.size;
                let target = SessionTarget {
                    stream_url: started.stream_url.clone(),
                    token: started.token.clone(),
                    session_id: started.session_id.clone(),
                };
                match client::connect(target, options).await {
                    Ok(c) => {
                        self.channel = Some(c);
                        Event::Ok
                    }
                    Err(e) => self.failed(e.to_string(), e.into()),
                }
            }
            Effect::Watch => {
                self.watch().await?;
                return Ok(None);
            }
            Effect::Seal => match self.recorder.take().map(Recorder::seal) {
                Some(Ok(info)) => {
                    self.sealed = Some(info);
                    Event::Ok
                }
                Some(Err(e)) => Event::Failed(e.to_string()),
                None => Event::Skipped,
            },
            effect => {
                self.fire(effect).await?;
                return Ok(None);
            }
        };
        Ok(Some(event))
    }

    /// Effects nobody waits on.
    async fn fire(&mut self, effect: Effect) -> Result<(), SessionError> {
        match effect {
            Effect::Tell(told) => {
                let step = self.step_for(told)?;
                self.tell(step);
            }
            Effect::Audit(fact) => {
                let (kind, data) = self.fact(fact)?;
                let id = self.grant()?.request.id.clone();
                audit(&self.deps.broker, kind, Some(&id), data).await;
            }
            Effect::Mark(text) => {
                if let Some(r) = self.recorder.as_mut() {
                    let _ = r.marker(&text);
                }
            }
            Effect::TerminateSession => {
                let _ = self.deps.fleet.terminate_session(&self.session_id()?).await;
            }
            Effect::CloseOpenFailed(why) => {
                let broker = self.deps.broker.clone();
                let id = self.grant()?.request.id.clone();
                let closed = CloseReason::OpenFailed { why };
                let _ = blocking(move || broker.close_session(&id, closed)).await;
            }
            other => tracing::error!(effect = ?other, "not an effect of opening a session"),
        }
        Ok(())
    }

    fn step_for(&self, told: Told) -> Result<Step, SessionError> {
        let grant = self.grant()?;
        Ok(match told {
            Told::Claimed => Step::Claimed {
                ends_at: grant.session_ends_at,
            },
            Told::Tainted => Step::Tainted {
                target: grant.request.target.clone(),
            },
            Told::Started => Step::Started {
                session_id: self.session_id()?,
            },
            Told::Recording => Step::Recording {
                path: self.recording_path.clone().ok_or_else(out_of_order)?,
            },
            Told::Connected => Step::Connected,
            other => {
                tracing::error!(?other, "not a step of opening a session");
                return Err(out_of_order());
            }
        })
    }

    fn fact(&self, fact: Fact) -> Result<(EventKind, serde_json::Value), SessionError> {
        let request = &self.grant()?.request;
        Ok(match fact {
            Fact::Tainted => {
                let taint = self.taint.as_ref().ok_or_else(out_of_order)?;
                (
                    EventKind::Tainted,
                    json!({"target": request.target, "by": taint.by, "at": taint.at,
                           "emergency": request.emergency.is_some()}),
                )
            }
            Fact::TaintFailed(error) => (
                EventKind::TaintFailed,
                json!({"target": request.target, "error": error}),
            ),
            Fact::RecordingStarted => {
                let path = self.recording_path.as_ref().ok_or_else(out_of_order)?;
                (
                    EventKind::RecordingStarted,
                    json!({"path": path.display().to_string(), "session_id": self.session_id()?}),
                )
            }
            Fact::RecordingFailed(error) => (EventKind::RecordingFailed, json!({"error": error})),
            Fact::RecordingSealed => {
                let info = self.sealed.as_ref().ok_or_else(out_of_order)?;
                sealed_fact(info)
            }
            Fact::ReplacementImpossible(_) => return Err(out_of_order()),
        })
    }

    /// Tags the target (and, through the emergency door, marks it so) before any session.
    async fn taint(&mut self) -> Result<Event, SessionError> {
        let request = &self.grant()?.request;
        let taint = Taint {
            request: request.id.clone(),
            by: request.requester.clone(),
            at: Utc::now(),
        };
        let fleet = &self.deps.fleet;
        let tainted = match fleet.taint(&request.target, &taint).await {
            // Through the emergency door: the instance says so too, or no session opens.
            Ok(()) if request.emergency.is_some() => fleet.mark_emergency(&request.target).await,
            other => other,
        };
        let target = request.target.clone();
        self.taint = Some(taint);
        Ok(match tainted {
            Ok(()) => Event::Ok,
            Err(e) => self.failed(e.to_string(), SessionError::Taint { target, source: e }),
        })
    }

    /// The recording, named for the session, with its opening markers; typed commands are
    /// checked against the risk rules as they are recorded.
    fn create_recording(&self) -> Result<Recorder, SessionError> {
        let request = &self.grant()?.request;
        let taint = self.taint.as_ref().ok_or_else(out_of_order)?;
        let session_id = self.session_id()?;
        let size = self.asked.size;
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
        let mut r = Recorder::create(&self.deps.recordings_dir, meta, &self.deps.key)?;
        r.marker(&format!("approved by {}", approvers.join(", ")))?;
        r.marker(&format!(
            "tainted {} at {}",
            request.target,
            taint.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))?;
        r.marker(&format!("opened session {session_id}"))?;
        if let Some(line) = &self.command {
            r.marker(&format!("command: {line}"))?;
        }
        r.index_commands();
        Ok(r)
    }

    /// The shell is live: the tap records both directions, the watchdog watches the clock.
    async fn watch(&mut self) -> Result<(), SessionError> {
        let (handle, events) = self.channel.take().ok_or_else(out_of_order)?;
        let recorder = self.recorder.take().ok_or_else(out_of_order)?;
        let step = self.step.take().ok_or_else(out_of_order)?;
        let grant = self.grant.take().ok_or_else(out_of_order)?;
        let session_id = self.session_id()?;
        let recording_path = self.recording_path.take().ok_or_else(out_of_order)?;
        let broker = &self.deps.broker;
        let tap = RecorderTap {
            recorder: Arc::new(Mutex::new(Some(recorder))),
            failure: Arc::new(Mutex::new(None)),
            handle: handle.clone(),
        };
        let cause = Arc::new(Mutex::new(None));
        let flags = Arc::new(Mutex::new(LiveFlags::new(flag_rules(broker).await)));
        let ends_at: DateTime<Utc> = grant.session_ends_at;
        let watchdog = tokio::spawn(watchdog(
            broker.clone(),
            grant.request.id.clone(),
            ends_at,
            tap.clone(),
            cause.clone(),
            flags.clone(),
            step,
        ));
        self.live = Some(LiveSession {
            request: grant.request,
            session_id,
            ends_at,
            handle,
            events: Some(events),
            tap,
            recording_path,
            cause,
            flags,
            watchdog,
        });
        Ok(())
    }
}

/// The `recording_sealed` event of a sealed recording.
pub(super) fn sealed_fact(info: &SealInfo) -> (EventKind, serde_json::Value) {
    (
        EventKind::RecordingSealed,
        json!({"digest": info.digest, "lines": info.lines, "path": info.path.display().to_string()}),
    )
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
