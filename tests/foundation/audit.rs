//! Tampering with audit rows in the real SQLite file is caught by `sombrero audit verify`,
//! which names the first broken event.

use crate::common::cli::{Env, POLICY, Run};
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

/// Every event as stored, in row order.
fn events(c: &Connection) -> Vec<(i64, Event)> {
    let mut stmt = c
        .prepare("SELECT id, seq, at, actor, kind, request_id, data, prev_hash, hash FROM audit ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| {
        let at: String = r.get(2)?;
        let kind: String = r.get(4)?;
        let data: String = r.get(6)?;
        Ok((
            r.get(0)?,
            Event {
                seq: r.get::<_, i64>(1)? as u64,
                at: chrono::DateTime::parse_from_rfc3339(&at)
                    .unwrap()
                    .with_timezone(&chrono::Utc),
                actor: r.get(3)?,
                kind: EventKind::parse(&kind).unwrap(),
                request_id: r.get(5)?,
                data: serde_json::from_str(&data).unwrap(),
                prev_hash: r.get(7)?,
                hash: r.get(8)?,
            },
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn cut_tail_with_the_count_fixed_is_caught_by_the_signed_checkpoint() {
    let env = populated();
    let c = db(&env);
    let last: i64 = c
        .query_row("SELECT MAX(seq) FROM audit", [], |r| r.get(0))
        .unwrap();
    // Delete the last two events and fix the count the store keeps: the chain itself holds.
    c.execute_batch(&format!(
        "DELETE FROM audit WHERE seq > {};
         UPDATE meta SET value = {} WHERE key = 'audit_count';",
        last - 2,
        last - 2
    ))
    .unwrap();
    let out = env.run(&["audit", "verify"]).refused(&format!(
        "audit log truncated after seq {}, checkpoint says {last}",
        last - 2
    ));
    assert!(!out.stderr.contains("holds"), "{}", out.stderr);
    let v = env.run(&["audit", "verify", "--json"]);
    assert_eq!(v.json()["broken"]["Cut"]["signed"], last);
}

#[test]
fn a_full_rechain_fails_against_the_signatures_naming_the_forged_event() {
    let env = populated();
    let c = db(&env);
    // Edit event 1 (rita's enrolment, signed by itself) and recompute every hash after it, as
    // someone who knows the algorithm would.
    let mut prev: Option<String> = None;
    for (id, mut e) in events(&c) {
        if e.seq == 1 {
            e.actor = "mallory".into();
        }
        if let Some(p) = prev.take() {
            e.prev_hash = p;
        }
        e.hash = e.compute_hash();
        c.execute(
            "UPDATE audit SET actor = ?1, prev_hash = ?2, hash = ?3 WHERE id = ?4",
            rusqlite::params![e.actor, e.prev_hash, e.hash, id],
        )
        .unwrap();
        prev = Some(e.hash);
    }
    // Without the checkpoints this would hold: every link and hash is consistent.
    let (events, _) = (events(&c), ());
    let chain: Vec<Event> = events.into_iter().map(|(_, e)| e).collect();
    assert!(pink_sombrero::audit::verify(&chain, chain.len() as u64).is_ok());
    env.run(&["audit", "verify"])
        .refused("audit event 1 was rewritten after it was signed");
}

#[test]
fn the_checkpoint_file_cannot_be_edited_or_emptied_unnoticed() {
    let env = populated();
    let file = env.path().join("keys/audit.checkpoints");
    let text = std::fs::read_to_string(&file).unwrap();
    // A forger without the key cannot make a line whose signature holds.
    std::fs::write(&file, text.replacen("\"seq\":", "\"seq\":1", 1)).unwrap();
    env.run(&["audit", "verify"]).refused("bad signature");
    std::fs::write(&file, "").unwrap();
    env.run(&["audit", "verify"])
        .refused("holds no signed checkpoint");
}

#[test]
fn audit_checkpoint_prints_the_newest_signed_head() {
    let env = populated();
    let c = db(&env);
    let (seq, hash): (i64, String) = c
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let v = env.run(&["audit", "checkpoint", "--json"]).ok().json();
    assert_eq!(v["seq"], seq);
    assert_eq!(v["hash"], hash.as_str());
    assert_eq!(v["sig"].as_str().unwrap().len(), 128);
    let text = env.run(&["audit", "checkpoint"]).ok().stdout;
    assert!(text.contains(&format!("seq {seq} hash {hash}")), "{text}");
}

/// The real binary on data dir `dir`, whatever the environment says.
fn sombrero_in(dir: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(crate::common::cli::BIN);
    c.arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("SOMBRERO_DATA_DIR")
        .env_remove("SOMBRERO_STORE");
    c
}

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_pre_existing_0755_data_dir_never_holds_readable_secrets() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("D");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = sombrero_in(
        &dir,
        &["user", "add", "rita", "--role", "requester", "--json"],
    );
    // The most permissive umask: nothing may depend on it.
    // SAFETY: umask is async-signal-safe and touches only the child's own state.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    Run::from(cmd.output().unwrap()).ok();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("keys")), 0o700);
    for f in [
        "sombrero.db",
        "sombrero.db-wal",
        "sombrero.db-shm",
        "keys/audit.ed25519",
        "keys/audit.checkpoints",
    ] {
        let p = dir.join(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{f}");
        }
    }
    assert_eq!(mode(&dir.join("sombrero.db")), 0o600);
    // Loosened afterwards (a restore, a careless chmod): the next open makes them private again.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(
        dir.join("sombrero.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(dir.join("keys"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.join("keys/audit.ed25519"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    Run::from(sombrero_in(&dir, &["audit", "verify"]).output().unwrap()).ok();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("sombrero.db")), 0o600);
    assert_eq!(mode(&dir.join("keys")), 0o700);
    assert_eq!(mode(&dir.join("keys/audit.ed25519")), 0o600);
}

#[test]
fn files_owned_by_another_user_are_refused_with_the_fix() {
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    for victim in ["sombrero.db", "keys/audit.ed25519", "keys", ""] {
        let env = populated();
        let p = env.path().join(victim);
        std::os::unix::fs::chown(&p, Some(12345), None).unwrap();
        let out = env.run(&["audit", "verify"]);
        assert_ne!(out.code, 0, "{victim}: {}", out.stdout);
        assert!(
            out.stderr.contains("owned by uid 12345") && out.stderr.contains("chown"),
            "{victim}: {}",
            out.stderr
        );
    }
}
