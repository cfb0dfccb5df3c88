//! The whole break-glass path through the real binary against an in-process lab: request, two
//! approvals, `sombrero open` (taint, record, StartSession, data channel), the shell, exit,
//! sealed recording, replacement; and the fail-closed cases.

mod foundation_support;

use std::io::Write;
use std::process::{Output, Stdio};

use foundation_support::Env;
use pink_sombrero::lab::{self, Lab, LabConfig};

const POLICY: &str = r#"
requesters = ["*"]
approvers = ["*"]
approvals_required = 2
request_ttl = "30m"
grant_window = "15m"
max_session_duration = "1h"
reason_min_length = 10
replacement = "automation:PinkSombrero-ReplaceNode"
"#;

struct World {
    env: Env,
    lab: Lab,
}

impl World {
    async fn new() -> World {
        let lab = lab::start(LabConfig::default()).await.unwrap();
        let mut env = Env::new(POLICY);
        env.enrol("rita", "requester");
        env.enrol("ann", "approver");
        env.enrol("bob", "approver");
        World { env, lab }
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = self.env.command(args);
        c.arg("--endpoint-url")
            .arg(self.lab.endpoint_url())
            .env("AWS_ACCESS_KEY_ID", "lab")
            .env("AWS_SECRET_ACCESS_KEY", "lab")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
        c
    }

    /// An approved request by rita on `target`.
    fn approved(&mut self, target: &str) -> String {
        let code = self.env.code("rita");
        let out = self
            .env
            .run(&[
                "request",
                "--target",
                target,
                "--reason",
                "disk full on the primary",
                "--as",
                "rita",
                "--code",
                &code,
                "--duration",
                "10m",
                "--json",
            ])
            .ok();
        let id = out.json()["id"].as_str().unwrap().to_string();
        self.env.approve(&id, "ann").ok();
        let v = self.env.approve(&id, "bob").ok().json();
        assert_eq!(v["state"], "approved");
        id
    }

    fn open(&self, id: &str, script: &str) -> Output {
        let mut child = self
            .command(&["open", id, "--as", "rita"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn audit_kinds(&self) -> Vec<String> {
        let out = self.env.run(&["audit", "export"]).ok();
        out.stdout
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    fn recordings(&self) -> Vec<std::path::PathBuf> {
        let dir = self.env.path().join("recordings");
        let Ok(rd) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        rd.map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "cast"))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_approve_open_hostname_exit_replace() {
    let mut w = World::new().await;
    let node = w.lab.nodes()[0].id.clone();
    let id = w.approved(&node);

    let out = w.open(&id, "hostname\nexit 3\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains(&node),
        "hostname output missing:\n{stdout}\n{stderr}"
    );
    assert_eq!(out.status.code(), Some(3), "remote exit status:\n{stderr}");
    assert!(stderr.contains("tagged as tainted"), "{stderr}");
    assert!(stderr.contains("replaced by"), "{stderr}");

    // The request is closed with the shell's status.
    let shown = w.env.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(shown["request"]["state"], "closed");

    // The old node is gone; a fresh one took its place.
    let ids: Vec<String> = w.lab.nodes().into_iter().map(|n| n.id).collect();
    assert!(!ids.contains(&node), "{node} still registered: {ids:?}");
    assert_eq!(ids.len(), 3);

    // One sealed recording that verifies and holds what was typed and shown.
    let casts = w.recordings();
    assert_eq!(casts.len(), 1, "{casts:?}");
    let cast = std::fs::read_to_string(&casts[0]).unwrap();
    assert!(cast.contains(&node));
    assert!(cast.contains("\"i\""), "keystrokes recorded");
    let verify = w.env.run(&["verify", casts[0].to_str().unwrap()]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);

    let kinds = w.audit_kinds();
    for k in [
        "tainted",
        "recording_started",
        "session_opened",
        "session_closed",
        "recording_sealed",
        "replacement_requested",
        "replacement_completed",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    let tainted_at = kinds.iter().position(|k| k == "tainted").unwrap();
    let opened_at = kinds.iter().position(|k| k == "session_opened").unwrap();
    assert!(
        tainted_at < opened_at,
        "taint must precede the session: {kinds:?}"
    );
    w.env.run(&["audit", "verify"]).ok();

    // One approved request opens at most one session.
    let again = w.open(&id, "exit\n");
    assert_eq!(again.status.code(), Some(1));
    w.lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taint_refused_means_no_session() {
    let mut w = World::new().await;
    let node = w.lab.nodes()[1].id.clone();
    let id = w.approved(&node);
    w.lab.hooks().fail_operation("AddTagsToResource", 1);

    let out = w.open(&id, "hostname\nexit\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot taint"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&node));

    let kinds = w.audit_kinds();
    assert!(kinds.iter().any(|k| k == "taint_failed"), "{kinds:?}");
    assert!(!kinds.iter().any(|k| k == "session_opened"), "{kinds:?}");
    let shown = w.env.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(shown["request"]["state"], "closed");
    w.lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_recordings_dir_means_no_session() {
    let mut w = World::new().await;
    let node = w.lab.nodes()[2].id.clone();
    let id = w.approved(&node);
    // A real filesystem refusal that holds even for root: where the recordings directory
    // should be there is a plain file, so no recording can be created in it.
    std::fs::write(w.env.path().join("recordings"), b"not a directory").unwrap();

    let out = w.open(&id, "hostname\nexit\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("recording"), "{stderr}");
    let tags = &w
        .lab
        .nodes()
        .into_iter()
        .find(|n| n.id == node)
        .unwrap()
        .tags;
    assert!(tags.is_empty(), "nothing may touch the node: {tags:?}");
    let kinds = w.audit_kinds();
    assert!(kinds.iter().any(|k| k == "recording_failed"), "{kinds:?}");
    assert!(!kinds.iter().any(|k| k == "session_opened"), "{kinds:?}");
    w.lab.shutdown().await;
}
