//! The session saga: one break-glass session's side effects, in their one safe order, as a
//! pure state machine. `next(state, event)` says what to do next; the driver
//! (`session::driver`) does it and feeds back what happened. No I/O, no clock, no tokio.
//!
//! The lifecycle rules (who may open, when, what a close means) stay in `request`; the broker
//! applies them at `Claim`, `Register` and `Close`. This file only orders the side effects
//! around them, so it reads top to bottom as the session's steps:
//!
//! 1. check the asked command, claim the request (a refusal here changes nothing);
//! 2. preflight the recordings directory, taint the target, start the SSM session, record the
//!    start in the store, create the recording, connect the data channel: any failure closes
//!    the claimed request as `OpenFailed`, and no data channel is ever connected after one;
//! 3. the shell is live (the caller pumps it);
//! 4. the shell ends: close the request, seal the recording, replace the instance (a failed
//!    seal still replaces: the instance is tainted either way).

use crate::channel::terminal::{EndReason, SessionEnd};
use crate::request::CloseReason;

/// Actor name for actions the session itself takes.
pub const SESSION_ACTOR: &str = "sombrero";

/// Where the session stands: the effect it waits on, or how it ended.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Nothing done yet.
    Idle,
    /// Waiting on `CheckCommand`.
    CheckingCommand,
    /// Waiting on `Claim`.
    Claiming,
    /// Waiting on `Preflight`.
    Preflighting,
    /// Waiting on `Taint`.
    Tainting,
    /// Waiting on `StartSession`.
    Starting,
    /// Waiting on `Register` (the store learns the SSM session id).
    Registering,
    /// Waiting on `CreateRecording`.
    Recording,
    /// Waiting on `Connect`.
    Connecting,
    /// The data channel failed: waiting on `Seal` of what was recorded, then close as
    /// `OpenFailed` with `why`.
    Abandoning {
        /// The close reason's text.
        why: String,
    },
    /// Refused or failed before the claim: nothing changed.
    NotOpened,
    /// Failed after the claim: the request is closed as `OpenFailed`, no shell was reached.
    OpenFailed,
    /// The shell is live; the caller pumps it and reports `ShellEnded`.
    Live,
    /// Waiting on `ReadEnd`.
    Settling,
    /// Waiting on `Close`.
    Closing {
        /// The reason decided when the shell ended.
        reason: CloseReason,
    },
    /// Waiting on `ReadPolicy` (how to replace).
    ReadingPolicy,
    /// Waiting on `Seal`.
    Sealing {
        /// The replacement strategy, or why the policy could not say.
        replace: Result<(), String>,
    },
    /// Waiting on `Replace`.
    Replacing,
    /// Closed, sealed (or not), replaced (or reported failed).
    Finished,
}

/// What happened: the outcome of the effect the state waits on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Start opening.
    Begin,
    /// The awaited effect succeeded.
    Ok,
    /// The awaited effect failed; why.
    Failed(String),
    /// `Seal` found no recording left to seal (a recording failure took it already).
    Skipped,
    /// The shell ended (the pump returned).
    ShellEnded,
    /// `ReadEnd`: what decides the close reason.
    Ended {
        /// A cause set while live (a person's terminate, the watchdog's expiry or kill).
        cause: Option<CloseReason>,
        /// The first recording failure, if any.
        recording_failure: Option<String>,
        /// How the bridge ended (`None` when the local bridge itself failed).
        end: Option<SessionEnd>,
    },
    /// `Close` is done; the reason the store holds (closed elsewhere first wins).
    Closed {
        /// The stored close reason, when the store could be read.
        stored: Option<CloseReason>,
    },
    /// `ReadPolicy`: the replacement strategy's name, or why the policy cannot be read.
    Policy(Result<String, String>),
}

/// A side effect for the driver. Effects that end a list and have a waiting state produce
/// the next event; the others are fire and forget.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Check the asked command line against the request's (before the claim).
    CheckCommand,
    /// Claim the request (`begin_open`: rules, code, grant window).
    Claim,
    /// Check that a recording can be written.
    Preflight,
    /// Tag the target as tainted (and as opened in an emergency, when it was).
    Taint,
    /// StartSession with the pink-sombrero reason.
    StartSession,
    /// Record the SSM session id in the store (`session_started`).
    Register,
    /// Create the recording, with its opening markers.
    CreateRecording,
    /// Connect the data channel.
    Connect,
    /// Start the watchdog (flush, expiry warning, end of the approved time, kill elsewhere).
    Watch,
    /// Tell the person a step.
    Tell(Told),
    /// Append an audit event.
    Audit(Fact),
    /// Write a marker into the recording.
    Mark(String),
    /// TerminateSession on the service side.
    TerminateSession,
    /// Close the claimed request as `OpenFailed`.
    CloseOpenFailed(String),
    /// Stop the watchdog.
    StopWatchdog,
    /// Audit and tell the commands flagged since the watchdog's last tick.
    TellFlags,
    /// Read what decides the close reason.
    ReadEnd,
    /// Close the request with this reason.
    Close(CloseReason),
    /// Read the policy's replacement strategy.
    ReadPolicy,
    /// Seal the recording.
    Seal,
    /// Replace the instance (audits the request and the outcome itself).
    Replace,
}

/// Steps a person is told (the driver adds what it holds: times, paths, ids).
#[derive(Debug, Clone, PartialEq)]
pub enum Told {
    /// The request is claimed.
    Claimed,
    /// The target is tainted.
    Tainted,
    /// StartSession succeeded.
    Started,
    /// The recording exists.
    Recording,
    /// The shell is live.
    Connected,
    /// The request is closed, for this reason.
    Closed(CloseReason),
    /// The recording is sealed.
    Sealed,
    /// The replacement's outcome.
    Replaced,
}

/// Audit events the saga asks for (the driver adds the details it holds).
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// `tainted`.
    Tainted,
    /// `taint_failed`, with the error.
    TaintFailed(String),
    /// `recording_started`.
    RecordingStarted,
    /// `recording_failed`, with the error.
    RecordingFailed(String),
    /// `recording_sealed`.
    RecordingSealed,
    /// `replacement_failed`: the policy cannot be read, so nothing says how to replace.
    ReplacementImpossible(String),
}

/// The next state and the effects to perform, in order.
pub fn next(state: State, event: Event) -> (State, Vec<Effect>) {
    use Effect::*;
    match (state, event) {
        // 1. Before the claim: a refusal leaves the request Approved and untouched.
        (State::Idle, Event::Begin) => (State::CheckingCommand, vec![CheckCommand]),
        (State::CheckingCommand, Event::Ok) => (State::Claiming, vec![Claim]),
        (State::Claiming, Event::Ok) => (State::Preflighting, vec![Tell(Told::Claimed), Preflight]),
        (State::CheckingCommand | State::Claiming, _) => (State::NotOpened, vec![]),

        // 2. Claimed. The recording must be possible before anything touches the instance.
        (State::Preflighting, Event::Ok) => (State::Tainting, vec![Taint]),
        (State::Preflighting, event) => {
            let e = why(event);
            fail_closed(
                vec![Audit(Fact::RecordingFailed(e.clone()))],
                format!("no recording: {e}"),
            )
        }
        // Taint before any session: the instance is contaminated from here on.
        (State::Tainting, Event::Ok) => (
            State::Starting,
            vec![Audit(Fact::Tainted), Tell(Told::Tainted), StartSession],
        ),
        (State::Tainting, event) => {
            let e = why(event);
            fail_closed(
                vec![Audit(Fact::TaintFailed(e.clone()))],
                format!("taint failed: {e}"),
            )
        }
        (State::Starting, Event::Ok) => (State::Registering, vec![Register]),
        (State::Starting, event) => {
            fail_closed(vec![], format!("StartSession failed: {}", why(event)))
        }
        (State::Registering, Event::Ok) => {
            (State::Recording, vec![Tell(Told::Started), CreateRecording])
        }
        (State::Registering, event) => fail_closed(
            vec![TerminateSession],
            format!(
                "the session could not be recorded in the store: {}",
                why(event)
            ),
        ),
        // The recording exists before the data channel: no byte reaches the shell unrecorded.
        (State::Recording, Event::Ok) => (
            State::Connecting,
            vec![
                Audit(Fact::RecordingStarted),
                Tell(Told::Recording),
                Connect,
            ],
        ),
        (State::Recording, event) => {
            let e = why(event);
            fail_closed(
                vec![TerminateSession, Audit(Fact::RecordingFailed(e.clone()))],
                format!("no recording: {e}"),
            )
        }
        (State::Connecting, Event::Ok) => (State::Live, vec![Tell(Told::Connected), Watch]),
        (State::Connecting, event) => {
            let why = format!("data channel failed: {}", why(event));
            (
                State::Abandoning { why: why.clone() },
                vec![TerminateSession, Mark(why), Seal],
            )
        }
        (State::Abandoning { why }, event) => {
            let mut effects: Vec<Effect> = seal_audit(event).into_iter().collect();
            effects.push(CloseOpenFailed(why));
            (State::OpenFailed, effects)
        }

        // 3. Live: the caller pumps the shell until it ends.
        (State::Live, Event::ShellEnded) => {
            (State::Settling, vec![StopWatchdog, TellFlags, ReadEnd])
        }

        // 4. The shell ended: close, seal, replace.
        (
            State::Settling,
            Event::Ended {
                cause,
                recording_failure,
                end,
            },
        ) => {
            let reason = close_reason(cause, recording_failure.as_deref(), end.as_ref());
            let mut effects = Vec::new();
            if let Some(why) = recording_failure {
                effects.push(Audit(Fact::RecordingFailed(why)));
            }
            // Make sure the service side is gone too (a shell that exited is gone already).
            if !matches!(reason, CloseReason::Exited { .. }) {
                effects.push(TerminateSession);
            }
            effects.push(Close(reason.clone()));
            (State::Closing { reason }, effects)
        }
        (State::Closing { reason }, event) => {
            // Closed elsewhere first (an approver's kill): the stored reason is the true one.
            let reason = match event {
                Event::Closed { stored: Some(r) } => r,
                _ => reason,
            };
            (
                State::ReadingPolicy,
                vec![
                    Tell(Told::Closed(reason.clone())),
                    Mark(format!("closed: {reason}")),
                    ReadPolicy,
                ],
            )
        }
        // Without a readable policy nothing can say how to replace: the node stays tainted
        // and the replacement is recorded failed, so the reaper retries.
        (State::ReadingPolicy, event) => {
            let (replace, mark) = match event {
                Event::Policy(Ok(strategy)) => {
                    (Ok(()), format!("replacement requested: {strategy}"))
                }
                other => {
                    let e = match other {
                        Event::Policy(Err(e)) => e,
                        other => why(other),
                    };
                    let mark = format!("replacement impossible: {e}");
                    (Err(e), mark)
                }
            };
            (State::Sealing { replace }, vec![Mark(mark), Seal])
        }
        // A failed seal still replaces: the instance is tainted whatever the recording.
        (State::Sealing { replace }, event) => {
            let told = (event == Event::Ok).then_some(Tell(Told::Sealed));
            let mut effects: Vec<Effect> = seal_audit(event).into_iter().chain(told).collect();
            match replace {
                Ok(()) => {
                    effects.push(Replace);
                    (State::Replacing, effects)
                }
                Err(e) => {
                    effects.extend([Audit(Fact::ReplacementImpossible(e)), Tell(Told::Replaced)]);
                    (State::Finished, effects)
                }
            }
        }
        (State::Replacing, _) => (State::Finished, vec![Tell(Told::Replaced)]),

        // Terminal states, or an event out of place: nothing more to do.
        (state, _) => (state, vec![]),
    }
}

/// Closes the claimed request as `OpenFailed` after `cleanup`; no effect after it reaches the
/// instance.
fn fail_closed(mut cleanup: Vec<Effect>, why: String) -> (State, Vec<Effect>) {
    cleanup.push(Effect::CloseOpenFailed(why));
    (State::OpenFailed, cleanup)
}

/// What a `Seal` outcome is audited as.
fn seal_audit(event: Event) -> Option<Effect> {
    match event {
        Event::Ok => Some(Effect::Audit(Fact::RecordingSealed)),
        // No recording left to seal: its failure was audited when it happened.
        Event::Skipped => None,
        other => Some(Effect::Audit(Fact::RecordingFailed(why(other)))),
    }
}

/// The failure an event reports (an event out of place counts as one: fail closed).
fn why(event: Event) -> String {
    match event {
        Event::Failed(why) => why,
        other => format!("unexpected {other:?}"),
    }
}

/// Why the session ended: a cause set while live wins (the first one set), then a recording
/// failure (the session was cut off for it), then how the shell itself ended.
pub fn close_reason(
    cause: Option<CloseReason>,
    recording_failure: Option<&str>,
    end: Option<&SessionEnd>,
) -> CloseReason {
    match (cause, recording_failure, end) {
        (Some(r), _, _) => r,
        (None, Some(why), _) => CloseReason::Terminated {
            by: format!("{SESSION_ACTOR} (recording failed: {why})"),
        },
        (None, None, Some(e)) => match &e.reason {
            EndReason::Failed(_) if e.exit_code.is_none() => CloseReason::ConnectionLost,
            _ => CloseReason::Exited { code: e.exit_code },
        },
        (None, None, None) => CloseReason::ConnectionLost,
    }
}

#[cfg(test)]
#[path = "saga_tests.rs"]
mod tests;
