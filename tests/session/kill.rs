//! `sombrero kill` without a daemon: an approver ends a session another process holds; that
//! process sees the request closed, seals its recording and replaces the node. `sombrero
//! watch` without a daemon says what it needs.

use std::io::{Read, Write};
use std::process::Stdio;

use crate::common::cli::{Env, lab_env};
use pink_sombrero::lab::{self, LabConfig};

const POLICY: &str = r#"
requesters = ["*"]
approvers = ["ann", "bob"]
approvals_required = 2
request_ttl = "30m"
grant_window = "15m"
reason_min_length = 10
replacement = "automation:PinkSombrero-ReplaceNode"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_kills_a_session_held_by_another_process() {
    let lab = lab::start(LabConfig::default()).await.unwrap();
    let mut env = Env::new(POLICY);
    env.enrol("rita", "requester");
    env.enrol("ann", "approver");
    env.enrol("bob", "approver");
    let node = lab.nodes()[0].id.clone();
    let id = env.approved(&node, "rita", &["ann", "bob"]);

    let code = env.code("rita");
    let mut open = env.command(&["open", &id, "--as", "rita", "--code", &code]);
    lab_env(&mut open, &lab.endpoint_url());
    let mut child = open
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"echo live-$((6*7))\n").unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("live-42") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "open ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }

    // A requester cannot kill; watching needs a daemon.
    let code = env.code("rita");
    env.run(&["kill", &id, "--as", "rita", "--code", &code])
        .refused("may not kill");
    env.run(&["watch", &id]).usage("needs a broker daemon");

    // An approver without a code, or with a wrong one, kills nothing.
    env.run(&["kill", &id, "--as", "ann"])
        .usage("no TOTP code given for ann");
    let wrong = env.wrong_code("ann");
    env.run(&["kill", &id, "--as", "ann", "--code", &wrong])
        .refused("wrong TOTP code for ann");
    let shown = env.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(shown["request"]["state"], "active");

    let code = env.code("ann");
    let mut kill = env.command(&["kill", &id, "--as", "ann", "--code", &code]);
    lab_env(&mut kill, &lab.endpoint_url());
    let killed = kill.output().unwrap();
    assert!(killed.status.success(), "{killed:?}");
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("terminated by ann"), "{stderr}");
    assert!(stderr.contains("replaced by"), "{stderr}");

    let shown = env.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(shown["request"]["state"], "closed");
    assert_eq!(shown["request"]["close_reason"]["by"], "ann");
    let audit = env.run(&["audit", "export"]).ok();
    let killed_by_ann = audit.stdout.lines().any(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        v["kind"] == "session_killed" && v["actor"] == "ann"
    });
    assert!(killed_by_ann, "{}", audit.stdout);
    assert!(!lab.nodes().into_iter().any(|n| n.id == node));
}
