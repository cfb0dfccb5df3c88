//! Shared fixture for the foundation integration tests: a temp data dir, the real `sombrero`
//! binary, and TOTP codes computed from the enrolled secrets (never a bypass in the product).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use super::BIN;

pub struct Env {
    pub dir: tempfile::TempDir,
    /// `--store` for every command (`None`: the data dir's SQLite file).
    pub store: Option<String>,
    secrets: HashMap<String, String>,
    last_step: HashMap<String, u64>,
}

/// The current RFC 6238 time step (30 s).
pub fn current_step() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 30
}

/// The RFC 6238 code for `secret` at time step `step`, computed independently with totp-rs.
pub fn code_for_step(secret: &str, step: u64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret).unwrap();
    let t = totp_rs::Builder::new().with_secret(secret).build().unwrap();
    t.generate(step * 30).to_string()
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Starts every command at once (output captured), then waits for all of them.
pub fn race(commands: Vec<(String, Command)>) -> Vec<(String, Run)> {
    let children: Vec<_> = commands
        .into_iter()
        .map(|(w, mut c)| {
            let child = c
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (w, child)
        })
        .collect();
    children
        .into_iter()
        .map(|(w, c)| (w, Run::from(c.wait_with_output().unwrap())))
        .collect()
}

/// Every approver in `who` approves `id` at once, the i-th through `brokers[i % len]`.
pub fn race_approvals(brokers: &mut [&mut Env], id: &str, who: &[String]) -> Vec<(String, Run)> {
    let commands = who
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let env = &mut *brokers[i % brokers.len()];
            let code = env.code(w);
            (
                w.clone(),
                env.command(&["approve", id, "--as", w, "--code", &code]),
            )
        })
        .collect();
    race(commands)
}

/// `ap0`..`ap{approvers - 1}` all approve `id` at once through the brokers in turn: every one
/// succeeds, and each broker shows the request approved by all of them, once.
#[track_caller]
pub fn race_every_approval(brokers: &mut [&mut Env], id: &str, approvers: usize) {
    let who: Vec<String> = (0..approvers).map(|i| format!("ap{i}")).collect();
    for (w, run) in race_approvals(brokers, id, &who) {
        assert_eq!(run.code, 0, "{w}: {}", run.stderr);
    }
    // Every broker sees what the others wrote, and all agree.
    for env in brokers.iter() {
        let v = env.run(&["show", id, "--json"]).ok().json();
        assert_eq!(v["request"]["state"], "approved");
        let mut by = approvers_of(&v);
        by.sort();
        assert_eq!(by, who);
        assert_eq!(env.event_count(id, "approval_given"), approvers);
        assert_eq!(env.event_count(id, "request_approved"), 1);
    }
}

/// `ap0` approves `id` through the first broker, then `ap1`..`ap{approvers - 1}` race for the
/// last approval through all of them: exactly one wins, the request is approved by `ap0` and
/// the winner (as the last broker shows it), once, and every loser's refusal is recorded.
#[track_caller]
pub fn race_for_the_last_approval(brokers: &mut [&mut Env], id: &str, approvers: usize) {
    brokers[0].approve(id, "ap0").ok();
    let who: Vec<String> = (1..approvers).map(|i| format!("ap{i}")).collect();
    let results = race_approvals(brokers, id, &who);
    let winner = one_winner(&results);
    let last = brokers.len() - 1;
    let v = brokers[last].run(&["show", id, "--json"]).ok().json();
    assert_eq!(v["request"]["state"], "approved");
    assert_eq!(approvers_of(&v), vec!["ap0".to_string(), winner]);
    assert_eq!(brokers[0].event_count(id, "request_approved"), 1);
    assert_eq!(brokers[0].event_count(id, "refused"), approvers - 2);
}

/// Exactly one of the racers approved and every other was refused because the request
/// already had its approvals; returns the winner.
#[track_caller]
pub fn one_winner(results: &[(String, Run)]) -> String {
    let winners: Vec<&String> = results
        .iter()
        .filter(|(_, r)| r.code == 0)
        .map(|(w, _)| w)
        .collect();
    let all: Vec<_> = results
        .iter()
        .map(|(w, r)| (w, r.code, &r.stderr))
        .collect();
    assert_eq!(winners.len(), 1, "{all:?}");
    for (w, r) in results {
        if r.code != 0 {
            assert_eq!(r.code, 1, "{w}: {}", r.stderr);
            assert!(
                r.stderr.contains("already has the approvals it needs"),
                "{w}: {}",
                r.stderr
            );
        }
    }
    winners[0].clone()
}

/// The names on a request's approvals (from `show --json`), in order.
pub fn approvers_of(show: &serde_json::Value) -> Vec<String> {
    show["request"]["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["by"].as_str().unwrap().to_string())
        .collect()
}

impl Run {
    pub fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    fn failed(self, code: i32, needle: &str) -> Run {
        assert_eq!(
            self.code, code,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "expected {needle:?} in stderr: {}",
            self.stderr
        );
        self
    }

    /// Exit 1 (refused by a rule) with `needle` in the message.
    #[track_caller]
    pub fn refused(self, needle: &str) -> Run {
        self.failed(1, needle)
    }

    /// Exit 2 (usage or input error) with `needle` in the message.
    #[track_caller]
    pub fn usage(self, needle: &str) -> Run {
        self.failed(2, needle)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

impl Env {
    /// A fresh data dir with `policy` as its policy file.
    pub fn new(policy: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
        Env {
            dir,
            store: None,
            secrets: HashMap::new(),
            last_step: HashMap::new(),
        }
    }

    /// A fresh data dir with `policy` and `users` (name, role) enrolled and confirmed.
    pub fn enrolled(policy: &str, users: &[(&str, &str)]) -> Env {
        let mut env = Env::new(policy);
        for (name, role) in users {
            env.enrol(name, role);
        }
        env
    }

    /// A fresh data dir with `policy` whose commands use the store `store` (`--store`).
    pub fn with_store(policy: &str, store: &str) -> Env {
        Env {
            store: Some(store.to_string()),
            ..Env::new(policy)
        }
    }

    /// A second broker on the same store: its own data dir with a copy of the policy file,
    /// and the enrolled secrets and used steps known so far.
    pub fn sibling(&self) -> Env {
        let policy = std::fs::read_to_string(self.dir.path().join("policy.toml")).unwrap();
        Env {
            store: self.store.clone(),
            secrets: self.secrets.clone(),
            last_step: self.last_step.clone(),
            ..Env::new(&policy)
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("sombrero.db")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--data-dir").arg(self.dir.path());
        if let Some(store) = &self.store {
            c.arg("--store").arg(store);
        }
        c.args(args)
            .env_remove("SOMBRERO_POLICY")
            .env_remove("SOMBRERO_DATA_DIR")
            .env_remove("SOMBRERO_STORE")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    /// Enrols `name` with `role` through `user add --json`, keeps the secret and confirms the
    /// enrolment (`user confirm`), as the person would with their authenticator.
    pub fn enrol(&mut self, name: &str, role: &str) {
        let out = self.enrol_unconfirmed(name, role);
        assert_eq!(out["name"], name);
        self.confirm(name);
    }

    /// `user add NAME --role ROLE --json` only: the user exists but may not act yet.
    pub fn enrol_unconfirmed(&mut self, name: &str, role: &str) -> serde_json::Value {
        let v = self
            .run(&["user", "add", name, "--role", role, "--json"])
            .ok()
            .json();
        let secret = v["secret_base32"].as_str().unwrap().to_string();
        assert!(v["otpauth_uri"].as_str().unwrap().contains(&secret));
        self.secrets.insert(name.to_string(), secret);
        v
    }

    /// `user confirm NAME` with the code of the previous step (still within the skew), so the
    /// current and next steps stay free for the test's own codes. Not in a step's last 3 s:
    /// the previous step would leave the skew window on the way.
    pub fn confirm(&mut self, name: &str) {
        let in_step = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
                % 30
        };
        while in_step() >= 27 {
            std::thread::sleep(Duration::from_millis(250));
        }
        let step = current_step() - 1;
        let code = code_for_step(&self.secrets[name], step);
        self.run(&["user", "confirm", name, "--code", &code]).ok();
        let last = self.last_step.entry(name.to_string()).or_insert(step);
        *last = (*last).max(step);
    }

    pub fn secret(&self, name: &str) -> &str {
        &self.secrets[name]
    }

    /// Replaces `name`'s secret through `user rotate --json`; returns the old one.
    pub fn rotate(&mut self, name: &str) -> String {
        let v = self.run(&["user", "rotate", name, "--json"]).ok().json();
        let new = v["secret_base32"].as_str().unwrap().to_string();
        let old = self.secrets.insert(name.to_string(), new).unwrap();
        // The new secret starts with no used step on the broker.
        self.last_step.remove(name);
        self.confirm(name);
        old
    }

    /// A code for a step this user has not used yet (the current or next step, within the
    /// ±1 skew), waiting for the next step only when both are used.
    pub fn code(&mut self, name: &str) -> String {
        loop {
            let now = current_step();
            let next = self.last_step.get(name).map_or(now, |l| (l + 1).max(now));
            if next <= now + 1 {
                self.last_step.insert(name.to_string(), next);
                return code_for_step(&self.secrets[name], next);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// A code that is wrong for every step the server might accept now.
    pub fn wrong_code(&self, name: &str) -> String {
        let now = current_step();
        let valid: Vec<String> = (now - 2..=now + 2)
            .map(|s| code_for_step(&self.secrets[name], s))
            .collect();
        (0..1000)
            .map(|i| format!("{:06}", 100_000 + i * 7919 % 900_000))
            .find(|c| !valid.contains(c))
            .unwrap()
    }

    /// `sombrero request --target TARGET --reason REASON --as WHO --code CODE EXTRA...`.
    pub fn request_with_code(
        &self,
        target: &str,
        who: &str,
        reason: &str,
        code: &str,
        extra: &[&str],
    ) -> Run {
        let args = [
            "request", "--target", target, "--reason", reason, "--as", who, "--code", code,
        ];
        self.run(&[&args[..], extra].concat())
    }

    /// `sombrero request` as `who` with a fresh code and `extra` arguments.
    pub fn try_request(&mut self, who: &str, reason: &str, extra: &[&str]) -> Run {
        let code = self.code(who);
        self.request_with_code("i-0abc1234", who, reason, &code, extra)
    }

    /// `sombrero request` as `who` for 20 minutes; returns the new request's id.
    pub fn request(&mut self, who: &str) -> String {
        let out = self
            .try_request(
                who,
                "database disk is full",
                &["--duration", "20m", "--json"],
            )
            .ok();
        let v = out.json();
        assert_eq!(v["state"], "pending");
        v["id"].as_str().unwrap().to_string()
    }

    pub fn approve(&mut self, id: &str, who: &str) -> Run {
        let code = self.code(who);
        self.run(&["approve", id, "--as", who, "--code", &code, "--json"])
    }

    /// `sombrero VERB ID --as WHO --code CODE --comment COMMENT` (VERB: approve or deny).
    pub fn decide(&self, verb: &str, id: &str, who: &str, code: &str, comment: &str) -> Run {
        self.run(&[verb, id, "--as", who, "--code", code, "--comment", comment])
    }

    /// A request by `requester` on `target` for 10 minutes, approved by `approvers`.
    pub fn approved(&mut self, target: &str, requester: &str, approvers: &[&str]) -> String {
        let code = self.code(requester);
        let extra = ["--duration", "10m", "--json"];
        let id = self
            .request_with_code(target, requester, "disk full on the primary", &code, &extra)
            .ok()
            .json()["id"]
            .as_str()
            .unwrap()
            .to_string();
        for who in approvers {
            self.approve(&id, who).ok();
        }
        id
    }

    /// `sombrero ARGS` on this data dir against the lab at `endpoint` (see [`lab_env`]).
    pub fn lab_command(&self, args: &[&str], endpoint: &str) -> Command {
        let mut c = self.command(args);
        lab_env(&mut c, endpoint);
        c
    }

    /// `sombrero open ID --as WHO --code C` (a fresh code) against the lab at `endpoint`.
    pub fn open_on_lab(&mut self, id: &str, who: &str, endpoint: &str) -> Command {
        let code = self.code(who);
        self.lab_command(&["open", id, "--as", who, "--code", &code], endpoint)
    }

    /// Every audit event, in order (`audit export`).
    pub fn audit_export(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["audit", "export"]).ok();
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The audit events of `kind`, in order.
    pub fn audit_of(&self, kind: &str) -> Vec<serde_json::Value> {
        let mut events = self.audit_export();
        events.retain(|e| e["kind"] == kind);
        events
    }

    /// The kinds of every audit event, in order.
    pub fn audit_kinds(&self) -> Vec<String> {
        let events = self.audit_export();
        let kinds = events
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string());
        kinds.collect()
    }

    /// How many of request `id`'s events (`show --json`) are of `kind`.
    pub fn event_count(&self, id: &str, kind: &str) -> usize {
        let v = self.run(&["show", id, "--json"]).ok().json();
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == kind)
            .count()
    }

    pub fn state(&self, id: &str) -> String {
        let v = self.run(&["show", id, "--json"]).ok().json();
        v["request"]["state"].as_str().unwrap().to_string()
    }
}

/// Points `c` at a lab's SSM endpoint with the lab's static credentials and nothing from the
/// host's AWS configuration.
pub fn lab_env(c: &mut Command, endpoint: &str) {
    c.arg("--endpoint-url")
        .arg(endpoint)
        // The lab answers the tagging API's search for tainted instances (it has none), so a
        // shared emulator's never leak in.
        .env("AWS_ENDPOINT_URL_RESOURCE_GROUPS_TAGGING_API", endpoint)
        .env("AWS_ACCESS_KEY_ID", "lab")
        .env("AWS_SECRET_ACCESS_KEY", "lab")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
}

pub const POLICY: &str = r#"
requesters = ["*"]
approvers = ["*"]
approvals_required = 2
request_ttl = "30m"
grant_window = "15m"
max_session_duration = "1h"
reason_min_length = 10
"#;

/// The lab's replacement automation, as a policy line.
pub const LAB_REPLACEMENT: &str = "replacement = \"automation:PinkSombrero-ReplaceNode\"\n";

/// A team on the lab: anyone requests, ann and bob approve (two needed), rev reviews, the
/// lab's automation replaces a node after its session.
pub const TEAM_POLICY: &str = r#"
requesters = ["*"]
approvers = ["ann", "bob"]
reviewers = ["rev"]
approvals_required = 2
request_ttl = "30m"
grant_window = "15m"
max_session_duration = "1h"
reason_min_length = 10
replacement = "automation:PinkSombrero-ReplaceNode"
"#;

/// The roles of [`TEAM_POLICY`]'s people.
pub const TEAM: [(&str, &str); 4] = [
    ("rita", "requester"),
    ("ann", "approver"),
    ("bob", "approver"),
    ("rev", "reviewer"),
];

/// What `policy check` says when no policy file exists yet.
pub const DEFAULT_POLICY_HINT: &str = "the first `sombrero user add` writes a documented default";
