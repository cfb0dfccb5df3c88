//! `sombrero reap` and `sombrero rogue` through the binary against a lab: a node tainted by a
//! session that never closed (a crashed client) is replaced once, and a session opened around
//! the broker is reported once, each with its audit events. A session whose client was killed
//! (request past its end, session still active) is ended and its node replaced.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::fleet::{events, lab, node_ids, sombrero_json};
use chrono::Utc;
use pink_sombrero::audit::EventKind;
use pink_sombrero::broker::{Broker, BrokerOptions, Clock, TestClock};
use pink_sombrero::config::Paths;
use pink_sombrero::fleet::aws::AwsFleet;
use pink_sombrero::fleet::{Fleet, SessionReason, SessionState, Taint};
use pink_sombrero::lab::Lab;
use pink_sombrero::policy::Role;
use pink_sombrero::request::{NewRequest, State};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sombrero");

/// A data dir whose policy replaces through the lab's automation document.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let policy = pink_sombrero::policy::DEFAULT_POLICY.replace(
        r#"replacement = "asg""#,
        r#"replacement = "automation:PinkSombrero-ReplaceNode""#,
    );
    assert!(policy.contains("PinkSombrero-ReplaceNode"));
    std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
    dir
}

/// A lab with `nodes` nodes, its fleet, a fresh data dir and the first node's id.
async fn world(nodes: usize) -> (Lab, AwsFleet, tempfile::TempDir, String) {
    let (lab, fleet) = lab(nodes).await;
    let node = fleet.list_nodes().await.unwrap()[0].id.clone();
    (lab, fleet, data_dir(), node)
}

/// `by`'s taint for `request`, now.
fn taint_now(request: &str, by: &str) -> Taint {
    Taint {
        request: request.into(),
        by: by.into(),
        at: Utc::now(),
    }
}

/// No node of a `fleet --json` listing is marked old.
#[track_caller]
fn assert_none_old(listing: &Value) {
    let nodes = listing.as_array().unwrap();
    assert!(nodes.iter().all(|n| n["old"] == false), "{listing}");
}

/// Runs the binary with SSM (and the tagging API) on the lab; returns (exit code, stdout as
/// JSON).
async fn sombrero(dir: &Path, lab: &Lab, args: &[&str]) -> (i32, Value) {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .args(["--json", "--region", "us-east-1", "--endpoint-url"])
        .arg(lab.endpoint_url())
        .arg("--data-dir")
        .arg(dir)
        .env("AWS_ACCESS_KEY_ID", "lab")
        .env("AWS_SECRET_ACCESS_KEY", "lab")
        .env(
            "AWS_ENDPOINT_URL_RESOURCE_GROUPS_TAGGING_API",
            lab.endpoint_url(),
        );
    sombrero_json(cmd, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reap_replaces_a_crashed_sessions_node_once() {
    let (lab, fleet) = lab(2).await;
    let dir = data_dir();
    let nodes = fleet.list_nodes().await.unwrap();
    let (crashed, busy) = (nodes[0].id.clone(), nodes[1].id.clone());
    let taint = taint_now("req-crashed", "alice");
    fleet.taint(&crashed, &taint).await.unwrap();
    // Tainted but still in a session: not to be touched.
    fleet.taint(&busy, &taint).await.unwrap();
    let live = fleet
        .start_session(&busy, &SessionReason::for_request("req-busy").unwrap())
        .await
        .unwrap();

    let (code, dry) = sombrero(dir.path(), &lab, &["reap", "--dry-run"]).await;
    assert_eq!(code, 0);
    assert_eq!(dry.as_array().unwrap().len(), 1, "{dry}");
    assert_eq!(dry[0]["target"], crashed.as_str());
    assert_eq!(dry[0]["outcome"], "would-replace");
    assert!(events(dir.path(), EventKind::ReplacementRequested).is_empty());
    assert!(
        fleet
            .list_nodes()
            .await
            .unwrap()
            .iter()
            .any(|n| n.id == crashed)
    );

    let (code, done) = sombrero(dir.path(), &lab, &["reap"]).await;
    assert_eq!(code, 0, "{done}");
    assert_eq!(done[0]["outcome"], "completed", "{done}");
    let new = done[0]["new"].as_str().unwrap().to_owned();
    let ids = node_ids(&fleet).await;
    assert!(
        ids.contains(&new) && !ids.contains(&crashed) && ids.contains(&busy),
        "{ids:?}"
    );

    let (code, again) = sombrero(dir.path(), &lab, &["reap"]).await;
    assert_eq!(code, 0);
    assert_eq!(again, Value::Array(vec![]), "second run did something");

    let requested = events(dir.path(), EventKind::ReplacementRequested);
    assert_eq!(requested.len(), 1);
    assert_eq!(requested[0]["target"], crashed.as_str());
    let completed = events(dir.path(), EventKind::ReplacementCompleted);
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0]["old"], crashed.as_str());
    assert_eq!(completed[0]["new"], new.as_str());

    fleet.terminate_session(&live.session_id).await.unwrap();
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_reap_is_recorded_and_retried() {
    let (lab, fleet, dir, node) = world(2).await;
    fleet
        .taint(&node, &taint_now("req-x", "bob"))
        .await
        .unwrap();
    lab.hooks().fail_next_automation();

    let (code, first) = sombrero(dir.path(), &lab, &["reap"]).await;
    assert_eq!(code, 1, "a failed replacement must not exit 0: {first}");
    assert_eq!(first[0]["outcome"], "failed");
    let failed = events(dir.path(), EventKind::ReplacementFailed);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["target"], node.as_str());

    let (code, second) = sombrero(dir.path(), &lab, &["reap"]).await;
    assert_eq!(code, 0, "{second}");
    assert_eq!(second[0]["target"], node.as_str());
    assert_eq!(second[0]["outcome"], "completed");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rogue_reports_each_bypassing_session_once() {
    let (lab, fleet, dir, node) = world(2).await;
    // A reason that looks like ours, for a request this store never opened.
    let forged = fleet
        .start_session(&node, &SessionReason::for_request("req-forged").unwrap())
        .await
        .unwrap();

    let (code, first) = sombrero(dir.path(), &lab, &["rogue"]).await;
    assert_eq!(code, 0);
    let first = first.as_array().unwrap();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(
        first[0]["session"]["session_id"],
        forged.session_id.as_str()
    );
    assert_eq!(first[0]["session"]["target"], node.as_str());
    assert_eq!(first[0]["why"]["kind"], "unknown_to_store");
    assert_eq!(first[0]["new"], true);

    fleet.terminate_session(&forged.session_id).await.unwrap();
    // Now in History: still rogue, but already reported.
    let (_, second) = sombrero(dir.path(), &lab, &["rogue"]).await;
    assert_eq!(
        second[0]["session"]["session_id"],
        forged.session_id.as_str()
    );
    assert_eq!(second[0]["new"], false);

    // The fleet listing marks the node a rogue session touched.
    let (code, listing) = sombrero(dir.path(), &lab, &["fleet"]).await;
    assert_eq!(code, 0);
    let marked: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["rogue_touched"] == true)
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(marked, vec![node.as_str()]);

    let found = events(dir.path(), EventKind::RogueSessionFound);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["session_id"], forged.session_id.as_str());
    assert_eq!(found[0]["target"], node.as_str());
    lab.shutdown().await;
}

/// The RFC 6238 code for `secret` at the clock's time step.
fn code(secret: &str, at: chrono::DateTime<Utc>) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret).unwrap();
    let t = totp_rs::Builder::new().with_secret(secret).build().unwrap();
    t.generate(at.timestamp() as u64).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reap_ends_a_killed_clients_session_and_replaces_its_node() {
    let (lab, fleet, dir, node) = world(1).await;

    // The whole lifecycle two hours ago, as `sombrero open` does it; then the client dies
    // (nothing terminates the session or closes the request).
    let clock = TestClock::at(Utc::now() - chrono::Duration::hours(2));
    let (broker, secrets) = crate::common::broker::with_users(
        &Paths::at(dir.path()),
        &clock,
        &[
            ("alice", Role::Requester),
            ("bob", Role::Approver),
            ("carol", Role::Approver),
        ],
    );
    clock.advance(std::time::Duration::from_secs(30));
    let r = broker
        .create_request(
            NewRequest {
                requester: "alice".into(),
                target: node.clone(),
                reason: "disk full on the ingest node".into(),
                incident: None,
                duration: std::time::Duration::from_secs(300),
                command: None,
            },
            &code(&secrets[0], clock.now()),
        )
        .unwrap();
    for (name, secret) in [("bob", &secrets[1]), ("carol", &secrets[2])] {
        broker
            .approve(&r.id, name, &code(secret, clock.now()), None)
            .unwrap();
    }
    clock.advance(std::time::Duration::from_secs(30));
    broker
        .begin_open(&r.id, "alice", Some(&code(&secrets[0], clock.now())))
        .unwrap();
    let taint = Taint {
        request: r.id.clone(),
        by: "alice".into(),
        at: clock.now(),
    };
    fleet.taint(&node, &taint).await.unwrap();
    let s = fleet
        .start_session(&node, &SessionReason::for_request(&r.id).unwrap())
        .await
        .unwrap();
    broker.session_started(&r.id, &s.session_id).unwrap();
    drop(broker);

    let (code, done) = sombrero(dir.path(), &lab, &["reap"]).await;
    assert_eq!(code, 0, "{done}");
    let outcomes: Vec<(&str, &str)> = done
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap(),
                r["target"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("session-ended", node.as_str()),
            ("completed", node.as_str())
        ]
    );
    let history = fleet
        .describe_sessions(SessionState::History)
        .await
        .unwrap();
    assert!(history.iter().any(|h| h.session_id == s.session_id));
    let b = Broker::open(&Paths::at(dir.path()), BrokerOptions::default()).unwrap();
    assert_eq!(b.get(&r.id).unwrap().state, State::Closed);
    let completed = events(dir.path(), EventKind::ReplacementCompleted);
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0]["old"], node.as_str());
    lab.shutdown().await;
}

/// Tags a lab node through SSM directly, as a crashed run would have left it.
async fn tag_lab_node(lab: &Lab, node: &str, tags: &[(&str, String)]) {
    use aws_sdk_ssm::types::{ResourceTypeForTagging, Tag};
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "lab", "lab", None, None, "test",
        ))
        .load()
        .await;
    let ssm = aws_sdk_ssm::Client::from_conf(
        aws_sdk_ssm::config::Builder::from(&sdk)
            .endpoint_url(lab.endpoint_url())
            .build(),
    );
    ssm.add_tags_to_resource()
        .resource_type(ResourceTypeForTagging::ManagedInstance)
        .resource_id(node)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(*k).value(v).build().unwrap())
                .collect(),
        ))
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reap_retries_a_stale_replacement_request_once_and_leaves_a_fresh_one() {
    use pink_sombrero::fleet::tag;
    let (lab, fleet) = lab(3).await;
    let dir = data_dir();
    let nodes = fleet.list_nodes().await.unwrap();
    let (untimed, stale, fresh) = (
        nodes[0].id.clone(),
        nodes[1].id.clone(),
        nodes[2].id.clone(),
    );
    let rfc3339 = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let requested = |at: Option<chrono::DateTime<Utc>>| {
        let mut tags = vec![
            (tag::TAINTED, "true".to_owned()),
            (tag::REQUEST, "req-crashed".to_owned()),
            (tag::REPLACEMENT, tag::REPLACEMENT_REQUESTED.to_owned()),
        ];
        tags.extend(at.map(|t| (tag::REPLACEMENT_AT, rfc3339(t))));
        tags
    };
    // A run that died after marking the node, before (or while) replacing it: from a version
    // that wrote no time, and one an hour ago. A third run is replacing its node right now.
    tag_lab_node(&lab, &untimed, &requested(None)).await;
    let an_hour_ago = Utc::now() - chrono::Duration::hours(1);
    tag_lab_node(&lab, &stale, &requested(Some(an_hour_ago))).await;
    tag_lab_node(&lab, &fresh, &requested(Some(Utc::now()))).await;

    let (code, dry) = sombrero(dir.path(), &lab, &["reap", "--dry-run"]).await;
    assert_eq!(code, 0, "{dry}");
    let planned: BTreeSet<&str> = dry
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["target"].as_str().unwrap())
        .collect();
    assert_eq!(planned, BTreeSet::from([untimed.as_str(), stale.as_str()]));
    assert!(events(dir.path(), EventKind::ReplacementRetried).is_empty());

    let (code, done) = sombrero(dir.path(), &lab, &["reap"]).await;
    assert_eq!(code, 0, "{done}");
    let done = done.as_array().unwrap();
    assert_eq!(done.len(), 2, "{done:?}");
    for row in done {
        assert_eq!(row["outcome"], "completed", "{row}");
        assert_eq!(row["retry"], true, "{row}");
    }
    let ids = node_ids(&fleet).await;
    assert!(
        !ids.contains(&untimed) && !ids.contains(&stale) && ids.contains(&fresh),
        "{ids:?}"
    );
    let retried = events(dir.path(), EventKind::ReplacementRetried);
    let retried_targets: BTreeSet<&str> = retried
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        retried_targets,
        BTreeSet::from([untimed.as_str(), stale.as_str()])
    );
    let stale_event = retried
        .iter()
        .find(|e| e["target"] == stale.as_str())
        .unwrap();
    assert_eq!(stale_event["requested_at"], rfc3339(an_hour_ago).as_str());
    let untimed_event = retried
        .iter()
        .find(|e| e["target"] == untimed.as_str())
        .unwrap();
    assert_eq!(untimed_event["requested_at"], Value::Null);
    assert_eq!(events(dir.path(), EventKind::ReplacementCompleted).len(), 2);

    let (code, again) = sombrero(dir.path(), &lab, &["reap"]).await;
    assert_eq!(code, 0);
    assert_eq!(again, Value::Array(vec![]), "second run did something");
    assert_eq!(events(dir.path(), EventKind::ReplacementRetried).len(), 2);
    // The fresh request is untouched: still marked, still there.
    let fresh_node = fleet
        .list_nodes()
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.id == fresh)
        .unwrap();
    assert!(fresh_node.replacing());
    lab.shutdown().await;
}

/// Changes the policy's `max_instance_age` in a data dir made by [`data_dir`].
fn set_max_instance_age_from(dir: &Path, from: &str, to: &str) {
    let path = dir.join("policy.toml");
    let policy = std::fs::read_to_string(&path).unwrap();
    let line = format!("max_instance_age = {from:?}");
    assert!(policy.contains(&line), "{policy}");
    let policy = policy.replace(&line, &format!("max_instance_age = {to:?}"));
    std::fs::write(&path, policy).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_instances_are_marked_and_reported_once() {
    let (lab, fleet) = lab(2).await;
    let dir = data_dir();
    let ids: BTreeSet<String> = node_ids(&fleet).await.into_iter().collect();

    // With the default (14 days) the lab's fresh nodes are young.
    let (code, listing) = sombrero(dir.path(), &lab, &["fleet"]).await;
    assert_eq!(code, 0);
    assert_none_old(&listing);

    // A one-second limit: wait until the nodes are past it.
    set_max_instance_age_from(dir.path(), "14d", "1s");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (code, listing) = sombrero(dir.path(), &lab, &["fleet"]).await;
    assert_eq!(code, 0);
    let old: BTreeSet<String> = listing
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["old"] == true)
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(old, ids, "{listing}");

    let (code, first) = sombrero(dir.path(), &lab, &["rogue"]).await;
    assert_eq!(code, 0, "{first}");
    let found: BTreeSet<String> = first
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["finding"] == "old_instance")
        .map(|f| {
            assert_eq!(f["new"], true, "{f}");
            assert_eq!(f["max_age_secs"], 1, "{f}");
            assert!(f["age_secs"].as_i64().unwrap() >= 1, "{f}");
            f["instance"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(found, ids, "{first}");
    let events_found = events(dir.path(), EventKind::OldInstanceFound);
    let audited: BTreeSet<String> = events_found
        .iter()
        .map(|e| e["instance"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(audited, ids);
    assert_eq!(events_found.len(), ids.len());
    assert!(events_found.iter().all(|e| e["launched"].is_string()));

    // A second scan reports them again but records nothing new.
    let (_, second) = sombrero(dir.path(), &lab, &["rogue"]).await;
    let again: Vec<&Value> = second
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["finding"] == "old_instance")
        .collect();
    assert_eq!(again.len(), ids.len(), "{second}");
    assert!(again.iter().all(|f| f["new"] == false), "{second}");
    assert_eq!(
        events(dir.path(), EventKind::OldInstanceFound).len(),
        ids.len()
    );

    // "0" turns the check off.
    set_max_instance_age_from(dir.path(), "1s", "0");
    let (_, listing) = sombrero(dir.path(), &lab, &["fleet"]).await;
    assert_none_old(&listing);
    let (_, off) = sombrero(dir.path(), &lab, &["rogue"]).await;
    assert!(
        !off.as_array()
            .unwrap()
            .iter()
            .any(|f| f["finding"] == "old_instance"),
        "{off}"
    );
    lab.shutdown().await;
}
