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
        foundation_support::lab_env(&mut c, &self.lab.endpoint_url());
        c
    }

    /// An approved request by rita on `target` for 10 minutes.
    fn approved(&mut self, target: &str) -> String {
        self.approved_for(target, "10m")
    }

    /// An approved request by rita on `target` for `duration`.
    fn approved_for(&mut self, target: &str, duration: &str) -> String {
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
                duration,
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
        self.run_open(self.command(&["open", id, "--as", "rita"]), script)
    }

    /// `sombrero open` in a private mount namespace where the recordings directory is a fresh
    /// tmpfs mounted with `options` (a real filesystem condition, no flag in the product).
    fn open_on_tmpfs(&self, id: &str, script: &str, options: &str) -> Output {
        let dir = self.env.path().join("recordings");
        std::fs::create_dir_all(&dir).unwrap();
        let inner = self.command(&["open", id, "--as", "rita"]);
        let mut c = std::process::Command::new("unshare");
        // -r maps the caller to root in a user namespace, so this works without privileges.
        c.args([
            "-rm",
            "sh",
            "-c",
            r#"mount -t tmpfs -o "$1" tmpfs "$2" && shift 2 && exec "$@""#,
        ])
        .arg("sh")
        .arg(options)
        .arg(&dir)
        .arg(inner.get_program())
        .args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        self.run_open(c, script)
    }

    fn run_open(&self, mut cmd: std::process::Command, script: &str) -> Output {
        let mut child = cmd
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

    /// A recording failure refused the session before anything touched `node`: no tag on it,
    /// the failure audited, no session opened.
    fn assert_refused_before_the_node(&self, node: &str) {
        let tags = &self
            .lab
            .nodes()
            .into_iter()
            .find(|n| n.id == node)
            .unwrap()
            .tags;
        assert!(tags.is_empty(), "nothing may touch the node: {tags:?}");
        let kinds = self.audit_kinds();
        assert!(kinds.iter().any(|k| k == "recording_failed"), "{kinds:?}");
        assert!(!kinds.iter().any(|k| k == "session_opened"), "{kinds:?}");
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
async fn read_only_recordings_filesystem_means_no_session() {
    let mut w = World::new().await;
    let node = w.lab.nodes()[0].id.clone();
    let id = w.approved(&node);

    let out = w.open_on_tmpfs(&id, "hostname\nexit\n", "ro,size=1m");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&node));
    w.assert_refused_before_the_node(&node);
    w.lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_mid_session_terminates_it() {
    let mut w = World::new().await;
    let node = w.lab.nodes()[1].id.clone();
    let id = w.approved(&node);

    // 256 KiB of room; the session prints megabytes, so the recording fills the disk.
    let script = "head -c 3000000 /dev/zero | base64\nsleep 5\necho STILL-\"\"RUNNING\nexit\n";
    let out = w.open_on_tmpfs(&id, script, "size=256k");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("recording"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("STILL-RUNNING"),
        "the session went on after its recording failed"
    );
    let shown = w.env.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(shown["request"]["state"], "closed");
    let kinds = w.audit_kinds();
    for k in [
        "recording_failed",
        "session_closed",
        "replacement_completed",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    // The touched node is replaced all the same.
    assert!(!w.lab.nodes().iter().any(|n| n.id == node));
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
    w.assert_refused_before_the_node(&node);
    w.lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approved_duration_ends_the_session() {
    let mut w = World::new().await;
    let node = w.lab.nodes()[0].id.clone();
    let id = w.approved_for(&node, "4s");

    let out = w.open(&id, "echo started\nsleep 60; echo LA\"\"TE\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("started"), "{stdout}\n{stderr}");
    assert!(!stdout.contains("LATE"), "the session outlived its grant");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("s left"),
        "no warning before the end: {stderr}"
    );
    assert!(stderr.contains("session closed: "), "{stderr}");

    let shown = w.env.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(shown["request"]["state"], "closed");
    let cast = std::fs::read_to_string(&w.recordings()[0]).unwrap();
    assert!(cast.contains("warning:"), "expiry warning marker missing");
    assert!(!w.lab.nodes().iter().any(|n| n.id == node), "not replaced");
    w.lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_client_leaves_a_tainted_node_the_reaper_replaces() {
    let mut w = World::new().await;
    let node = w.lab.nodes()[1].id.clone();
    let id = w.approved_for(&node, "3s");

    // A client that holds its session open (stdin stays open), then dies without cleanup.
    let mut child = w
        .command(&["open", &id, "--as", "rita"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let shown = w.env.run(&["show", &id, "--json"]).ok().json();
        if shown["request"]["state"] == "active" && shown["request"]["session_id"].is_string() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "session never opened");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let tainted = w.lab.nodes().into_iter().find(|n| n.id == node).unwrap();
    assert!(
        tainted
            .tags
            .iter()
            .any(|(k, v)| k == "pink-sombrero:tainted" && v == "true"),
        "{:?}",
        tainted.tags
    );

    // Once the grant is over, the reaper ends the orphaned session and replaces the node.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let reap = w.command(&["reap", "--json"]).output().unwrap();
    assert!(
        reap.status.success(),
        "{}",
        String::from_utf8_lossy(&reap.stderr)
    );
    assert!(!w.lab.nodes().iter().any(|n| n.id == node), "not reaped");
    let shown = w.env.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(shown["request"]["state"], "closed");

    // Idempotent: nothing left to do.
    let again = w.command(&["reap", "--json"]).output().unwrap();
    assert!(again.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(0), "{rows}");
    w.lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_of_a_recorded_session_list_the_flagged_ones_at_their_lines() {
    let mut w = World::new().await;
    let node = w.lab.nodes()[0].id.clone();
    let id = w.approved(&node);
    let out = w.open(
        &id,
        "hostname\nsudo id\necho \"rm -rf /tmp/x\"\nhistory -c\nls\nexit\n",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let casts = w.recordings();
    let cast = casts[0].to_str().unwrap();
    let lines: Vec<String> = std::fs::read_to_string(cast)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();

    let all = w.env.run(&["commands", cast, "--json"]).ok().json();
    let texts: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "hostname",
            "sudo id",
            "echo \"rm -rf /tmp/x\"",
            "history -c",
            "ls",
            "exit"
        ]
    );

    let flagged = w
        .env
        .run(&["commands", cast, "--flagged", "--json"])
        .ok()
        .json();
    let flagged = flagged.as_array().unwrap();
    let got: Vec<(&str, &str, &str)> = flagged
        .iter()
        .map(|c| {
            (
                c["text"].as_str().unwrap(),
                c["flags"][0]["label"].as_str().unwrap(),
                c["flags"][0]["severity"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("sudo id", "privilege: sudo", "medium"),
            (
                "echo \"rm -rf /tmp/x\"",
                "destruction: recursive rm",
                "high"
            ),
            ("history -c", "hiding tracks: history cleared", "high"),
        ]
    );
    // Each command's line is the `i` event holding its first keystroke.
    for c in flagged {
        let line = c["line"].as_u64().unwrap() as usize;
        let ev: serde_json::Value = serde_json::from_str(&lines[line - 1]).unwrap();
        assert_eq!(ev[1], "i", "line {line}: {ev}");
        let first = c["text"].as_str().unwrap().chars().next().unwrap();
        assert!(ev[2].as_str().unwrap().contains(first), "line {line}: {ev}");
    }

    // The text table says the same for people.
    let table = w.env.run(&["commands", cast, "--flagged"]).ok().stdout;
    assert!(
        table.contains("high: hiding tracks: history cleared"),
        "{table}"
    );
    assert!(!table.contains("hostname"), "{table}");
    w.lab.shutdown().await;
}
