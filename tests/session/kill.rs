//! `sombrero kill` without a daemon: an approver ends a session another process holds; that
//! process sees the request closed, seals its recording and replaces the node. `sombrero
//! watch` without a daemon says what it needs.

use std::io::Write;

use crate::common::cli::{Env, TEAM, TEAM_POLICY};
use crate::common::{read_until, spawn_piped};
use pink_sombrero::lab::{self, LabConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_kills_a_session_held_by_another_process() {
    let lab = lab::start(LabConfig::default()).await.unwrap();
    let mut env = Env::enrolled(TEAM_POLICY, &TEAM[..3]);
    let node = lab.nodes()[0].id.clone();
    let id = env.approved(&node, "rita", &["ann", "bob"]);

    let mut child = spawn_piped(&mut env.open_on_lab(&id, "rita", &lab.endpoint_url()));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"echo live-$((6*7))\n").unwrap();
    let mut stdout = child.stdout.take().unwrap();
    read_until(&mut stdout, "live-42");

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
    let mut kill = env.lab_command(
        &["kill", &id, "--as", "ann", "--code", &code],
        &lab.endpoint_url(),
    );
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
    let killed = env.audit_of("session_killed");
    assert!(killed.iter().any(|v| v["actor"] == "ann"), "{killed:?}");
    assert!(!lab.nodes().into_iter().any(|n| n.id == node));
}
