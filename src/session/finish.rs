//! The driver's second half: after the shell ends, the saga's close, seal and replace.

use futures_util::future::BoxFuture;
use serde_json::json;

use super::driver::{Perform, drive, sealed_fact};
use super::live::{LiveSession, tell_flags};
use super::replace::{ReplaceJob, replace_audited};
use super::saga::{Effect, Event, Fact, State, Told};
use super::{SessionDeps, Step, audit, blocking};
use crate::audit::EventKind;
use crate::channel::terminal::{BridgeError, SessionEnd};
use crate::fleet::{Fleet, ReplaceFailure, ReplaceOptions, ReplaceStrategy, ReplacementOutcome};
use crate::recording::SealInfo;
use crate::request::{CloseReason, Request};

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
    step: impl FnMut(Step) + Send,
) -> Finished {
    let exit_code = end.as_ref().ok().and_then(|e| e.exit_code);
    let mut finishing = Finishing {
        deps,
        request: live.request.clone(),
        live,
        end: end.ok(),
        step,
        reason: None,
        strategy: None,
        seal: Err("the recording was not sealed".to_string()),
        replacement: None,
    };
    drive(&mut finishing, State::Live, Event::ShellEnded).await;
    Finished {
        reason: finishing.reason.unwrap_or(CloseReason::ConnectionLost),
        request: finishing.request,
        exit_code,
        seal: finishing.seal.map(|info| info.digest),
        replacement: finishing
            .replacement
            .unwrap_or_else(|| ReplacementOutcome::Failed {
                why: ReplaceFailure::Api("the replacement never ran".into()),
            }),
    }
}

/// What finishing holds while the saga runs.
struct Finishing<'a, F, S> {
    deps: &'a SessionDeps<F>,
    live: LiveSession,
    end: Option<SessionEnd>,
    step: S,
    request: Request,
    reason: Option<CloseReason>,
    strategy: Option<ReplaceStrategy>,
    seal: Result<SealInfo, String>,
    replacement: Option<ReplacementOutcome>,
}

impl<F, S> Perform for Finishing<'_, F, S>
where
    F: Fleet + Send + Sync + 'static,
    S: FnMut(Step) + Send,
{
    fn perform(&mut self, effect: Effect) -> BoxFuture<'_, Option<Event>> {
        Box::pin(self.perform_now(effect))
    }
}

impl<F, S> Finishing<'_, F, S>
where
    F: Fleet + Send + Sync + 'static,
    S: FnMut(Step) + Send,
{
    async fn perform_now(&mut self, effect: Effect) -> Option<Event> {
        let deps = self.deps;
        let id = self.live.request.id.clone();
        let event = match effect {
            Effect::StopWatchdog => {
                self.live.watchdog.abort();
                return None;
            }
            Effect::TellFlags => {
                let live = &self.live;
                tell_flags(&deps.broker, &id, &live.tap, &live.flags, &mut self.step).await;
                return None;
            }
            Effect::ReadEnd => Event::Ended {
                cause: self.live.cause.lock().ok().and_then(|c| c.clone()),
                recording_failure: self.live.tap.failure(),
                end: self.end.clone(),
            },
            Effect::TerminateSession => {
                let sid = &self.live.session_id;
                if let Err(e) = deps.fleet.terminate_session(sid).await {
                    tracing::warn!(error = %e, session = %sid, "TerminateSession failed");
                }
                return None;
            }
            Effect::Close(reason) => {
                let broker = deps.broker.clone();
                match blocking(move || broker.close_session(&id, reason)).await {
                    Ok(r) => self.request = r,
                    Err(e) => tracing::error!(error = %e, "could not record the session's end"),
                }
                Event::Closed {
                    stored: self.request.close_reason.clone(),
                }
            }
            Effect::ReadPolicy => match deps.broker.policy() {
                Ok(p) => {
                    let strategy = ReplaceStrategy::from(&p.replacement);
                    let name = strategy.to_string();
                    self.strategy = Some(strategy);
                    Event::Policy(Ok(name))
                }
                Err(e) => Event::Policy(Err(e.to_string())),
            },
            Effect::Seal => match self.live.tap.take() {
                Some(rec) => match rec.seal() {
                    Ok(info) => {
                        self.seal = Ok(info);
                        Event::Ok
                    }
                    Err(e) => {
                        self.seal = Err(e.to_string());
                        Event::Failed(e.to_string())
                    }
                },
                None => {
                    let why = self.live.tap.failure();
                    self.seal =
                        Err(why.unwrap_or_else(|| "the recording was already closed".into()));
                    Event::Skipped
                }
            },
            Effect::Replace => {
                self.replace().await;
                Event::Ok
            }
            effect => {
                self.fire(effect).await;
                return None;
            }
        };
        Some(event)
    }

    /// Effects nobody waits on.
    async fn fire(&mut self, effect: Effect) {
        let id = self.live.request.id.clone();
        match effect {
            Effect::Tell(told) => {
                if let Some(step) = self.step_for(told) {
                    (self.step)(step);
                }
            }
            Effect::Audit(fact) => {
                if let Some((kind, data)) = self.fact(fact) {
                    audit(&self.deps.broker, kind, Some(&id), data).await;
                }
            }
            Effect::Mark(text) => self.live.tap.marker(&text),
            other => tracing::error!(effect = ?other, "not an effect of finishing a session"),
        }
    }

    fn step_for(&mut self, told: Told) -> Option<Step> {
        Some(match told {
            Told::Closed(reason) => {
                self.reason = Some(reason.clone());
                Step::Closed { reason }
            }
            Told::Sealed => {
                let info = self.seal.as_ref().ok()?;
                Step::Sealed {
                    digest: info.digest.clone(),
                    path: info.path.clone(),
                }
            }
            Told::Replaced => Step::Replaced {
                outcome: self.replacement.clone()?,
            },
            other => {
                tracing::error!(?other, "not a step of finishing a session");
                return None;
            }
        })
    }

    fn fact(&mut self, fact: Fact) -> Option<(EventKind, serde_json::Value)> {
        Some(match fact {
            Fact::RecordingFailed(error) => (EventKind::RecordingFailed, json!({"error": error})),
            Fact::RecordingSealed => sealed_fact(self.seal.as_ref().ok()?),
            Fact::ReplacementImpossible(e) => {
                let target = &self.request.target;
                let why = ReplaceFailure::Api(format!(
                    "the policy cannot be read ({e}); {target} stays tainted for `sombrero reap`"
                ));
                let data = json!({"target": target, "why": why.to_string()});
                self.replacement = Some(ReplacementOutcome::Failed { why });
                (EventKind::ReplacementFailed, data)
            }
            other => {
                tracing::error!(?other, "not an audit event of finishing a session");
                return None;
            }
        })
    }

    /// Runs the policy's replacement for the request's target, telling its progress.
    async fn replace(&mut self) {
        let Some(strategy) = self.strategy.clone() else {
            return;
        };
        let job = ReplaceJob {
            broker: &self.deps.broker,
            fleet: &self.deps.fleet,
            request_id: Some(&self.live.request.id),
            target: &self.request.target,
            strategy: &strategy,
            opts: ReplaceOptions {
                timeout: self.deps.replace_timeout,
                ..ReplaceOptions::default()
            },
            via: "session",
        };
        let step = &mut self.step;
        let outcome = replace_audited(job, |note| step(Step::Replacing { note })).await;
        self.replacement = Some(outcome);
    }
}
