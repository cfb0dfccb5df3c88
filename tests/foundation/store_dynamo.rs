//! The DynamoDB team store against moto (the AWS emulator), through the real SDK client.
//!
//! `scripts/test` (or `eval "$(scripts/moto-up)"`) starts moto and exports
//! `SOMBRERO_MOTO_ENDPOINT`, `AWS_ENDPOINT_URL_DYNAMODB`, dummy credentials and a region.
//! Without moto the tests say so and pass outside CI; under `CI=true` they fail. Each test
//! makes its own table, so they run in parallel.
//!
//! The store contract runs on both stores (this is where the SQLite store's chain, revision
//! and rollback behaviour is checked too), then DynamoDB alone:
//! optimistic retries, the transaction size limit, every calling context, `store init`, and
//! two brokers (separate processes, separate data dirs) racing on one table.

use crate::common::moto::moto_dynamodb as moto;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::common::cli::{BIN, Env, Run, race_every_approval, race_for_the_last_approval};
use chrono::{TimeDelta, Utc};
use pink_sombrero::audit::{self, EventKind, NewEvent};
use pink_sombrero::mfa::MfaState;
use pink_sombrero::policy::Role;
use pink_sombrero::request::{Request, State};
use pink_sombrero::store::dynamo::DynamoStore;
use pink_sombrero::store::sqlite::SqliteStore;
use pink_sombrero::store::{Store, StoreError, UserRecord};
use serde_json::json;

fn table_name() -> String {
    format!("sombrero-test-{}", uuid::Uuid::new_v4().simple())
}

/// A store over a fresh table made through `init`.
fn dynamo() -> Option<DynamoStore> {
    moto()?;
    let s = DynamoStore::open(&table_name()).unwrap();
    let out = s.init(&mut |_| {}).unwrap();
    assert!(out.created);
    Some(s)
}

fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    (dir, s)
}

fn event(i: u32, request: Option<&str>) -> NewEvent {
    NewEvent::new("a", EventKind::Tainted, request, json!({"i": i}))
}

fn req(id: &str, state: State, age_mins: i64) -> Request {
    let now = Utc::now() - TimeDelta::minutes(age_mins);
    Request {
        id: id.to_string(),
        requester: "rita".into(),
        target: "i-0abc1234".into(),
        reason: "database disk is full".into(),
        incident: None,
        duration_secs: 600,
        state,
        created_at: now,
        updated_at: now,
        pending_expires_at: now + TimeDelta::minutes(30),
        approvals: vec![],
        denial: None,
        cancelled_by: None,
        escalations: 0,
        review_notices: 0,
        emergency: None,
        approved_at: None,
        grant_expires_at: None,
        opened_at: None,
        session_ends_at: None,
        session_id: None,
        ended_at: None,
        close_reason: None,
        command: None,
    }
}

fn user(name: &str) -> UserRecord {
    UserRecord {
        name: name.to_string(),
        roles: [Role::Approver].into(),
        secret_base32: format!("SECRET{}", name.to_uppercase()),
        enrolled_at: Utc::now(),
        confirmed_at: None,
        mfa: MfaState::default(),
    }
}

// ---- the contract, on any store ----

fn appends_chain_and_bump_revision<S: Store>(s: &S) {
    assert_eq!(s.revision().unwrap(), 0);
    for i in 0..3 {
        s.write(|tx| tx.append(event(i, Some("req-00000001")), Utc::now()))
            .unwrap();
    }
    assert_eq!(s.revision().unwrap(), 3);
    // A transaction that only reads leaves the revision alone.
    s.write(|tx| tx.request("req-00000001")).unwrap();
    assert_eq!(s.revision().unwrap(), 3);
    let (events, count) = s.audit_all().unwrap();
    assert_eq!(count, 3);
    assert_eq!(audit::verify(&events, count), Ok(3));
    assert_eq!(s.audit_for_request("req-00000001").unwrap().len(), 3);
    let after = s.audit_events(1, 10).unwrap();
    assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(s.audit_events(0, 2).unwrap().len(), 2);
}

fn failed_closure_rolls_back<S: Store>(s: &S) {
    let r: Result<(), StoreError> = s.write(|tx| {
        tx.append(event(0, None), Utc::now())?;
        tx.put_user(&user("ann"))?;
        Err(StoreError::Corrupt("boom".into()))
    });
    assert!(r.is_err());
    assert_eq!(s.audit_all().unwrap(), (vec![], 0));
    assert_eq!(s.revision().unwrap(), 0);
    assert!(s.users().unwrap().is_empty());
}

fn requests_and_users_round_trip<S: Store>(s: &S) {
    let old = req("req-00000001", State::Pending, 10);
    let new = req("req-00000002", State::Denied, 1);
    let mid = req("req-00000003", State::Approved, 5);
    s.write(|tx| {
        for r in [&old, &new, &mid] {
            assert_eq!(tx.request(&r.id)?, None);
            tx.put_request(r)?;
        }
        // The transaction sees its own writes.
        assert_eq!(tx.request(&old.id)?.as_ref(), Some(&old));
        let mut timed: Vec<String> = tx.timed_requests()?.into_iter().map(|r| r.id).collect();
        timed.sort();
        assert_eq!(timed, vec![old.id.clone(), mid.id.clone()]);
        tx.put_user(&user("zed"))?;
        tx.put_user(&user("ann"))?;
        assert_eq!(tx.users()?.len(), 2);
        Ok(())
    })
    .unwrap();
    assert_eq!(s.request(&old.id).unwrap().as_ref(), Some(&old));
    assert_eq!(s.request("req-0000000f").unwrap(), None);
    let ids = |v: Vec<Request>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.requests(None).unwrap()),
        vec!["req-00000002", "req-00000003", "req-00000001"]
    );
    assert_eq!(
        ids(s.requests(Some(State::Approved)).unwrap()),
        vec!["req-00000003"]
    );
    // Users come back by name, secret and MFA state included.
    let users = s.users().unwrap();
    assert_eq!(
        users,
        vec![user_like(&users[0], "ann"), user_like(&users[1], "zed")]
    );
    // A later transaction replaces what an earlier one wrote.
    let mut changed = old.clone();
    changed.state = State::Cancelled;
    s.write(|tx| {
        let mut u = tx.user("ann")?.unwrap();
        u.mfa.failures = 2;
        tx.put_user(&u)?;
        tx.put_request(&changed)
    })
    .unwrap();
    assert_eq!(s.request(&old.id).unwrap().unwrap().state, State::Cancelled);
    assert_eq!(s.users().unwrap()[0].mfa.failures, 2);
    s.write(|tx| {
        let timed: Vec<String> = tx.timed_requests()?.into_iter().map(|r| r.id).collect();
        assert_eq!(timed, vec![mid.id.clone()]);
        Ok(())
    })
    .unwrap();
}

fn user_reads_agree_within_a_transaction<S: Store>(s: &S) {
    s.write(|tx| tx.put_user(&user("ann"))).unwrap();
    s.write(|tx| {
        // Read twice, before and after listing: the same answer each time.
        assert_eq!(tx.user("zed")?, None);
        let ann = tx.user("ann")?.unwrap();
        assert_eq!(tx.user("ann")?.as_ref(), Some(&ann));
        assert_eq!(tx.users()?, vec![ann.clone()]);
        assert_eq!(tx.user("zed")?, None);
        assert_eq!(tx.user("ann")?, Some(ann));
        // The transaction's own write wins over what it read.
        tx.put_user(&user("zed"))?;
        assert_eq!(tx.user("zed")?.map(|u| u.name), Some("zed".to_string()));
        Ok(())
    })
    .unwrap();
    let names: Vec<String> = s.users().unwrap().into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["ann", "zed"]);
}

/// `user(name)` with the enrolment time actually stored (it was made a moment apart).
fn user_like(stored: &UserRecord, name: &str) -> UserRecord {
    UserRecord {
        enrolled_at: stored.enrolled_at,
        ..user(name)
    }
}

/// Notifications queue with their event, roll back with it, and settle outside transactions.
fn outbox_commits_with_its_event_and_settles<S: Store>(s: &S) {
    use pink_sombrero::notify::{NotifyEvent, OutboxItem};
    let now = Utc::now();
    let item = |i: u32| {
        let at = now + TimeDelta::milliseconds(i64::from(i));
        OutboxItem::new("hook", NotifyEvent::RequestCreated, json!({"i": i}), at)
    };
    let (a, b) = (item(1), item(2));
    let now = now + TimeDelta::milliseconds(5);
    let r: Result<(), StoreError> = s.write(|tx| {
        tx.append(event(0, None), now)?;
        tx.enqueue(&a)?;
        Err(StoreError::Corrupt("boom".into()))
    });
    assert!(r.is_err());
    assert!(
        s.outbox_due(now, 10).unwrap().is_empty(),
        "rolled back with its event"
    );
    s.write(|tx| {
        tx.append(event(1, None), now)?;
        tx.enqueue(&a)?;
        tx.enqueue(&b)?;
        assert_eq!(tx.outbox_len()?, 2);
        Ok(())
    })
    .unwrap();
    let due = s.outbox_due(now, 10).unwrap();
    assert_eq!(due, vec![a.clone(), b.clone()], "oldest first");
    assert_eq!(s.outbox_due(now, 1).unwrap().len(), 1);
    // A claim holds only against the attempts it read.
    let mut claimed = a.clone();
    claimed.attempts = 1;
    claimed.next_at = now + TimeDelta::seconds(60);
    assert!(s.outbox_update(&claimed, 0).unwrap());
    assert!(!s.outbox_update(&claimed, 0).unwrap(), "claimed twice");
    assert_eq!(s.outbox_due(now, 10).unwrap(), vec![b.clone()]);
    let rev = s.revision().unwrap();
    s.outbox_done(&b.id).unwrap();
    assert_eq!(
        s.revision().unwrap(),
        rev,
        "settling is not a change UIs poll for"
    );
    s.write(|tx| {
        tx.outbox_remove(&a.id)?;
        tx.append(event(2, None), now)
    })
    .unwrap();
    assert!(
        s.outbox_due(now + TimeDelta::hours(1), 10)
            .unwrap()
            .is_empty()
    );
    s.write(|tx| tx.outbox_len().map(|n| assert_eq!(n, 0)))
        .unwrap();
}

#[test]
fn sqlite_contract() {
    for check in [
        appends_chain_and_bump_revision::<SqliteStore>,
        failed_closure_rolls_back::<SqliteStore>,
        requests_and_users_round_trip::<SqliteStore>,
        user_reads_agree_within_a_transaction::<SqliteStore>,
        outbox_commits_with_its_event_and_settles::<SqliteStore>,
    ] {
        let (_d, s) = sqlite();
        check(&s);
    }
}

#[test]
fn dynamo_contract() {
    for check in [
        appends_chain_and_bump_revision::<DynamoStore>,
        failed_closure_rolls_back::<DynamoStore>,
        requests_and_users_round_trip::<DynamoStore>,
        user_reads_agree_within_a_transaction::<DynamoStore>,
        outbox_commits_with_its_event_and_settles::<DynamoStore>,
    ] {
        let Some(s) = dynamo() else { return };
        check(&s);
    }
}

// ---- DynamoDB alone ----

#[test]
fn a_commit_that_lost_the_race_runs_again_on_fresh_state() {
    let Some(a) = dynamo() else { return };
    let b = DynamoStore::open(a.table()).unwrap();
    a.write(|tx| tx.put_request(&req("req-00000001", State::Pending, 0)))
        .unwrap();
    let runs = AtomicU32::new(0);
    // A reads the request, then B (another broker) approves it before A commits: A's commit
    // must fail its conditions and A's closure run again on B's result.
    let seen = a
        .write(|tx| {
            let mut r = tx.request("req-00000001")?.unwrap();
            if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                b.write(|tx2| {
                    let mut r2 = tx2.request("req-00000001")?.unwrap();
                    r2.state = State::Approved;
                    tx2.put_request(&r2)?;
                    tx2.append(event(1, Some(&r2.id)), Utc::now()).map(|_| ())
                })
                .unwrap();
            }
            let seen = r.state;
            r.state = State::Cancelled;
            tx.put_request(&r)?;
            tx.append(event(2, Some(&r.id)), Utc::now())?;
            Ok(seen)
        })
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(seen, State::Approved);
    assert_eq!(
        a.request("req-00000001").unwrap().unwrap().state,
        State::Cancelled
    );
    let (events, count) = b.audit_all().unwrap();
    assert_eq!(audit::verify(&events, count), Ok(2));
    assert_eq!(b.revision().unwrap(), 3);
}

#[test]
fn a_transaction_over_the_item_limit_fails_whole() {
    let Some(s) = dynamo() else { return };
    let r = s.write(|tx| {
        for i in 0..100 {
            tx.append(event(i, None), Utc::now())?;
        }
        Ok(())
    });
    assert!(
        matches!(r, Err(StoreError::TooLarge { items: 101 })),
        "{r:?}"
    );
    assert!(r.unwrap_err().to_string().contains("smaller steps"));
    assert_eq!(s.audit_all().unwrap(), (vec![], 0));
    // 99 events and the head fit.
    s.write(|tx| {
        for i in 0..99 {
            tx.append(event(i, None), Utc::now())?;
        }
        Ok(())
    })
    .unwrap();
    let (events, count) = s.audit_all().unwrap();
    assert_eq!(audit::verify(&events, count), Ok(99));
}

#[test]
fn works_from_plain_blocking_and_async_callers() {
    let Some(s) = dynamo() else { return };
    let s = std::sync::Arc::new(s);
    let append = |s: &DynamoStore, i| s.write(|tx| tx.append(event(i, None), Utc::now()));
    append(&s, 0).unwrap();
    std::thread::scope(|sc| sc.spawn(|| append(&s, 1).unwrap()).join().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s2 = s.clone();
        tokio::task::spawn_blocking(move || append(&s2, 2).unwrap())
            .await
            .unwrap();
        // Straight from a task (blocking its worker, but neither panicking nor deadlocking).
        let s3 = s.clone();
        tokio::spawn(async move { append(&s3, 3).unwrap() })
            .await
            .unwrap();
    });
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    current.block_on(async { append(&s, 4).unwrap() });
    let (events, count) = s.audit_all().unwrap();
    assert_eq!(audit::verify(&events, count), Ok(5));
}

#[test]
fn a_missing_table_says_how_to_create_it() {
    if moto().is_none() {
        return;
    }
    let s = DynamoStore::open("sombrero-no-such-table").unwrap();
    let e = s.revision().unwrap_err();
    assert!(matches!(e, StoreError::NoTable { .. }), "{e:?}");
    assert!(e.to_string().contains("sombrero store init --table"), "{e}");
}

#[test]
fn the_table_is_reached_through_region_like_every_aws_call() {
    if moto().is_none() {
        return;
    }
    // moto keeps tables per region, so a table made in eu-west-1 exists only there: the store
    // must honour --region (the environment says us-east-1).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let table = table_name();
    let spec = format!("dynamodb:{table}");
    sombrero(&["--region", "eu-west-1", "store", "init", "--table", &table]).ok();
    let there = sombrero(&[
        "--data-dir",
        d,
        "--region",
        "eu-west-1",
        "--store",
        &spec,
        "list",
    ]);
    assert_eq!(there.code, 0, "{}", there.stderr);
    let elsewhere = sombrero(&["--data-dir", d, "--store", &spec, "list"]);
    assert_ne!(elsewhere.code, 0, "{}", elsewhere.stdout);
    assert!(
        elsewhere.stderr.contains("sombrero store init --table"),
        "{}",
        elsewhere.stderr
    );
}

fn sombrero(args: &[&str]) -> Run {
    let o = std::process::Command::new(BIN)
        .args(args)
        .env_remove("SOMBRERO_STORE")
        .output()
        .unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn store_init_twice_then_a_wrong_schema_is_refused() {
    if moto().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let table = table_name();
    let first = sombrero(&[
        "--data-dir",
        d,
        "store",
        "init",
        "--table",
        &table,
        "--json",
    ])
    .ok();
    assert_eq!(first.json()["created"], true);
    assert_eq!(first.json()["status"], "ACTIVE");
    assert!(
        first.stderr.contains("creating DynamoDB table"),
        "{}",
        first.stderr
    );
    let store = format!("dynamodb:{table}");
    let again = sombrero(&[
        "--data-dir",
        d,
        "--store",
        &store,
        "store",
        "init",
        "--json",
    ])
    .ok();
    assert_eq!(again.json()["created"], false);
    // A table with another key schema is not silently used.
    let other = table_name();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use aws_sdk_dynamodb::types::*;
        let cfg = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        aws_sdk_dynamodb::Client::new(&cfg)
            .create_table()
            .table_name(&other)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    });
    sombrero(&["--data-dir", d, "store", "init", "--table", &other]).usage("key schema");
    sombrero(&["--data-dir", d, "--store", "dynamodb:x", "list"]).usage("not understood");
}

// ---- two brokers on one table ----

const APPROVERS: usize = 6;

/// Two brokers (data dirs with their own policy file) on one fresh table, with a requester
/// and approvers enrolled through the first.
fn two_brokers(required: usize) -> Option<(Env, Env)> {
    moto()?;
    let table = table_name();
    sombrero(&["store", "init", "--table", &table]).ok();
    let policy =
        format!("requesters = [\"rita\"]\napprovers = [\"*\"]\napprovals_required = {required}\n");
    let mut a = Env::with_store(&policy, &format!("dynamodb:{table}"));
    a.enrol("rita", "requester");
    for i in 0..APPROVERS {
        a.enrol(&format!("ap{i}"), "approver");
    }
    let b = a.sibling();
    Some((a, b))
}

#[test]
fn two_brokers_racing_every_approval_lose_none() {
    let Some((mut a, mut b)) = two_brokers(APPROVERS) else {
        return;
    };
    let id = a.request("rita");
    race_every_approval(&mut [&mut a, &mut b], &id, APPROVERS);
    for env in [&a, &b] {
        let audit = env.run(&["audit", "verify", "--json"]).ok().json();
        assert_eq!(audit["ok"], true);
    }
}

#[test]
fn two_brokers_racing_for_the_last_approval_make_one_transition() {
    let Some((mut a, mut b)) = two_brokers(2) else {
        return;
    };
    let id = a.request("rita");
    assert_eq!(b.state(&id), "pending");
    race_for_the_last_approval(&mut [&mut a, &mut b], &id, APPROVERS);
    let audit = a.run(&["audit", "verify", "--json"]).ok().json();
    assert_eq!(audit["ok"], true);
}

#[test]
fn an_audit_item_is_never_overwritten_even_when_the_head_is_moved_back() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let Some(s) = dynamo() else { return };
    for i in 1..=3 {
        s.write(|tx| tx.append(event(i, None), Utc::now()).map(|_| ()))
            .unwrap();
    }
    let (before, _) = s.audit_all().unwrap();
    // Someone with write access to the table moves the head back one event (revision kept),
    // so the next commit's conditions on the head hold and it would write seq 3 again.
    let table = s.table().to_string();
    let second = before[1].hash.clone();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move {
            let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            aws_sdk_dynamodb::Client::new(&conf)
                .update_item()
                .table_name(table)
                .key("pk", AttributeValue::S("head".into()))
                .key("sk", AttributeValue::S("head".into()))
                .update_expression("SET #s = :s, #h = :h")
                .expression_attribute_names("#s", "seq")
                .expression_attribute_names("#h", "hash")
                .expression_attribute_values(":s", AttributeValue::N("2".into()))
                .expression_attribute_values(":h", AttributeValue::S(second))
                .send()
                .await
                .unwrap();
        });
    let err = s
        .write(|tx| tx.append(event(9, None), Utc::now()).map(|_| ()))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::AuditOverwrite { seq: 3 }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("refused to overwrite audit event 3")
    );
    let (after, _) = s.audit_all().unwrap();
    assert_eq!(after, before, "the stored events are untouched");
}
