//! The broker's unit tests: one fixture data dir, a clock moved by hand.

use std::time::Duration;

use super::*;
use crate::mfa;
use crate::policy::Role;
use crate::request::{CloseReason, NewRequest, Refusal, Request, State};

struct Fixture {
    _dir: tempfile::TempDir,
    clock: Arc<TestClock>,
    broker: Broker,
    secrets: std::collections::HashMap<String, String>,
}

impl Fixture {
    fn new(policy: &str) -> Fixture {
        let (dir, clock, broker) = super::test_support::broker(policy);
        let mut f = Fixture {
            _dir: dir,
            clock,
            broker,
            secrets: Default::default(),
        };
        for (name, role) in [
            ("rita", "requester"),
            ("ann", "approver"),
            ("bob", "approver"),
        ] {
            f.enrol(name, role);
        }
        // cat stays unconfirmed.
        let e = f
            .broker
            .enrol_user("cat", Role::parse_set("both").unwrap())
            .unwrap();
        f.secrets.insert("cat".into(), e.secret_base32);
        f
    }

    /// Enrols `name` and confirms the enrolment with a code of the current step.
    fn enrol(&mut self, name: &str, role: &str) {
        let e = self
            .broker
            .enrol_user(name, Role::parse_set(role).unwrap())
            .unwrap();
        let code = mfa::code_at(name, &e.secret_base32, self.clock.now()).unwrap();
        self.broker.confirm_enrolment(name, &code).unwrap();
        self.secrets.insert(name.into(), e.secret_base32);
    }

    /// A fresh code: each call moves the clock one step so no code is a replay.
    fn code(&self, who: &str) -> String {
        self.clock.advance(Duration::from_secs(30));
        mfa::code_at(who, &self.secrets[who], self.clock.now()).unwrap()
    }

    fn request(&self) -> Request {
        let code = self.code("rita");
        self.broker
            .create_request(new_request("rita"), &code)
            .unwrap()
    }
}

/// A ten-minute request by `requester` for one instance.
fn new_request(requester: &str) -> NewRequest {
    NewRequest {
        requester: requester.into(),
        target: "i-0abc1234".into(),
        reason: "database disk is full".into(),
        incident: None,
        duration: Duration::from_secs(600),
        command: None,
    }
}

const POLICY: &str =
    "requesters = [\"*\"]\napprovers = [\"*\"]\nrequest_ttl = \"10m\"\ngrant_window = \"5m\"\n";

#[test]
fn full_flow_and_audit_chain() {
    let f = Fixture::new(POLICY);
    let r = f.request();
    assert_eq!(r.state, State::Pending);
    let code = f.code("ann");
    let r1 = f.broker.approve(&r.id, "ann", &code, Some("ok")).unwrap();
    assert_eq!(r1.state, State::Pending);
    let code = f.code("bob");
    let r2 = f.broker.approve(&r.id, "bob", &code, None).unwrap();
    assert_eq!(r2.state, State::Approved);
    let e = f.broker.begin_open(&r.id, "rita", None).unwrap_err();
    assert!(matches!(e, BrokerError::CodeNeeded { .. }), "{e}");
    assert_eq!(f.broker.get(&r.id).unwrap().state, State::Approved);
    let code = f.code("rita");
    let g = f.broker.begin_open(&r.id, "rita", Some(&code)).unwrap();
    assert_eq!(g.request.state, State::Active);
    let code = f.code("rita");
    assert!(f.broker.begin_open(&r.id, "rita", Some(&code)).is_err());
    f.broker.session_started(&r.id, "rita-0123").unwrap();
    let c = f
        .broker
        .close_session(&r.id, CloseReason::Exited { code: Some(0) })
        .unwrap();
    assert_eq!(c.state, State::Closed);
    let check = f.broker.verify_audit().unwrap();
    assert_eq!(check.broken, None);
    let kinds: Vec<EventKind> = f
        .broker
        .audit_for_request(&r.id)
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::MfaAccepted,
            EventKind::RequestCreated,
            EventKind::MfaAccepted,
            EventKind::ApprovalGiven,
            EventKind::MfaAccepted,
            EventKind::ApprovalGiven,
            EventKind::RequestApproved,
            EventKind::Refused,
            EventKind::MfaAccepted,
            EventKind::RequestOpened,
            EventKind::Refused,
            EventKind::SessionOpened,
            EventKind::SessionClosed
        ]
    );
}

#[test]
fn revoked_approvers_and_removed_requesters_do_not_open() {
    let f = Fixture::new(POLICY);
    let approved = || {
        let r = f.request();
        for who in ["ann", "bob"] {
            let code = f.code(who);
            f.broker.approve(&r.id, who, &code, None).unwrap();
        }
        assert_eq!(f.broker.get(&r.id).unwrap().state, State::Approved);
        r.id
    };
    let (a, b, c) = (approved(), approved(), approved());
    let revoked = |id: &str| {
        let code = f.code("rita");
        let e = f.broker.begin_open(id, "rita", Some(&code)).unwrap_err();
        assert!(
            matches!(
                e,
                BrokerError::Refused(Refusal::ApprovalsRevoked { standing: 1, .. })
            ),
            "{e}"
        );
    };
    // ann dropped from the policy's approvers after approving: one of two still counts.
    std::fs::write(
        f.broker.policy_path(),
        POLICY.replace("approvers = [\"*\"]", "approvers = [\"bob\"]"),
    )
    .unwrap();
    revoked(&a);
    std::fs::write(f.broker.policy_path(), POLICY).unwrap();
    // ann removed as a user: the same.
    f.broker.remove_user("ann").unwrap();
    revoked(&b);
    // The requester removed: their approved request does not open.
    f.broker.remove_user("rita").unwrap();
    let e = f.broker.begin_open(&c, "rita", Some("123456")).unwrap_err();
    assert!(
        matches!(e, BrokerError::Refused(Refusal::NotARequester { .. })),
        "{e}"
    );
    assert!(f.broker.users().unwrap().iter().all(|u| u.name != "rita"));
}

#[test]
fn refusals_are_audited_and_typed() {
    let f = Fixture::new(POLICY);
    let r = f.request();
    let code = f.code("rita");
    let e = f.broker.approve(&r.id, "rita", &code, None).unwrap_err();
    assert!(
        matches!(e, BrokerError::Refused(Refusal::OwnRequest { .. })),
        "{e}"
    );
    assert!(e.is_refusal());
    let last = f.broker.audit_events(0, 1000).unwrap();
    assert_eq!(last.last().unwrap().kind, EventKind::Refused);
    // The refusal came before the code check, so the code is still unspent.
    f.broker.verify_code("rita", &code, "test").unwrap();
    let e = f.broker.approve(&r.id, "zed", "123456", None).unwrap_err();
    assert!(
        matches!(e, BrokerError::Refused(Refusal::NotAnApprover { .. })),
        "{e}"
    );
    let e = f.broker.get("req-ffffffff").unwrap_err();
    assert!(e.is_input());
}

#[test]
fn replay_and_lockout() {
    let f = Fixture::new(POLICY);
    let code = f.code("ann");
    f.broker.verify_code("ann", &code, "test").unwrap();
    let e = f.broker.verify_code("ann", &code, "test").unwrap_err();
    assert!(e.to_string().contains("already used"), "{e}");
    for _ in 0..4 {
        assert!(f.broker.verify_code("ann", "000000x", "test").is_err());
    }
    let good = f.code("ann");
    let e = f.broker.verify_code("ann", &good, "test").unwrap_err();
    assert!(e.to_string().contains("locked out"), "{e}");
    assert!(f.broker.users().unwrap()[0].locked_until.is_some());
    f.clock.advance(Duration::from_secs(300));
    let good = f.code("ann");
    f.broker.verify_code("ann", &good, "test").unwrap();
}

#[test]
fn expiry_on_access_and_in_sweep() {
    let f = Fixture::new(POLICY);
    let r = f.request();
    f.clock.advance(Duration::from_secs(600));
    let code = f.code("ann");
    let e = f.broker.approve(&r.id, "ann", &code, None).unwrap_err();
    assert!(e.to_string().contains("timed out"), "{e}");
    assert_eq!(f.broker.get(&r.id).unwrap().state, State::Expired);
    let r2 = f.request();
    f.clock.advance(Duration::from_secs(601));
    let changed = f.broker.expire_due().unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].id, r2.id);
    assert!(f.broker.expire_due().unwrap().is_empty());
}

#[test]
fn revision_moves_on_every_write_only() {
    let f = Fixture::new(POLICY);
    let before = f.broker.revision().unwrap();
    f.broker
        .record(
            "fleet",
            EventKind::Tainted,
            None,
            json!({"target": "i-0abc1234"}),
        )
        .unwrap();
    let after = f.broker.revision().unwrap();
    assert!(after > before);
    assert!(f.broker.expire_due().unwrap().is_empty());
    assert_eq!(f.broker.revision().unwrap(), after);
}

#[test]
fn permits_follows_roles_and_policy() {
    let f = Fixture::new("requesters = [\"*\"]\napprovers = [\"ann\"]\nreviewers = [\"*\"]\n");
    assert!(f.broker.permits("ann", Role::Approver).unwrap());
    // bob is enrolled as an approver but the policy does not list him.
    assert!(!f.broker.permits("bob", Role::Approver).unwrap());
    assert!(!f.broker.permits("ann", Role::Reviewer).unwrap());
    assert!(!f.broker.permits("zed", Role::Requester).unwrap());
    f.broker
        .enrol_user("rev", Role::parse_set("reviewer").unwrap())
        .unwrap();
    assert!(f.broker.permits("rev", Role::Reviewer).unwrap());
}

#[test]
fn watch_and_kill_follow_roles_and_state() {
    let mut f = Fixture::new(
        "requesters = [\"*\"]\napprovers = [\"ann\", \"bob\"]\nreviewers = [\"rev\"]\n",
    );
    f.enrol("rev", "reviewer");
    let r = f.request();
    // Nothing to watch or kill before the session is live.
    let e = f.broker.kill_session(&r.id, "ann", "123456").unwrap_err();
    assert!(e.is_input(), "{e}");
    for who in ["ann", "bob"] {
        let code = f.code(who);
        f.broker.approve(&r.id, who, &code, None).unwrap();
    }
    let code = f.code("rita");
    f.broker.begin_open(&r.id, "rita", Some(&code)).unwrap();
    assert!(
        f.broker
            .watch_started(&r.id, "rita")
            .unwrap_err()
            .is_refusal()
    );
    assert!(
        f.broker
            .kill_session(&r.id, "rev", "123456")
            .unwrap_err()
            .is_refusal()
    );
    f.broker.watch_started(&r.id, "rev").unwrap();
    f.broker.watch_ended(&r.id, "rev").unwrap();
    // A wrong code is refused and audited; the session lives on.
    let e = f.broker.kill_session(&r.id, "ann", "000000").unwrap_err();
    assert!(matches!(e, BrokerError::Mfa(_)), "{e}");
    assert_eq!(f.broker.get(&r.id).unwrap().state, State::Active);
    let code = f.code("ann");
    let closed = f.broker.kill_session(&r.id, "ann", &code).unwrap();
    assert_eq!(closed.state, State::Closed);
    assert_eq!(
        closed.close_reason,
        Some(CloseReason::Terminated { by: "ann".into() })
    );
    let events: Vec<(EventKind, String)> = f
        .broker
        .audit_for_request(&r.id)
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.actor))
        .collect();
    for (kind, actor) in [
        (EventKind::SessionWatchStarted, "rev"),
        (EventKind::SessionWatchEnded, "rev"),
        (EventKind::SessionKilled, "ann"),
        (EventKind::SessionClosed, "ann"),
    ] {
        assert!(events.contains(&(kind, actor.to_string())), "{events:?}");
    }
    let refusals = events
        .iter()
        .filter(|(k, _)| *k == EventKind::Refused)
        .count();
    assert_eq!(refusals, 3, "every refusal is audited: {events:?}");
    assert!(
        f.broker
            .record("mallory", EventKind::SessionKilled, Some(&r.id), json!({}))
            .is_err()
    );
}

#[test]
fn record_refuses_broker_only_kinds() {
    let f = Fixture::new(POLICY);
    let e = f
        .broker
        .record("mallory", EventKind::RequestApproved, None, json!({}))
        .unwrap_err();
    assert!(matches!(e, BrokerError::Input(_)), "{e}");
    f.broker
        .record(
            "rec",
            EventKind::RecordingSealed,
            Some("req-00000001"),
            json!({"digest": "ab"}),
        )
        .unwrap();
}

#[test]
fn broker_can_move_to_a_blocking_thread() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Broker>();
}

#[test]
fn first_open_writes_default_policy() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(&Paths::at(dir.path()), BrokerOptions::default()).unwrap();
    assert!(b.policy_created());
    assert_eq!(b.policy().unwrap().approvals_required, 2);
    let b = Broker::open(&Paths::at(dir.path()), BrokerOptions::default()).unwrap();
    assert!(!b.policy_created());
    assert_eq!(
        b.audit_events(0, 10).unwrap()[0].kind,
        EventKind::PolicyCreated
    );
}

#[test]
fn enrolment_rules() {
    let f = Fixture::new(POLICY);
    assert!(matches!(
        f.broker
            .enrol_user("ann", Role::parse_set("approver").unwrap()),
        Err(BrokerError::AlreadyEnrolled { .. })
    ));
    assert!(matches!(
        f.broker
            .enrol_user("bad name", Role::parse_set("approver").unwrap()),
        Err(BrokerError::Input(_))
    ));
    // Until confirmed, cat can do nothing with codes or without them.
    let code = f.code("cat");
    let e = f.broker.verify_code("cat", &code, "test").unwrap_err();
    assert!(matches!(e, BrokerError::NotConfirmed { .. }), "{e}");
    assert!(e.to_string().contains("sombrero user confirm cat"), "{e}");
    let e = f
        .broker
        .create_request(new_request("cat"), &code)
        .unwrap_err();
    assert!(matches!(e, BrokerError::NotConfirmed { .. }), "{e}");
    let r = f.request();
    let e = f.broker.approve(&r.id, "cat", &code, None).unwrap_err();
    assert!(matches!(e, BrokerError::NotConfirmed { .. }), "{e}");
    // The refusals spent nothing: the same code confirms.
    f.broker.confirm_enrolment("cat", &code).unwrap();
    let code = f.code("cat");
    f.broker.approve(&r.id, "cat", &code, None).unwrap();
    let cat = f
        .broker
        .users()
        .unwrap()
        .into_iter()
        .find(|u| u.name == "cat")
        .unwrap();
    assert!(cat.confirmed_at.is_some());
}

/// Writes `text` to `path` and dates the file `age` back, as a file left alone that long.
fn write_aged(path: &std::path::Path, text: &str, age: Duration) {
    std::fs::write(path, text).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(std::time::SystemTime::now() - age)
        .unwrap();
}

#[test]
fn an_edited_policy_is_seen_and_a_broken_edit_errors() {
    let f = Fixture::new(POLICY);
    let path = f.broker.policy_path().to_path_buf();
    let text = |n: u32| format!("{POLICY}approvals_required = {n}\n");
    let hour = Duration::from_secs(3600);
    // A file left alone (its policy kept), then edited to the same length: the edit is seen.
    write_aged(&path, &text(3), hour);
    assert_eq!(f.broker.policy().unwrap().approvals_required, 3);
    assert_eq!(f.broker.policy().unwrap().approvals_required, 3);
    std::fs::write(&path, text(4)).unwrap();
    assert_eq!(f.broker.policy().unwrap().approvals_required, 4);
    // Edits in quick succession, each the same length: every one is seen.
    for n in [2, 5, 2] {
        std::fs::write(&path, text(n)).unwrap();
        assert_eq!(f.broker.policy().unwrap().approvals_required, n);
    }
    // A broken edit of a kept policy fails closed, and so do the calls that need the policy.
    write_aged(&path, &text(3), hour);
    assert_eq!(f.broker.policy().unwrap().approvals_required, 3);
    std::fs::write(&path, "approvals_required = \"many\"\n").unwrap();
    assert!(matches!(f.broker.policy(), Err(BrokerError::Policy(_))));
    assert!(matches!(f.broker.policy(), Err(BrokerError::Policy(_))));
    assert!(f.broker.permits("ann", Role::Approver).is_err());
    // So does a policy file that is gone; a repaired one applies again.
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(f.broker.policy(), Err(BrokerError::Policy(_))));
    write_aged(&path, &text(2), hour);
    assert_eq!(f.broker.policy().unwrap().approvals_required, 2);
    assert!(f.broker.permits("ann", Role::Approver).unwrap());
}
