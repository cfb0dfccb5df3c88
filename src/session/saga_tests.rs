//! The saga's table tests: every order it promises, without I/O.

use super::*;
use Effect::*;

/// Folds `events` from `state`: the final state and every effect, in order.
fn run(mut state: State, events: Vec<Event>) -> (State, Vec<Effect>) {
    let mut all = Vec::new();
    for event in events {
        let (next_state, effects) = next(state, event);
        state = next_state;
        all.extend(effects);
    }
    (state, all)
}

fn oks(n: usize) -> Vec<Event> {
    std::iter::once(Event::Begin)
        .chain(std::iter::repeat_n(Event::Ok, n))
        .collect()
}

fn failed(why: &str) -> Event {
    Event::Failed(why.to_string())
}

#[test]
fn opening_runs_every_step_in_the_one_safe_order() {
    let (state, effects) = run(State::Idle, oks(8));
    assert_eq!(state, State::Live);
    assert_eq!(
        effects,
        vec![
            CheckCommand,
            Claim,
            Tell(Told::Claimed),
            Preflight,
            Taint,
            Audit(Fact::Tainted),
            Tell(Told::Tainted),
            StartSession,
            Register,
            Tell(Told::Started),
            CreateRecording,
            Audit(Fact::RecordingStarted),
            Tell(Told::Recording),
            Connect,
            Tell(Told::Connected),
            Watch,
        ]
    );
}

#[test]
fn a_refusal_before_the_claim_changes_nothing() {
    for ok_before in [0, 1] {
        let mut events = oks(ok_before);
        events.push(failed("not yours"));
        let (state, effects) = run(State::Idle, events);
        assert_eq!(state, State::NotOpened, "failing step {ok_before}");
        let after: Vec<_> = effects.iter().skip(ok_before + 1).collect();
        assert!(after.is_empty(), "{after:?}");
        assert!(!effects.iter().any(|e| matches!(e, CloseOpenFailed(_))));
    }
}

/// Every step after the claim: how many `Ok`s reach it, the cleanup before the close, and
/// the close reason's text.
#[test]
fn every_failure_after_the_claim_fails_closed_and_never_connects() {
    let boom = || "boom".to_string();
    let table: Vec<(usize, Vec<Effect>, &str)> = vec![
        (
            2,
            vec![Audit(Fact::RecordingFailed(boom()))],
            "no recording: boom",
        ),
        (
            3,
            vec![Audit(Fact::TaintFailed(boom()))],
            "taint failed: boom",
        ),
        (4, vec![], "StartSession failed: boom"),
        (
            5,
            vec![TerminateSession],
            "the session could not be recorded in the store: boom",
        ),
        (
            6,
            vec![TerminateSession, Audit(Fact::RecordingFailed(boom()))],
            "no recording: boom",
        ),
    ];
    for (ok_before, cleanup, why) in table {
        let mut events = oks(ok_before);
        events.push(failed("boom"));
        let (state, effects) = run(State::Idle, events.clone());
        assert_eq!(state, State::OpenFailed, "{why}");
        let (_, before) = run(State::Idle, events[..events.len() - 1].to_vec());
        let mut expected = cleanup;
        expected.push(CloseOpenFailed(why.to_string()));
        assert_eq!(effects[before.len()..], expected[..], "{why}");
        assert!(!effects.contains(&Connect), "{why}: {effects:?}");
        assert!(!effects.contains(&Watch), "{why}");
        // Nothing more happens after a failed open.
        assert_eq!(
            next(State::OpenFailed, Event::Ok),
            (State::OpenFailed, vec![])
        );
    }
}

#[test]
fn a_failed_data_channel_terminates_seals_what_was_recorded_then_closes() {
    let mut events = oks(7);
    events.push(failed("refused"));
    let (state, effects) = run(State::Idle, events);
    let why = "data channel failed: refused".to_string();
    assert_eq!(state, State::Abandoning { why: why.clone() });
    assert_eq!(
        effects[effects.len() - 3..],
        [TerminateSession, Mark(why.clone()), Seal]
    );
    let cases = [
        (Event::Ok, vec![Audit(Fact::RecordingSealed)]),
        (
            failed("disk"),
            vec![Audit(Fact::RecordingFailed("disk".into()))],
        ),
        (Event::Skipped, vec![]),
    ];
    for (seal, mut expected) in cases {
        let (state, effects) = next(State::Abandoning { why: why.clone() }, seal);
        expected.push(CloseOpenFailed(why.clone()));
        assert_eq!((state, effects), (State::OpenFailed, expected));
    }
}

#[test]
fn an_event_out_of_place_fails_closed() {
    let (state, effects) = next(State::Tainting, Event::ShellEnded);
    assert_eq!(state, State::OpenFailed);
    assert!(matches!(effects.last(), Some(CloseOpenFailed(w)) if w.contains("unexpected")));
}

fn exited(code: Option<i32>) -> Option<SessionEnd> {
    Some(SessionEnd {
        exit_code: code,
        reason: EndReason::Closed("done".into()),
    })
}

#[test]
fn the_shell_ending_stops_the_watchdog_tells_flags_then_reads_the_end() {
    assert_eq!(
        next(State::Live, Event::ShellEnded),
        (State::Settling, vec![StopWatchdog, TellFlags, ReadEnd])
    );
}

#[test]
fn a_shell_that_exited_is_closed_without_terminating_it_again() {
    let ended = Event::Ended {
        cause: None,
        recording_failure: None,
        end: exited(Some(0)),
    };
    let reason = CloseReason::Exited { code: Some(0) };
    assert_eq!(
        next(State::Settling, ended),
        (
            State::Closing {
                reason: reason.clone()
            },
            vec![Close(reason)]
        )
    );
}

#[test]
fn a_recording_failure_is_audited_and_the_service_side_ended() {
    let ended = Event::Ended {
        cause: None,
        recording_failure: Some("disk full".into()),
        end: exited(Some(0)),
    };
    let reason = CloseReason::Terminated {
        by: "sombrero (recording failed: disk full)".into(),
    };
    let (state, effects) = next(State::Settling, ended);
    assert_eq!(
        state,
        State::Closing {
            reason: reason.clone()
        }
    );
    assert_eq!(
        effects,
        vec![
            Audit(Fact::RecordingFailed("disk full".into())),
            TerminateSession,
            Close(reason),
        ]
    );
}

#[test]
fn the_reason_stored_first_wins_over_the_one_decided_here() {
    let killed = CloseReason::Terminated { by: "bob".into() };
    let closing = State::Closing {
        reason: CloseReason::ConnectionLost,
    };
    for (stored, expected) in [
        (Some(killed.clone()), killed),
        (None, CloseReason::ConnectionLost),
    ] {
        let (state, effects) = next(closing.clone(), Event::Closed { stored });
        assert_eq!(state, State::ReadingPolicy);
        assert_eq!(
            effects,
            vec![
                Tell(Told::Closed(expected.clone())),
                Mark(format!("closed: {expected}")),
                ReadPolicy,
            ]
        );
    }
}

#[test]
fn after_the_shell_close_seal_and_replace_in_order() {
    let events = vec![
        Event::ShellEnded,
        Event::Ended {
            cause: None,
            recording_failure: None,
            end: exited(Some(3)),
        },
        Event::Closed { stored: None },
        Event::Policy(Ok("asg".into())),
        Event::Ok,
        Event::Ok,
    ];
    let reason = CloseReason::Exited { code: Some(3) };
    let (state, effects) = run(State::Live, events);
    assert_eq!(state, State::Finished);
    assert_eq!(
        effects,
        vec![
            StopWatchdog,
            TellFlags,
            ReadEnd,
            Close(reason.clone()),
            Tell(Told::Closed(reason.clone())),
            Mark(format!("closed: {reason}")),
            ReadPolicy,
            Mark("replacement requested: asg".into()),
            Seal,
            Audit(Fact::RecordingSealed),
            Tell(Told::Sealed),
            Replace,
            Tell(Told::Replaced),
        ]
    );
}

#[test]
fn a_failed_or_skipped_seal_still_replaces() {
    for (seal, audit) in [
        (
            failed("disk"),
            vec![Audit(Fact::RecordingFailed("disk".into()))],
        ),
        (Event::Skipped, vec![]),
    ] {
        let (state, effects) = next(State::Sealing { replace: Ok(()) }, seal);
        let mut expected = audit;
        expected.push(Replace);
        assert_eq!((state, effects), (State::Replacing, expected));
    }
}

#[test]
fn an_unreadable_policy_records_a_failed_replacement_and_leaves_the_taint() {
    let (state, effects) = next(State::ReadingPolicy, Event::Policy(Err("bad toml".into())));
    assert_eq!(
        (state, effects),
        (
            State::Sealing {
                replace: Err("bad toml".into())
            },
            vec![Mark("replacement impossible: bad toml".into()), Seal]
        )
    );
    let (state, effects) = next(
        State::Sealing {
            replace: Err("bad toml".into()),
        },
        Event::Ok,
    );
    assert_eq!(state, State::Finished);
    assert_eq!(
        effects,
        vec![
            Audit(Fact::RecordingSealed),
            Tell(Told::Sealed),
            Audit(Fact::ReplacementImpossible("bad toml".into())),
            Tell(Told::Replaced),
        ]
    );
    assert!(!effects.contains(&Replace));
}

/// A live cause, a recording failure, how the bridge ended -> the close reason.
type Precedence = (
    Option<CloseReason>,
    Option<&'static str>,
    Option<SessionEnd>,
    CloseReason,
);

#[test]
fn the_close_reason_follows_its_precedence() {
    let lost = Some(SessionEnd {
        exit_code: None,
        reason: EndReason::Failed("ws reset".into()),
    });
    let failed_with_code = Some(SessionEnd {
        exit_code: Some(2),
        reason: EndReason::Failed("ws reset".into()),
    });
    let kill = CloseReason::Terminated { by: "ann".into() };
    let table: Vec<Precedence> = vec![
        (Some(kill.clone()), Some("disk"), exited(Some(0)), kill),
        (
            None,
            Some("disk"),
            exited(Some(0)),
            CloseReason::Terminated {
                by: "sombrero (recording failed: disk)".into(),
            },
        ),
        (
            None,
            None,
            exited(Some(1)),
            CloseReason::Exited { code: Some(1) },
        ),
        (None, None, exited(None), CloseReason::Exited { code: None }),
        (None, None, lost, CloseReason::ConnectionLost),
        (
            None,
            None,
            failed_with_code,
            CloseReason::Exited { code: Some(2) },
        ),
        (None, None, None, CloseReason::ConnectionLost),
    ];
    for (cause, failure, end, expected) in table {
        assert_eq!(close_reason(cause, failure, end.as_ref()), expected);
    }
}
