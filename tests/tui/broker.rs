//! Snapshots and intents against a real broker on a real SQLite data dir.

use std::collections::BTreeSet;
use std::time::Duration;

use pink_sombrero::broker::{Broker, BrokerOptions, Clock, TestClock};
use pink_sombrero::config::Paths;
use pink_sombrero::mfa;
use pink_sombrero::policy::Role;
use pink_sombrero::request::State as RequestState;
use pink_sombrero::tui::action::Done;
use pink_sombrero::tui::broker_view::{perform, snapshot};
use pink_sombrero::tui::intent::Intent;
use pink_sombrero::tui::model::ChainStatus;

#[test]
fn approval_queue_is_per_user_and_intents_go_through_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(chrono::Utc::now());
    let opts = BrokerOptions {
        policy_path: None,
        clock: Some(clock.clone()),
    };
    let broker = Broker::open(&Paths::at(dir.path()), opts).unwrap();
    let mut secret = std::collections::HashMap::new();
    for (name, role) in [
        ("alice", Role::Requester),
        ("bob", Role::Approver),
        ("dave", Role::Requester),
    ] {
        let e = broker.enrol_user(name, BTreeSet::from([role])).unwrap();
        // Confirmed with the previous step's code, so the current one stays free.
        let earlier = clock.now() - chrono::Duration::seconds(30);
        let first = mfa::code_at(name, &e.secret_base32, earlier).unwrap();
        broker.confirm_enrolment(name, &first).unwrap();
        secret.insert(name, e.secret_base32);
    }
    let code = |who: &str| mfa::code_at(who, &secret[who], clock.now()).unwrap();

    let created = perform(
        &broker,
        "alice",
        &Intent::CreateRequest {
            target: "mi-0123456789abcdef0".into(),
            reason: "disk full on the primary".into(),
            incident: None,
            duration: Duration::from_secs(600),
            code: code("alice"),
            emergency: false,
        },
    )
    .unwrap()
    .unwrap();
    let Done::RequestCreated { id, .. } = created else {
        unreachable!("{created:?}")
    };

    let bob = snapshot(&broker, "bob", vec![]).unwrap();
    assert_eq!(bob.user, "bob");
    assert_eq!(bob.approvals.len(), 1);
    let row = &bob.approvals[0].request;
    assert_eq!(
        (row.id.as_str(), row.state, row.approvals_required),
        (id.as_str(), RequestState::Pending, 2)
    );
    assert!(row.deadline.is_some(), "a pending request shows its TTL");
    assert!(
        snapshot(&broker, "alice", vec![])
            .unwrap()
            .approvals
            .is_empty()
    );
    assert!(
        snapshot(&broker, "dave", vec![])
            .unwrap()
            .approvals
            .is_empty()
    );
    assert!(matches!(bob.chain, Some(ChainStatus::Intact { .. })));
    assert_eq!(bob.policy.min_reason_len, 10);

    // A wrong code is refused with the broker's words; a right one approves.
    let wrong = perform(
        &broker,
        "bob",
        &Intent::Approve {
            id: id.clone(),
            code: "000000".into(),
            comment: None,
        },
    )
    .unwrap()
    .unwrap_err();
    assert!(
        wrong.to_string().contains("wrong TOTP code for bob"),
        "{wrong}"
    );
    perform(
        &broker,
        "bob",
        &Intent::Approve {
            id: id.clone(),
            code: code("bob"),
            comment: Some("ok".into()),
        },
    )
    .unwrap()
    .unwrap();
    let after = snapshot(&broker, "bob", vec![]).unwrap();
    assert!(after.approvals.is_empty(), "bob does not approve twice");
    assert_eq!(after.requests[0].approved_by, vec!["bob".to_string()]);
    assert!(after.audit.iter().any(|a| a.kind == "approval_given"));

    // Switching user proves the code; an unknown user is refused.
    assert!(
        perform(
            &broker,
            "alice",
            &Intent::SwitchUser {
                name: "mallory".into(),
                code: "123456".into()
            }
        )
        .unwrap()
        .is_err()
    );
    // Session intents are not the broker's.
    assert!(perform(&broker, "alice", &Intent::EndSession).is_none());
}

/// The request form's emergency door goes through the broker's emergency call; an approver
/// sees it in the veto window on their queue and denies it from there.
#[test]
fn an_emergency_request_goes_through_the_door_and_an_approver_denies_it() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "requesters = [\"*\"]\napprovers = [\"*\"]\nreviewers = [\"*\"]\n\
         [emergency]\nenabled = true\nrequesters = [\"alice\"]\nveto_window = \"2m\"\n",
    )
    .unwrap();
    let clock = TestClock::at(chrono::Utc::now());
    let opts = BrokerOptions {
        policy_path: Some(policy),
        clock: Some(clock.clone()),
    };
    let broker = Broker::open(&Paths::at(dir.path()), opts).unwrap();
    let mut secret = std::collections::HashMap::new();
    for (name, role) in [
        ("alice", Role::Requester),
        ("bob", Role::Approver),
        ("dave", Role::Requester),
    ] {
        let e = broker.enrol_user(name, BTreeSet::from([role])).unwrap();
        let earlier = clock.now() - chrono::Duration::seconds(30);
        let first = mfa::code_at(name, &e.secret_base32, earlier).unwrap();
        broker.confirm_enrolment(name, &first).unwrap();
        secret.insert(name, e.secret_base32);
    }
    let code = |who: &str| mfa::code_at(who, &secret[who], clock.now()).unwrap();
    let limits = |who: &str| snapshot(&broker, who, vec![]).unwrap().policy;
    assert!(limits("alice").emergency_allowed, "alice is listed");
    assert!(!limits("dave").emergency_allowed, "dave is not");
    assert_eq!(limits("alice").veto_window, Duration::from_secs(120));

    let created = perform(
        &broker,
        "alice",
        &Intent::CreateRequest {
            target: "mi-0123456789abcdef0".into(),
            reason: "primary db down, nobody answers".into(),
            incident: Some("INC-7".into()),
            duration: Duration::from_secs(600),
            code: code("alice"),
            emergency: true,
        },
    )
    .unwrap()
    .unwrap();
    let Done::RequestCreated {
        id,
        emergency: Some(veto_ends),
    } = created
    else {
        unreachable!("{created:?}")
    };
    assert_eq!(veto_ends, clock.now() + chrono::Duration::seconds(120));

    let bob = snapshot(&broker, "bob", vec![]).unwrap();
    assert!(bob.reviewer, "an approver sees the review queue");
    let row = &bob.approvals[0].request;
    assert_eq!(
        (row.id.as_str(), row.state, row.deadline, row.emergency),
        (
            id.as_str(),
            RequestState::Emergency,
            Some(veto_ends),
            Some(veto_ends)
        )
    );
    assert!(bob.requests[0].loud(), "every TUI announces it");
    let denied = perform(
        &broker,
        "bob",
        &Intent::Deny {
            id: id.clone(),
            code: code("bob"),
            comment: "call me first".into(),
        },
    )
    .unwrap()
    .unwrap();
    assert_eq!(denied, Done::Denied { id: id.clone() });
    let after = snapshot(&broker, "bob", vec![]).unwrap();
    assert!(after.approvals.is_empty());
    assert_eq!(after.requests[0].state, RequestState::Denied);
    assert!(!after.requests[0].loud());
}
