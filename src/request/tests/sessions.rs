//! The lifecycle from the grant on: opening the one session, its id, closing it; every
//! command refused in every final state; the whole transition table.

use super::*;

#[test]
fn open_claims_the_one_session() {
    let a = active();
    assert_eq!(a.state, State::Active);
    assert_eq!(a.opened_at, Some(t(20)));
    let again = apply(
        &a,
        Command::Open {
            by: "rita".into(),
            session_id: None,
        },
        &rules(),
        t(21),
    )
    .unwrap_err();
    assert!(again.to_string().contains("at most one session"), "{again}");
    assert_eq!(
        apply(
            &approved(),
            Command::Open {
                by: "ann".into(),
                session_id: None
            },
            &rules(),
            t(20)
        ),
        Err(Refusal::NotTheRequester {
            requester: "rita".into(),
            id: "req-0000000a".into(),
            action: "open".into()
        })
    );
    assert!(matches!(
        apply(
            &pending(),
            Command::Open {
                by: "rita".into(),
                session_id: None
            },
            &rules(),
            t(20)
        ),
        Err(Refusal::WrongState {
            state: State::Pending,
            ..
        })
    ));
}

#[test]
fn session_started_records_one_id() {
    let o = apply(
        &active(),
        Command::SessionStarted {
            session_id: "s-1".into(),
        },
        &rules(),
        t(30),
    )
    .unwrap();
    assert_eq!(o.request.session_id.as_deref(), Some("s-1"));
    assert_eq!(kinds(&o), vec![EventKind::SessionOpened]);
    let same = apply(
        &o.request,
        Command::SessionStarted {
            session_id: "s-1".into(),
        },
        &rules(),
        t(31),
    );
    assert!(same.is_ok());
    assert_eq!(
        apply(
            &o.request,
            Command::SessionStarted {
                session_id: "s-2".into()
            },
            &rules(),
            t(31)
        ),
        Err(Refusal::SessionAlreadyRecorded {
            id: "req-0000000a".into(),
            existing: "s-1".into()
        })
    );
    assert!(matches!(
        apply(
            &approved(),
            Command::SessionStarted {
                session_id: "s-1".into()
            },
            &rules(),
            t(30)
        ),
        Err(Refusal::WrongState { .. })
    ));
}

#[test]
fn close_reasons() {
    for reason in [
        CloseReason::Exited { code: Some(0) },
        CloseReason::Expired,
        CloseReason::Terminated { by: "ann".into() },
        CloseReason::ConnectionLost,
        CloseReason::OpenFailed {
            why: "taint failed".into(),
        },
    ] {
        let o = apply(
            &active(),
            Command::Close {
                reason: reason.clone(),
            },
            &rules(),
            t(40),
        )
        .unwrap();
        assert_eq!(o.request.state, State::Closed);
        assert_eq!(o.request.close_reason, Some(reason.clone()));
        let want_actor = match &reason {
            CloseReason::Terminated { by } => by.as_str(),
            _ => "rita",
        };
        assert_eq!(o.events[0].actor, want_actor);
    }
}

#[test]
fn every_command_in_every_final_state_is_refused() {
    let finals = [
        run(
            &pending(),
            vec![Command::Deny {
                by: "ann".into(),
                comment: None,
            }],
            t(1),
        ),
        run(
            &pending(),
            vec![Command::Cancel { by: "rita".into() }],
            t(1),
        ),
        run(&pending(), vec![Command::Expire], t(600)),
        run(
            &active(),
            vec![Command::Close {
                reason: CloseReason::ConnectionLost,
            }],
            t(30),
        ),
    ];
    let cmds = all_commands();
    for r in &finals {
        assert!(r.state.is_final());
        for c in &cmds {
            let e = apply(r, c.clone(), &rules(), t(20_000)).unwrap_err();
            assert!(
                matches!(e, Refusal::WrongState { state, .. } if state == r.state),
                "{:?} {c:?}: {e}",
                r.state
            );
        }
    }
}

#[test]
fn approvals_on_approved_and_active_are_refused() {
    for r in [approved(), active()] {
        let e = apply(&r, approve("cat"), &rules(), t(25)).unwrap_err();
        assert!(matches!(e, Refusal::WrongState { .. }), "{e}");
        let e = apply(
            &r,
            Command::Deny {
                by: "cat".into(),
                comment: None,
            },
            &rules(),
            t(25),
        )
        .unwrap_err();
        assert!(matches!(e, Refusal::WrongState { .. }), "{e}");
    }
    let e = apply(&approved(), approve("cat"), &rules(), t(25)).unwrap_err();
    assert!(e.to_string().contains("already has the approvals"), "{e}");
}

#[test]
fn pending_cannot_be_closed_or_started() {
    for c in [
        Command::Close {
            reason: CloseReason::ConnectionLost,
        },
        Command::SessionStarted {
            session_id: "s".into(),
        },
    ] {
        assert!(matches!(
            apply(&pending(), c, &rules(), t(1)),
            Err(Refusal::WrongState { .. })
        ));
    }
}

/// Every command in every live state, before any deadline: the full transition table.
#[test]
fn transition_table() {
    use State::*;
    let cmds = all_commands();
    // Ok(state after) or Err(refusal name), one column per command above.
    let table: [(Request, [Result<State, &str>; 7]); 3] = [
        (
            pending(),
            [
                Ok(Pending),
                Ok(Denied),
                Ok(Cancelled),
                Err("NotDue"),
                Err("WrongState"),
                Err("WrongState"),
                Err("WrongState"),
            ],
        ),
        (
            approved(),
            [
                Err("WrongState"),
                Err("WrongState"),
                Ok(Cancelled),
                Err("NotDue"),
                Ok(Active),
                Err("WrongState"),
                Err("WrongState"),
            ],
        ),
        (
            active(),
            [
                Err("WrongState"),
                Err("WrongState"),
                Err("WrongState"),
                Err("NotDue"),
                Err("WrongState"),
                Ok(Active),
                Ok(Closed),
            ],
        ),
    ];
    for (r, row) in table {
        for (cmd, want) in cmds.iter().zip(row) {
            let got = apply(&r, cmd.clone(), &rules(), t(30))
                .map(|o| o.request.state)
                .map_err(|e| {
                    let dbg = format!("{e:?}");
                    dbg.split([' ', '{']).next().unwrap_or_default().to_string()
                });
            assert_eq!(got, want.map_err(str::to_string), "{:?} x {cmd:?}", r.state);
        }
    }
}

#[test]
fn ids_and_reason_format() {
    let id = new_request_id();
    assert!(is_request_id(&id), "{id}");
    assert!(!is_request_id("req-ABCDEF01"));
    assert!(!is_request_id("req-123"));
    assert_eq!(session_reason("req-0000abcd"), "pink sombrero req-0000abcd");
    assert!(is_target_id("i-0abc1234"));
    assert!(is_target_id("mi-0123456789abcdef0"));
    assert!(!is_target_id("i-XYZ"));
    assert!(!is_target_id("i-"));
}

#[test]
fn state_names_round_trip() {
    for s in State::ALL {
        assert_eq!(State::parse(s.as_str()), Some(s));
    }
    assert_eq!(State::parse("bogus"), None);
}
