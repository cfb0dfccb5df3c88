//! Many `sombrero` processes approving one request at once: exactly one transition to
//! Approved, no lost and no double approval.

use crate::common::cli::{Env, race_approvals};

const APPROVERS: usize = 8;

fn env_with(required: usize) -> Env {
    let policy =
        format!("requesters = [\"rita\"]\napprovers = [\"*\"]\napprovals_required = {required}\n");
    let mut env = Env::new(&policy);
    env.enrol("rita", "requester");
    for i in 0..APPROVERS {
        env.enrol(&format!("ap{i}"), "approver");
    }
    env
}

#[test]
fn all_approvers_at_once_lose_no_approval() {
    let mut env = env_with(APPROVERS);
    let id = env.request("rita");
    let who: Vec<String> = (0..APPROVERS).map(|i| format!("ap{i}")).collect();
    for (w, run) in race_approvals(&mut [&mut env], &id, &who) {
        assert_eq!(run.code, 0, "{w}: {}", run.stderr);
    }
    let v = env.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(v["request"]["state"], "approved");
    let mut by = crate::common::cli::approvers_of(&v);
    by.sort();
    assert_eq!(by, who);
    assert_eq!(env.event_count(&id, "approval_given"), APPROVERS);
    assert_eq!(env.event_count(&id, "request_approved"), 1);
    env.run(&["audit", "verify"]).ok();
}

#[test]
fn racing_for_the_last_approval_makes_exactly_one_transition() {
    let mut env = env_with(2);
    let id = env.request("rita");
    env.approve(&id, "ap0").ok();
    let who: Vec<String> = (1..APPROVERS).map(|i| format!("ap{i}")).collect();
    let results = race_approvals(&mut [&mut env], &id, &who);
    let winner = crate::common::cli::one_winner(&results);
    let v = env.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(v["request"]["state"], "approved");
    assert_eq!(
        crate::common::cli::approvers_of(&v),
        vec!["ap0".to_string(), winner]
    );
    assert_eq!(env.event_count(&id, "request_approved"), 1);
    assert_eq!(env.event_count(&id, "refused"), APPROVERS - 2);
    env.run(&["audit", "verify"]).ok();
}

#[test]
fn first_run_by_many_processes_at_once() {
    // A fresh data dir: every process races to create the store, migrate it and write the
    // default policy; exactly one writes the policy and every enrolment lands.
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..APPROVERS)
        .map(|i| {
            std::process::Command::new(crate::common::cli::BIN)
                .arg("--data-dir")
                .arg(dir.path())
                .args(["user", "add", &format!("u{i}"), "--role", "both", "--json"])
                .env_remove("SOMBRERO_POLICY")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut wrote_policy = 0;
    for c in children {
        let o = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        wrote_policy += usize::from(err.contains("wrote the default policy"));
    }
    assert_eq!(wrote_policy, 1);
    let out = std::process::Command::new(crate::common::cli::BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["audit", "verify", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["events"], APPROVERS as u64 + 1);
}
