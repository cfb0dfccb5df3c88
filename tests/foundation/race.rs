//! Many `sombrero` processes approving one request at once: exactly one transition to
//! Approved, no lost and no double approval.

use crate::common::cli::{Env, race_every_approval, race_for_the_last_approval};

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
    race_every_approval(&mut [&mut env], &id, APPROVERS);
    env.run(&["audit", "verify"]).ok();
}

#[test]
fn racing_for_the_last_approval_makes_exactly_one_transition() {
    let mut env = env_with(2);
    let id = env.request("rita");
    race_for_the_last_approval(&mut [&mut env], &id, APPROVERS);
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
