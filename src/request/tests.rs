//! The lifecycle's unit tests: every command from every state, time passed in.

use std::collections::BTreeSet;

use super::*;
use crate::audit::EventKind;

mod sessions;

#[test]
fn a_bad_target_is_echoed_bounded_and_escaped() {
    let hostile = format!("\u{202e}{}", "x".repeat(2_000_000));
    let said = Refusal::BadTarget { target: hostile }.to_string();
    assert!(said.len() < 300, "{} bytes", said.len());
    assert!(
        !said.contains('\u{202e}') && said.contains("\\u202e"),
        "{said}"
    );
}
use chrono::TimeZone;

const T0: i64 = 1_800_000_000;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(T0 + secs, 0).unwrap()
}

fn names(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn rules() -> Rules {
    Rules {
        requesters: names(&["rita", "ann"]),
        approvers: names(&["ann", "bob", "cat", "rita"]),
        approvals_required: 2,
        request_ttl: Duration::from_secs(600),
        grant_window: Duration::from_secs(300),
        max_session_duration: Duration::from_secs(3600),
        reason_min_length: 10,
        incident_pattern: None,
    }
}

fn new_req() -> NewRequest {
    NewRequest {
        requester: "rita".into(),
        target: "i-0abc1234".into(),
        reason: "disk full on the primary".into(),
        incident: None,
        duration: Duration::from_secs(1800),
        command: None,
    }
}

fn pending() -> Request {
    create("req-0000000a", new_req(), &rules(), t(0))
        .unwrap()
        .request
}

fn approve(by: &str) -> Command {
    Command::Approve {
        by: by.into(),
        comment: None,
    }
}

fn run(r: &Request, cmds: Vec<Command>, now: DateTime<Utc>) -> Request {
    cmds.into_iter().fold(r.clone(), |r, c| {
        apply(&r, c, &rules(), now).unwrap().request
    })
}

fn approved() -> Request {
    run(&pending(), vec![approve("ann"), approve("bob")], t(10))
}

fn active() -> Request {
    run(
        &approved(),
        vec![Command::Open {
            by: "rita".into(),
            session_id: None,
        }],
        t(20),
    )
}

/// One of each command, by actors allowed to try it (cat approves or denies, rita owns).
fn all_commands() -> [Command; 7] {
    [
        approve("cat"),
        Command::Deny {
            by: "cat".into(),
            comment: None,
        },
        Command::Cancel { by: "rita".into() },
        Command::Expire,
        Command::Open {
            by: "rita".into(),
            session_id: None,
        },
        Command::SessionStarted {
            session_id: "s-1".into(),
        },
        Command::Close {
            reason: CloseReason::ConnectionLost,
        },
    ]
}

fn kinds(o: &Outcome) -> Vec<EventKind> {
    o.events.iter().map(|e| e.kind).collect()
}

#[test]
fn create_makes_pending_with_ttl() {
    let o = create("req-0000000a", new_req(), &rules(), t(0)).unwrap();
    assert_eq!(o.request.state, State::Pending);
    assert_eq!(o.request.pending_expires_at, t(600));
    assert_eq!(kinds(&o), vec![EventKind::RequestCreated]);
    assert_eq!(o.events[0].actor, "rita");
}

#[test]
fn create_refusals() {
    let mut incident_rules = rules();
    incident_rules.incident_pattern = Some(regex::Regex::new("^INC-[0-9]+$").unwrap());
    type Case = (&'static str, fn(&mut NewRequest), Refusal);
    let cases: Vec<Case> = vec![
        (
            "stranger",
            |n| n.requester = "zed".into(),
            Refusal::NotARequester { who: "zed".into() },
        ),
        (
            "bad target",
            |n| n.target = "web-1".into(),
            Refusal::BadTarget {
                target: "web-1".into(),
            },
        ),
        (
            "short reason",
            |n| n.reason = "  fix   ".into(),
            Refusal::ReasonTooShort { got: 3, min: 10 },
        ),
        (
            "zero duration",
            |n| n.duration = Duration::ZERO,
            Refusal::ZeroDuration,
        ),
        (
            "too long",
            |n| n.duration = Duration::from_secs(7200),
            Refusal::DurationTooLong {
                asked: "2h".into(),
                max: "1h".into(),
            },
        ),
    ];
    for (name, edit, want) in cases {
        let mut n = new_req();
        edit(&mut n);
        assert_eq!(
            create("req-0000000a", n, &rules(), t(0)),
            Err(want),
            "{name}"
        );
    }
    assert_eq!(
        create("req-0000000a", new_req(), &incident_rules, t(0)),
        Err(Refusal::IncidentRequired {
            pattern: "^INC-[0-9]+$".into()
        })
    );
    let mut n = new_req();
    n.incident = Some("JIRA-1".into());
    assert!(matches!(
        create("req-0000000a", n, &incident_rules, t(0)),
        Err(Refusal::IncidentMismatch { .. })
    ));
    let mut n = new_req();
    n.incident = Some("INC-42".into());
    assert!(create("req-0000000a", n, &incident_rules, t(0)).is_ok());
}

#[test]
fn two_distinct_approvals_approve() {
    let r = pending();
    let o1 = apply(&r, approve("ann"), &rules(), t(5)).unwrap();
    assert_eq!(o1.request.state, State::Pending);
    assert_eq!(kinds(&o1), vec![EventKind::ApprovalGiven]);
    let o2 = apply(&o1.request, approve("bob"), &rules(), t(6)).unwrap();
    assert_eq!(o2.request.state, State::Approved);
    assert_eq!(o2.request.grant_expires_at, Some(t(306)));
    assert_eq!(
        kinds(&o2),
        vec![EventKind::ApprovalGiven, EventKind::RequestApproved]
    );
}

#[test]
fn threshold_of_one_and_three() {
    let mut one = rules();
    one.approvals_required = 1;
    let o = apply(&pending(), approve("ann"), &one, t(1)).unwrap();
    assert_eq!(o.request.state, State::Approved);
    let mut three = rules();
    three.approvals_required = 3;
    let r = [approve("ann"), approve("bob")]
        .into_iter()
        .fold(pending(), |r, c| {
            apply(&r, c, &three, t(1)).unwrap().request
        });
    assert_eq!(r.state, State::Pending);
    let o = apply(&r, approve("cat"), &three, t(2)).unwrap();
    assert_eq!(o.request.state, State::Approved);
}

#[test]
fn approval_refusals() {
    let one = run(&pending(), vec![approve("ann")], t(1));
    let cases: Vec<(&str, Request, Command, Refusal)> = vec![
        (
            "self approval",
            pending(),
            approve("rita"),
            Refusal::OwnRequest {
                who: "rita".into(),
                id: "req-0000000a".into(),
            },
        ),
        (
            "self denial",
            pending(),
            Command::Deny {
                by: "rita".into(),
                comment: None,
            },
            Refusal::OwnRequest {
                who: "rita".into(),
                id: "req-0000000a".into(),
            },
        ),
        (
            "non approver",
            pending(),
            approve("zed"),
            Refusal::NotAnApprover { who: "zed".into() },
        ),
        (
            "non approver deny",
            pending(),
            Command::Deny {
                by: "zed".into(),
                comment: None,
            },
            Refusal::NotAnApprover { who: "zed".into() },
        ),
        (
            "duplicate approver",
            one,
            approve("ann"),
            Refusal::AlreadyApproved {
                who: "ann".into(),
                id: "req-0000000a".into(),
                required: 2,
            },
        ),
    ];
    for (name, r, cmd, want) in cases {
        assert_eq!(apply(&r, cmd, &rules(), t(2)), Err(want), "{name}");
    }
}

#[test]
fn one_denial_ends_it() {
    let r = run(&pending(), vec![approve("ann")], t(1));
    let o = apply(
        &r,
        Command::Deny {
            by: "bob".into(),
            comment: Some("use the runbook".into()),
        },
        &rules(),
        t(2),
    )
    .unwrap();
    assert_eq!(o.request.state, State::Denied);
    assert_eq!(kinds(&o), vec![EventKind::RequestDenied]);
    let e = apply(&o.request, approve("cat"), &rules(), t(3)).unwrap_err();
    assert!(matches!(
        e,
        Refusal::WrongState {
            state: State::Denied,
            ..
        }
    ));
    assert!(e.to_string().contains("create a new request"), "{e}");
}

#[test]
fn cancel_only_by_requester_from_pending_or_approved() {
    for r in [pending(), approved()] {
        let o = apply(&r, Command::Cancel { by: "rita".into() }, &rules(), t(30)).unwrap();
        assert_eq!(o.request.state, State::Cancelled);
        assert_eq!(kinds(&o), vec![EventKind::RequestCancelled]);
        assert_eq!(
            apply(&r, Command::Cancel { by: "ann".into() }, &rules(), t(30)),
            Err(Refusal::NotTheRequester {
                requester: "rita".into(),
                id: "req-0000000a".into(),
                action: "cancel".into()
            })
        );
    }
    assert!(matches!(
        apply(
            &active(),
            Command::Cancel { by: "rita".into() },
            &rules(),
            t(30)
        ),
        Err(Refusal::WrongState { .. })
    ));
}

#[test]
fn expiry_in_each_timed_state() {
    // Pending: TTL 600 s from t(0).
    let p = pending();
    assert_eq!(
        apply(&p, Command::Expire, &rules(), t(599)),
        Err(Refusal::NotDue {
            id: "req-0000000a".into()
        })
    );
    let o = apply(&p, Command::Expire, &rules(), t(600)).unwrap();
    assert_eq!(o.request.state, State::Expired);
    assert_eq!(kinds(&o), vec![EventKind::RequestExpired]);
    // Approved at t(10): grant window 300 s.
    let o = apply(&approved(), Command::Expire, &rules(), t(310)).unwrap();
    assert_eq!(o.request.state, State::Expired);
    // Active at t(20): 1800 s session.
    let a = active();
    assert_eq!(a.session_ends_at, Some(t(1820)));
    let o = apply(&a, Command::Expire, &rules(), t(1820)).unwrap();
    assert_eq!(o.request.state, State::Closed);
    assert_eq!(o.request.close_reason, Some(CloseReason::Expired));
    assert_eq!(kinds(&o), vec![EventKind::SessionClosed]);
}

#[test]
fn commands_after_deadline_are_timed_out() {
    let cases: Vec<(Request, Command, DateTime<Utc>)> = vec![
        (pending(), approve("ann"), t(600)),
        (
            pending(),
            Command::Deny {
                by: "ann".into(),
                comment: None,
            },
            t(601),
        ),
        (pending(), Command::Cancel { by: "rita".into() }, t(700)),
        (
            approved(),
            Command::Open {
                by: "rita".into(),
                session_id: None,
            },
            t(310),
        ),
        (
            active(),
            Command::SessionStarted {
                session_id: "s-1".into(),
            },
            t(1820),
        ),
    ];
    for (r, cmd, now) in cases {
        let e = apply(&r, cmd.clone(), &rules(), now).unwrap_err();
        assert!(matches!(e, Refusal::TimedOut { .. }), "{cmd:?}: {e}");
        assert!(e.to_string().contains("create a new request"));
    }
    // Closing a session past its end is still allowed (the session part reports it).
    let o = apply(
        &active(),
        Command::Close {
            reason: CloseReason::Exited { code: Some(0) },
        },
        &rules(),
        t(5000),
    )
    .unwrap();
    assert_eq!(o.request.state, State::Closed);
}
