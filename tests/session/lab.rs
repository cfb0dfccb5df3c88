//! The whole break-glass path through the real binary against an in-process lab: request, two
//! approvals, `sombrero open` (taint, record, StartSession, data channel), the shell, exit,
//! sealed recording, replacement; and the fail-closed cases.

use std::process::{Output, Stdio};

use crate::common::cli::{Env, LAB_REPLACEMENT, POLICY, TEAM};
use crate::common::run_with_stdin;
use pink_sombrero::lab::{self, Lab, LabConfig};

/// Anyone requests and approves; the lab's automation replaces a used node.
fn policy() -> String {
    format!("{POLICY}{LAB_REPLACEMENT}")
}

struct World {
    env: Env,
    lab: Lab,
}

impl World {
    async fn new() -> World {
        World::with_policy(&policy()).await
    }

    async fn with_policy(policy: &str) -> World {
        let lab = lab::start(LabConfig::default()).await.unwrap();
        let env = Env::enrolled(policy, &TEAM[..3]);
        World { env, lab }
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        self.env.lab_command(args, &self.lab.endpoint_url())
    }

    /// An approved request by rita on `target` for 10 minutes.
    fn approved(&mut self, target: &str) -> String {
        self.approved_for(target, "10m")
    }

    /// An approved request by rita on `target` for `duration`.
    fn approved_for(&mut self, target: &str, duration: &str) -> String {
        self.approved_with(target, &["--duration", duration])
    }

    /// `sombrero request` by rita on `target` with `extra` options.
    fn request(&mut self, target: &str, extra: &[&str]) -> crate::common::cli::Run {
        let code = self.env.code("rita");
        let reason = "disk full on the primary";
        let extra = [&["--json"], extra].concat();
        self.env
            .request_with_code(target, "rita", reason, &code, &extra)
    }

    /// An approved request by rita on `target` with `extra` request options.
    fn approved_with(&mut self, target: &str, extra: &[&str]) -> String {
        let out = self.request(target, extra).ok();
        let id = out.json()["id"].as_str().unwrap().to_string();
        self.env.approve(&id, "ann").ok();
        let v = self.env.approve(&id, "bob").ok().json();
        assert_eq!(v["state"], "approved");
        id
    }

    /// `sombrero open ID` as rita with a fresh code.
    fn open_cmd(&mut self, id: &str) -> std::process::Command {
        self.env.open_on_lab(id, "rita", &self.lab.endpoint_url())
    }

    /// `sombrero open ID --as rita --code C -- ARGV...` (the command after every option).
    fn open_command(&mut self, id: &str, argv: &[&str], script: &str) -> Output {
        let mut c = self.open_cmd(id);
        c.arg("--").args(argv);
        self.run_open(c, script)
    }

    fn open(&mut self, id: &str, script: &str) -> Output {
        let c = self.open_cmd(id);
        self.run_open(c, script)
    }

    /// `sombrero open` in a private mount namespace where the recordings directory is a fresh
    /// tmpfs mounted with `options` (a real filesystem condition, no flag in the product).
    fn open_on_tmpfs(&mut self, id: &str, script: &str, options: &str) -> Output {
        let dir = self.env.path().join("recordings");
        std::fs::create_dir_all(&dir).unwrap();
        let inner = self.open_cmd(id);
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

    /// `sombrero open` holding its session open (stdin stays open), once the session is up.
    // The child goes back to the caller, who waits for it; on a panic here the test is over.
    #[allow(clippy::zombie_processes)]
    fn open_held(&mut self, id: &str, stderr: Stdio) -> std::process::Child {
        let child = self
            .open_cmd(id)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let shown = self.env.run(&["show", id, "--json"]).ok().json();
            if shown["request"]["state"] == "active" && shown["request"]["session_id"].is_string() {
                return child;
            }
            assert!(std::time::Instant::now() < deadline, "session never opened");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    fn run_open(&self, mut cmd: std::process::Command, script: &str) -> Output {
        run_with_stdin(&mut cmd, script.as_bytes())
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
        self.env.audit_kinds()
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
    // The agent reports no status for a shell: a shell that ended by itself is success.
    assert_eq!(out.status.code(), Some(0), "shell end:\n{stderr}");
    assert!(!stdout.contains("EXIT_CODE") && !stderr.contains("EXIT_CODE"));
    // Piped: status lines are plain lines on stderr, no CR and no blank padding.
    assert!(!stderr.contains('\r'), "{stderr:?}");
    assert!(
        stderr.lines().all(|l| !l.is_empty()),
        "blank status padding: {stderr:?}"
    );
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
    assert!(!cast.contains("EXIT_CODE"));
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
async fn open_needs_a_fresh_code_before_anything_is_touched() {
    let mut w = World::new().await;
    let node = w.lab.nodes()[0].id.clone();
    let id = w.approved(&node);
    let untouched = |w: &World, why: &str| {
        let n = w.lab.nodes().into_iter().find(|n| n.id == node).unwrap();
        assert!(
            n.tags.is_empty(),
            "{why}: the node was touched: {:?}",
            n.tags
        );
        let shown = w.env.run(&["show", &id, "--json"]).ok().json();
        assert_eq!(shown["request"]["state"], "approved", "{why}");
        let kinds = w.audit_kinds();
        assert!(!kinds.iter().any(|k| k == "tainted"), "{why}: {kinds:?}");
        assert!(
            !kinds.iter().any(|k| k == "request_opened"),
            "{why}: {kinds:?}"
        );
    };

    // No code at all (stdin is empty, not a terminal): refused as a usage error.
    let none = w.run_open(w.command(&["open", &id, "--as", "rita"]), "");
    assert_eq!(none.status.code(), Some(2), "{none:?}");
    untouched(&w, "no code");

    // A wrong code: refused by the broker, counted and audited.
    let wrong = w.env.wrong_code("rita");
    let out = w.run_open(
        w.command(&["open", &id, "--as", "rita", "--code", &wrong]),
        "hostname\nexit\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("wrong TOTP code for rita"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&node));
    untouched(&w, "wrong code");

    // A replayed code: spent on another request first, then offered to open this one.
    let replay = w.env.code("rita");
    w.env
        .request_with_code(&node, "rita", "another disk is full", &replay, &[])
        .ok();
    let out = w.run_open(
        w.command(&["open", &id, "--as", "rita", "--code", &replay]),
        "hostname\nexit\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("already used"), "{stderr}");
    untouched(&w, "replayed code");
    let kinds = w.audit_kinds();
    assert!(kinds.iter().any(|k| k == "mfa_rejected"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "mfa_replayed"), "{kinds:?}");

    // A fresh code opens it, here as the first line of the piped input (the rest is the
    // shell's).
    let code = w.env.code("rita");
    let out = w.run_open(
        w.command(&["open", &id, "--as", "rita"]),
        &format!("{code}\nhostname\nexit\n"),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&node),
        "{out:?}"
    );
    w.lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_at_open_false_a_session_opens_without_a_code() {
    let policy = format!("{}\n[mfa]\nat_open = false\n", policy());
    let mut w = World::with_policy(&policy).await;
    let node = w.lab.nodes()[0].id.clone();
    let id = w.approved(&node);
    let out = w.run_open(
        w.command(&["open", &id, "--as", "rita"]),
        "hostname\nexit\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&node),
        "{stderr}"
    );
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
    let mut child = w.open_held(&id, Stdio::null());
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
async fn a_killed_agent_ends_the_session_as_lost_and_the_node_is_still_replaced() {
    let mut w = World::new().await;
    let node = w.lab.nodes()[0].id.clone();
    let id = w.approved(&node);
    // The replacement `open` tries when its session ends fails (as one of a node out of reach
    // may): the node is left to the reaper.
    w.lab.hooks().fail_next_automation();

    let child = w.open_held(&id, Stdio::piped());
    assert!(w.lab.stop_agent(&node));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("REPLACEMENT FAILED"), "{stderr}");
    let shown = w.env.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(shown["request"]["state"], "closed");
    assert_eq!(
        shown["request"]["close_reason"]["reason"], "connection_lost",
        "{shown}"
    );

    // Still registered, agent lost, tainted: the listing says so.
    let listing = w.command(&["fleet"]).output().unwrap();
    let text = String::from_utf8_lossy(&listing.stdout);
    let line = text.lines().find(|l| l.starts_with(&node)).unwrap();
    assert!(line.contains("ConnectionLost"), "{line}");
    assert!(line.contains("TAINTED · AGENT LOST"), "{line}");

    // The rogue scan reports it, once.
    for new in [true, false] {
        let rogue = w.command(&["rogue", "--json"]).output().unwrap();
        let findings: serde_json::Value = serde_json::from_slice(&rogue.stdout).unwrap();
        let lost: Vec<&serde_json::Value> = findings
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["finding"] == "agent_lost_while_tainted")
            .collect();
        assert_eq!(lost.len(), 1, "{findings}");
        assert_eq!(lost[0]["instance"], node.as_str());
        assert_eq!(lost[0]["why"], "connection_lost");
        assert_eq!(lost[0]["request"], id.as_str());
        assert_eq!(lost[0]["new"], new, "{findings}");
    }
    let kinds = w.audit_kinds();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "agent_lost_while_tainted")
            .count(),
        1,
        "{kinds:?}"
    );

    // The reaper replaces it all the same, once.
    let reap = w.command(&["reap", "--json"]).output().unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&reap.stdout).unwrap();
    assert!(reap.status.success(), "{rows}");
    assert_eq!(rows[0]["target"], node.as_str(), "{rows}");
    assert_eq!(rows[0]["outcome"], "completed", "{rows}");
    assert!(!w.lab.nodes().iter().any(|n| n.id == node), "not reaped");
    let again = w.command(&["reap", "--json"]).output().unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(rows, serde_json::json!([]));
    w.lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_runs_one_command_with_its_streams_apart_and_its_exit_status() {
    let mut w = World::new().await;
    let node = w.lab.nodes()[0].id.clone();
    let id = w.approved(&node);
    let out = w.open_command(&id, &["sh", "-c", "echo out; echo err >&2; exit 3"], "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stdout, "out\n",
        "only the command's stdout on stdout; stderr:\n{stderr}"
    );
    assert!(stderr.lines().any(|l| l == "err"), "{stderr}");
    assert_eq!(
        out.status.code(),
        Some(3),
        "the command's status:\n{stderr}"
    );
    assert!(stderr.contains("recording sealed"), "{stderr}");
    assert!(!stdout.contains("EXIT_CODE") && !stderr.contains("EXIT_CODE"));
    let casts = w.recordings();
    assert_eq!(casts.len(), 1, "{casts:?}");
    let cast = std::fs::read_to_string(&casts[0]).unwrap();
    assert!(
        cast.contains("command: sh -c 'echo out; echo err >&2; exit 3'"),
        "{cast}"
    );
    assert!(cast.contains("out") && cast.contains("err"));
    assert_eq!(w.env.run(&["verify", casts[0].to_str().unwrap()]).code, 0);
    w.lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_a_command_opens_that_command_only() {
    let mut w = World::new().await;
    let node = w.lab.nodes()[0].id.clone();
    let id = w.approved_with(&node, &["--command", "sh -c 'exit 4'"]);
    // Approvers see the command.
    let shown = w.env.run(&["show", &id]).ok();
    assert!(
        shown.stdout.contains("command:   sh -c 'exit 4'"),
        "{}",
        shown.stdout
    );

    // Another command, or a shell, is refused before the node is touched.
    for argv in [&["sh", "-c", "exit 5"][..], &[]] {
        let out = if argv.is_empty() {
            w.open(&id, "hostname\n")
        } else {
            w.open_command(&id, argv, "")
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("approved for"), "{stderr}");
        let tags = &w.lab.nodes()[0].tags;
        assert!(tags.is_empty(), "nothing may touch the node: {tags:?}");
    }
    let shown = w.env.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(shown["request"]["state"], "approved");

    // The approved command runs, words compared as the agent splits them.
    let out = w.open_command(&id, &["sh", "-c", "exit 4"], "");
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A command with a control character is refused at request time.
    let bad = w.request(&node, &["--command", "echo a\nrm -rf /"]);
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    assert!(bad.stderr.contains("control character"), "{}", bad.stderr);
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

    // The same three were flagged live: audited as they ran, and told on the session's pane.
    let live = w.env.audit_of("command_flagged");
    let told: Vec<(&str, &str)> = live
        .iter()
        .map(|e| {
            assert_eq!(e["request_id"], id.as_str(), "{e}");
            (
                e["data"]["text"].as_str().unwrap(),
                e["data"]["severity"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        told,
        [
            ("sudo id", "medium"),
            ("echo \"rm -rf /tmp/x\"", "high"),
            ("history -c", "high"),
        ]
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("flagged (high): hiding tracks: history cleared: history -c"),
        "{said}"
    );
    w.lab.shutdown().await;
}

/// A pasted flood of flagged commands in a live session costs the session's budget of
/// `command_flagged` events and one summary, not one event each; the recording keeps them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_flagged_commands_is_audited_within_its_budget() {
    use pink_sombrero::recording::live_flags::MAX_LIVE_FLAGS;
    let mut w = World::new().await;
    let node = w.lab.nodes()[0].id.clone();
    let id = w.approved(&node);
    let pasted = MAX_LIVE_FLAGS + 25;
    let mut script: String = (0..pasted).map(|i| format!("sudo true {i}\n")).collect();
    script.push_str("exit\n");
    let out = w.open(&id, &script);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flagged = w.env.audit_of("command_flagged");
    assert_eq!(flagged.len(), MAX_LIVE_FLAGS + 1, "{flagged:?}");
    assert!(
        flagged[..MAX_LIVE_FLAGS]
            .iter()
            .all(|e| e["data"]["severity"] == "medium")
    );
    assert_eq!(flagged[MAX_LIVE_FLAGS]["data"]["suppressed"], true);
    // Every command is still in the recording for the review.
    let casts = w.recordings();
    let all = w
        .env
        .run(&[
            "commands",
            casts[0].to_str().unwrap(),
            "--flagged",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(all.as_array().unwrap().len(), pasted);
    w.lab.shutdown().await;
}
