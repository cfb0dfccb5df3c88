//! Two `sombrero serve` daemons on one DynamoDB table (moto), with client processes under
//! their own uids that hold no secrets: the flow through one broker is seen by the other, and
//! approvers racing through both brokers make exactly one approval each and one transition.
//!
//! Needs moto (`scripts/test`, or `eval "$(scripts/moto-up)"`) and root (distinct peers are
//! client processes under other uids). Without them the tests say so and pass outside CI;
//! under `CI=true` they fail.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::cli::{BIN, Env, Run};
use crate::common::daemon::{Daemon, can_switch_uid, request_args};

const RITA: u32 = 61_101;
const EVE: u32 = 61_102;
const ANN: u32 = 61_103;
const BOB: u32 = 61_104;
/// First uid of the racing approvers `ap0..`.
const AP_BASE: u32 = 61_110;
const APPROVERS: usize = 6;

/// True when moto is running; outside CI a missing moto is a printed skip.
fn moto() -> bool {
    crate::common::moto::moto_dynamodb().is_some()
}

/// Two started daemons (separate data dirs, the same policy file, one fresh table) with
/// `users` (name, role, uid) enrolled on the table through the first broker's host, and the
/// enrolled secrets (an authenticator app per user: the codes the clients type).
fn two_daemons(required: usize, users: &[(String, &str, u32)]) -> Option<(Daemon, Daemon, Env)> {
    if !moto() || !can_switch_uid() {
        eprintln!("skipped: needs moto and root (client processes under other uids)");
        return None;
    }
    let table = format!("sombrero-test-{}", uuid::Uuid::new_v4().simple());
    let init = Command::new(BIN)
        .args(["store", "init", "--table", &table])
        .env_remove("SOMBRERO_STORE")
        .output()
        .unwrap();
    Run::from(init).ok();
    let mut policy = format!(
        "requesters = [\"*\"]\napprovers = [\"*\"]\napprovals_required = {required}\nrequest_ttl = \"20m\"\n[identities]\n"
    );
    for (name, _, uid) in users {
        policy.push_str(&format!("\"uid:{uid}\" = \"{name}\"\n"));
    }
    let mut a = Env::with_store(&policy, &format!("dynamodb:{table}"));
    for (name, role, _) in users {
        a.enrol(name, role);
    }
    let b = a.sibling();
    let apps = a.sibling();
    let (mut a, mut b) = (Daemon::on(a), Daemon::on(b));
    a.start();
    b.start();
    Some((a, b, apps))
}

/// An empty home for the client processes, writable by anyone (so a write would land, and show).
fn empty_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    home
}

/// A client process as `uid` against `d`, with nothing from the test's environment: no data
/// dir, no store, no AWS credentials; HOME and the XDG dirs point into `home`.
fn client(d: &Daemon, uid: u32, home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--broker")
        .arg(d.url())
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .stdin(Stdio::null())
        .uid(uid)
        .gid(0);
    c
}

fn run(mut c: Command) -> Run {
    Run::from(c.output().unwrap())
}

/// The client side holds nothing but its own log: no store, no policy, no recorder key, and
/// no file that carries an enrolled secret.
fn assert_holds_nothing(home: &Path, apps: &Env, users: &[(String, &str, u32)]) {
    let logs = home.join(".local/share/pink-sombrero/logs");
    let mut files = Vec::new();
    let mut dirs = vec![home.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    for f in &files {
        assert!(f.starts_with(&logs), "a client wrote {}", f.display());
        let text = std::fs::read_to_string(f).unwrap();
        for (name, _, _) in users {
            assert!(
                !text.contains(apps.secret(name)),
                "{} holds a secret",
                f.display()
            );
        }
    }
}

fn kinds(show: &serde_json::Value, kind: &str) -> usize {
    show["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .count()
}

fn audit_holds(d: &Daemon, home: &Path, uid: u32) {
    let v = run(client(d, uid, home, &["audit", "verify", "--json"]))
        .ok()
        .json();
    assert_eq!(v["ok"], true, "{v}");
}

fn team() -> Vec<(String, &'static str, u32)> {
    vec![
        ("rita".into(), "requester", RITA),
        ("eve".into(), "requester", EVE),
        ("ann".into(), "approver", ANN),
        ("bob".into(), "approver", BOB),
    ]
}

#[test]
fn flow_through_one_daemon_is_seen_by_the_other() {
    let Some((a, b, mut apps)) = two_daemons(2, &team()) else {
        return;
    };
    let home = empty_home();
    let h = home.path();
    // rita asks through A; eve through B.
    let mut ids = Vec::new();
    for (who, uid, d) in [("rita", RITA, &a), ("eve", EVE, &b)] {
        let code = apps.code(who);
        let mut args = request_args(&code);
        args.push("--json");
        let v = run(client(d, uid, h, &args)).ok().json();
        assert_eq!(v["requester"], who);
        assert_eq!(v["state"], "pending");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    // Each request: ann approves through A, bob through B (the second one the other way round).
    for (i, id) in ids.iter().enumerate() {
        let (first, second) = if i == 0 { (&a, &b) } else { (&b, &a) };
        for (d, uid, who, state) in [
            (first, ANN, "ann", "pending"),
            (second, BOB, "bob", "approved"),
        ] {
            let code = apps.code(who);
            let args = ["approve", id, "--code", &code, "--json"];
            let v = run(client(d, uid, h, &args)).ok().json();
            assert_eq!(v["state"], state, "{who}");
        }
    }
    // Both brokers tell the same story.
    for d in [&a, &b] {
        let listed = run(client(d, ANN, h, &["list", "--json"])).ok().json();
        let listed = listed.as_array().unwrap();
        assert_eq!(listed.len(), 2);
        assert!(
            listed.iter().all(|r| r["state"] == "approved"),
            "{listed:?}"
        );
        for id in &ids {
            // An approver reads both (a requester sees only their own request's events).
            let v = run(client(d, ANN, h, &["show", id, "--json"])).ok().json();
            assert_eq!(v["request"]["state"], "approved");
            assert_eq!(crate::common::cli::approvers_of(&v), ["ann", "bob"]);
            assert_eq!(kinds(&v, "approval_given"), 2);
            assert_eq!(kinds(&v, "request_approved"), 1);
        }
        audit_holds(d, h, BOB);
    }
    // Nothing a client printed carries a secret, and nothing was written on the client side.
    let users = run(client(&b, RITA, h, &["user", "list", "--json"])).ok();
    assert!(!users.stdout.contains(apps.secret("ann")));
    assert!(!users.stdout.contains("secret"));
    assert_holds_nothing(h, &apps, &team());
}

/// The racing approvers `ap0..`, each with a uid of its own.
fn racers() -> Vec<(String, &'static str, u32)> {
    let mut users = vec![("rita".to_string(), "requester", RITA)];
    users.extend((0..APPROVERS).map(|i| (format!("ap{i}"), "approver", AP_BASE + i as u32)));
    users
}

/// Every approver in `who` approves `id` at once, alternating between the two daemons.
fn race(
    [a, b]: [&Daemon; 2],
    apps: &mut Env,
    home: &Path,
    id: &str,
    who: &[usize],
) -> Vec<(String, Run)> {
    let commands = who
        .iter()
        .map(|&i| {
            let name = format!("ap{i}");
            let code = apps.code(&name);
            let d = if i % 2 == 0 { a } else { b };
            let uid = AP_BASE + i as u32;
            (
                name,
                client(d, uid, home, &["approve", id, "--code", &code]),
            )
        })
        .collect();
    crate::common::cli::race(commands)
}

fn request(a: &Daemon, apps: &mut Env, home: &Path) -> String {
    let code = apps.code("rita");
    let mut args = request_args(&code);
    args.push("--json");
    let v = run(client(a, RITA, home, &args)).ok().json();
    v["id"].as_str().unwrap().to_string()
}

#[test]
fn approvers_racing_through_both_daemons_each_count_once() {
    let Some((a, b, mut apps)) = two_daemons(APPROVERS, &racers()) else {
        return;
    };
    let home = empty_home();
    let h = home.path();
    let id = request(&a, &mut apps, h);
    let all: Vec<usize> = (0..APPROVERS).collect();
    for (w, r) in race([&a, &b], &mut apps, h, &id, &all) {
        assert_eq!(r.code, 0, "{w}: {}", r.stderr);
    }
    let mut expected: Vec<String> = (0..APPROVERS).map(|i| format!("ap{i}")).collect();
    expected.sort();
    for d in [&a, &b] {
        let v = run(client(d, RITA, h, &["show", &id, "--json"]))
            .ok()
            .json();
        assert_eq!(v["request"]["state"], "approved");
        let mut by = crate::common::cli::approvers_of(&v);
        by.sort();
        assert_eq!(by, expected);
        assert_eq!(kinds(&v, "request_created"), 1);
        assert_eq!(kinds(&v, "approval_given"), APPROVERS);
        assert_eq!(kinds(&v, "request_approved"), 1);
        audit_holds(d, h, RITA);
    }
    assert_holds_nothing(h, &apps, &racers());
}

#[test]
fn racing_for_the_last_approval_through_both_daemons_makes_one_transition() {
    let Some((a, b, mut apps)) = two_daemons(2, &racers()) else {
        return;
    };
    let home = empty_home();
    let h = home.path();
    let id = request(&a, &mut apps, h);
    let code = apps.code("ap0");
    run(client(&b, AP_BASE, h, &["approve", &id, "--code", &code])).ok();
    let rest: Vec<usize> = (1..APPROVERS).collect();
    let winner = crate::common::cli::one_winner(&race([&a, &b], &mut apps, h, &id, &rest));
    for d in [&a, &b] {
        let v = run(client(d, RITA, h, &["show", &id, "--json"]))
            .ok()
            .json();
        assert_eq!(v["request"]["state"], "approved");
        assert_eq!(
            crate::common::cli::approvers_of(&v),
            vec!["ap0".to_string(), winner.clone()]
        );
        assert_eq!(kinds(&v, "approval_given"), 2);
        assert_eq!(kinds(&v, "request_approved"), 1);
        assert_eq!(kinds(&v, "refused"), APPROVERS - 2);
        audit_holds(d, h, RITA);
    }
    assert_holds_nothing(h, &apps, &racers());
}
