//! Tampering with audit rows in the real SQLite file is caught by `sombrero audit verify`,
//! which names the first broken event.

mod foundation_support;

use foundation_support::{Env, POLICY};
use pink_sombrero::audit::{Event, EventKind, NewEvent};
use rusqlite::Connection;

/// A data dir with a few events: three enrolments, MFA attempts, a request and one approval.
fn populated() -> Env {
    let mut env = Env::new(POLICY);
    env.enrol("rita", "requester");
    env.enrol("ann", "approver");
    env.enrol("bob", "approver");
    let id = env.request("rita");
    env.approve(&id, "ann").ok();
    env.run(&["audit", "verify"]).ok();
    env
}

fn db(env: &Env) -> Connection {
    Connection::open(env.db()).unwrap()
}

#[test]
fn intact_chain_verifies_with_json() {
    let env = populated();
    let v = env.run(&["audit", "verify", "--json"]).ok().json();
    assert_eq!(v["ok"], true);
    assert!(v["events"].as_u64().unwrap() >= 7);
}

#[test]
fn edited_event_is_named() {
    let env = populated();
    db(&env)
        .execute("UPDATE audit SET actor = 'mallory' WHERE seq = 2", [])
        .unwrap();
    env.run(&["audit", "verify"])
        .refused("audit event 2 was edited");
    db(&env)
        .execute("UPDATE audit SET actor = 'bob', data = '{\"roles\":[\"approver\",\"requester\"]}' WHERE seq = 3", [])
        .unwrap();
    let v = env.run(&["audit", "verify", "--json"]);
    assert_eq!(v.code, 1);
    assert_eq!(v.json()["ok"], false);
}

#[test]
fn deleted_event_is_named() {
    let env = populated();
    db(&env)
        .execute("DELETE FROM audit WHERE seq = 3", [])
        .unwrap();
    env.run(&["audit", "verify"])
        .refused("audit event 3 is missing");
}

#[test]
fn deleted_last_event_is_named() {
    let env = populated();
    db(&env)
        .execute(
            "DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)",
            [],
        )
        .unwrap();
    env.run(&["audit", "verify"])
        .refused("missing (deleted from the end)");
}

#[test]
fn reordered_events_are_named() {
    let env = populated();
    let c = db(&env);
    // Swap the stored positions of events 2 and 3 (their content moves with them).
    c.execute_batch(
        "UPDATE audit SET id = -2 WHERE seq = 2;
         UPDATE audit SET id = 2 WHERE seq = 3;
         UPDATE audit SET id = 3 WHERE seq = 2;",
    )
    .unwrap();
    env.run(&["audit", "verify"])
        .refused("event 3 comes before event 2");
}

#[test]
fn inserted_event_is_named() {
    let env = populated();
    let c = db(&env);
    // A forger who knows the algorithm appends a well-formed event after the last one.
    let (seq, hash, at): (i64, String, String) = c
        .query_row(
            "SELECT seq, hash, at FROM audit ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(&at)
        .unwrap()
        .with_timezone(&chrono::Utc);
    let forged = Event::chain(
        Some((seq as u64, &hash)),
        NewEvent::new(
            "mallory",
            EventKind::RequestApproved,
            None,
            serde_json::json!({}),
        ),
        at,
    );
    c.execute(
        "INSERT INTO audit (seq, at, actor, kind, request_id, data, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, NULL, '{}', ?5, ?6)",
        rusqlite::params![
            forged.seq as i64,
            forged
                .at
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            forged.actor,
            forged.kind.as_str(),
            forged.prev_hash,
            forged.hash
        ],
    )
    .unwrap();
    env.run(&["audit", "verify"])
        .refused(&format!("audit event {} was inserted", seq + 1));
}

#[test]
fn inserted_event_in_the_middle_is_named() {
    let env = populated();
    let c = db(&env);
    // Make room after event 2 and slip in a copy of it with a fresh row position.
    c.execute_batch(
        "UPDATE audit SET id = id + 1000 WHERE seq > 2;
         INSERT INTO audit (id, seq, at, actor, kind, request_id, data, prev_hash, hash)
           SELECT 3, seq, at, 'mallory', kind, request_id, data, prev_hash, hash FROM audit WHERE seq = 2;",
    )
    .unwrap();
    env.run(&["audit", "verify"])
        .refused("audit event 2 is out of place (reordered or inserted) after event 2");
}
