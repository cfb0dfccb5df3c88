//! Notifications end to end: real HTTP receivers on loopback (a webhook receiver that checks
//! the HMAC signature, a Slack-shaped one), a real daemon delivering from its outbox.
//! Self-contained so it can move to another test binary: it needs only the foundation and
//! serve fixtures.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::common::daemon::{Daemon, can_switch_uid, own_user, request_args};

const SECRET: &str = "test-webhook-secret-0123456789";
/// A token in the Slack URL's path: the credential that must never be shown.
const SLACK_TOKEN: &str = "T000/B000/SLACKTOKENzzzz";

/// One POST a receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Got {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// An HTTP/1.1 receiver on loopback: records each POST, answers 200 after `delay`.
pub struct Receiver {
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Vec<Got>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    /// Listens on a free loopback port.
    pub fn start(delay: Duration) -> Receiver {
        Receiver::on(TcpListener::bind("127.0.0.1:0").unwrap(), delay)
    }

    /// Listens on `addr` (a port reserved earlier).
    pub fn at(addr: SocketAddr) -> Receiver {
        Receiver::on(TcpListener::bind(addr).unwrap(), Duration::ZERO)
    }

    fn on(listener: TcpListener, delay: Duration) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let g = g.clone();
                std::thread::spawn(move || serve(conn, &g, delay));
            }
        });
        Receiver { addr, got, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `want` holds for what arrived (at most `within`).
    pub fn wait_for(&self, within: Duration, want: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let until = Instant::now() + within;
        loop {
            let got = self.got();
            if want(&got) || Instant::now() > until {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads requests off one connection (keep-alive) and answers each.
fn serve(conn: TcpStream, got: &Mutex<Vec<Got>>, delay: Duration) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or("").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        std::thread::sleep(delay);
        got.lock().unwrap().push(Got {
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        if w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

/// A loopback address nothing listens on (yet).
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Checks a webhook delivery's signature as a receiver would.
fn verify_signature(g: &Got) {
    let ts = &g.headers["x-pink-sombrero-timestamp"];
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.{}", g.body).as_bytes());
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(g.headers["x-pink-sombrero-signature"], want, "{g:?}");
}

/// A policy with a webhook target (every event in `events`) at `hook` and a Slack target for
/// new requests and escalations at `slack`; the secret sits in a file of `dir`.
fn policy(dir: &std::path::Path, hook: &str, slack: &str, events: &str, extra: &str) -> String {
    let secret: PathBuf = dir.join("webhook.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    format!(
        "requesters = [\"*\"]\napprovers = [\"*\"]\nrequest_ttl = \"20m\"\n{extra}\n\
         [[notify]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{hook}\"\nsecret_file = \"{}\"\nevents = [{events}]\n\
         [[notify]]\nname = \"chat\"\nkind = \"slack\"\nurl = \"{slack}\"\nevents = [\"request_created\", \"escalation\"]\n",
        secret.display()
    )
}

fn team(policy: &str) -> Daemon {
    Daemon::new(
        policy,
        &[
            ("rita", "requester"),
            ("ann", "approver"),
            ("bob", "approver"),
        ],
    )
}

fn events_of(got: &[Got]) -> Vec<String> {
    got.iter()
        .map(|g| g.json()["event"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn each_event_kind_reaches_its_targets_signed_and_once() {
    let hook = Receiver::start(Duration::ZERO);
    let chat = Receiver::start(Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let events = "\"request_created\", \"approval_given\", \"request_approved\", \"request_denied\", \"escalation\"";
    let p = policy(
        dir.path(),
        &hook.url("/hook"),
        &chat.url(&format!("/services/{SLACK_TOKEN}")),
        events,
        "escalate_after = \"2s\"",
    );
    let mut d = team(&p);
    d.start();
    // Requests made next to the daemon on its store: its worker delivers them.
    let approved = d.env.request("rita");
    d.env.approve(&approved, "ann").ok();
    d.env.approve(&approved, "bob").ok();
    let denied = d.env.request("rita");
    let code = d.env.code("ann");
    d.env
        .run(&[
            "deny",
            &denied,
            "--as",
            "ann",
            "--code",
            &code,
            "--comment",
            "not now",
        ])
        .ok();
    // One left waiting: it escalates after 2 s (the sweep runs every 5 s).
    let waiting = d.env.request("rita");
    let got = hook.wait_for(Duration::from_secs(20), |g| {
        events_of(g).iter().any(|e| e == "escalation") && g.len() >= 8
    });
    let evs = events_of(&got);
    for want in [
        "request_created",
        "approval_given",
        "request_approved",
        "request_denied",
        "escalation",
    ] {
        assert!(evs.iter().any(|e| e == want), "{want} missing: {evs:?}");
    }
    assert_eq!(evs.iter().filter(|e| *e == "request_created").count(), 3);
    assert_eq!(evs.iter().filter(|e| *e == "approval_given").count(), 2);
    let mut keys = std::collections::BTreeSet::new();
    for g in &got {
        verify_signature(g);
        assert_eq!(g.path, "/hook");
        assert_eq!(g.headers["x-pink-sombrero-event"], g.json()["event"]);
        assert_eq!(g.headers["idempotency-key"], g.json()["id"]);
        assert!(
            keys.insert(g.headers["idempotency-key"].clone()),
            "repeat: {g:?}"
        );
    }
    let created = got
        .iter()
        .find(|g| g.json()["event"] == "request_created")
        .unwrap()
        .json();
    assert_eq!(created["request"]["requester"], "rita");
    assert_eq!(created["request"]["reason"], "database disk is full");
    // Slack: the new requests in its message shape, with the command to approve.
    let slack = chat.wait_for(Duration::from_secs(10), |g| g.len() >= 2);
    let texts: Vec<String> = slack
        .iter()
        .map(|g| g.json()["text"].as_str().unwrap().to_string())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("rita") && t.contains(&format!("sombrero approve {approved}"))),
        "{texts:?}"
    );
    assert!(
        slack
            .iter()
            .all(|g| !g.headers.contains_key("x-pink-sombrero-signature")),
        "a Slack target has no secret to sign with"
    );
    // Only the request still pending escalates, each step once.
    let escalated: Vec<serde_json::Value> = d
        .env
        .audit_export()
        .into_iter()
        .filter(|e| e["kind"] == "request_escalated")
        .collect();
    assert!(!escalated.is_empty());
    assert!(
        escalated
            .iter()
            .all(|e| e["request_id"] == waiting.as_str()),
        "{escalated:?}"
    );
    let steps: Vec<u64> = escalated
        .iter()
        .map(|e| e["data"]["step"].as_u64().unwrap())
        .collect();
    assert!(
        steps.windows(2).all(|w| w[0] < w[1]),
        "a step fired twice: {steps:?}"
    );
    // The daemon's log never holds the Slack token or the secret.
    let log = d.log();
    assert!(
        !log.contains("SLACKTOKEN") && !log.contains(SECRET),
        "{log}"
    );
}

#[test]
fn receiver_down_then_up_gets_it_once_after_a_restart() {
    let addr = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}/hook");
    let p = policy(dir.path(), &url, &url, "\"request_created\"", "");
    // Only the webhook: the Slack target would post to the same dead address.
    let p = p
        .split("[[notify]]\nname = \"chat\"")
        .next()
        .unwrap()
        .to_string();
    let mut d = team(&p);
    d.start();
    let id = d.env.request("rita");
    // The first attempt fails and is audited, once, without the URL.
    let until = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let f: Vec<_> = d
            .env
            .audit_export()
            .into_iter()
            .filter(|e| e["kind"] == "notification_failed")
            .collect();
        if !f.is_empty() || Instant::now() > until {
            break f;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["data"]["final"], false);
    assert_eq!(failed[0]["request_id"], id.as_str());
    assert!(!failed[0].to_string().contains(&addr.port().to_string()));
    assert_eq!(d.terminate().code(), Some(0));
    // Receiver up, daemon back: the queued notification arrives, once.
    let hook = Receiver::at(addr);
    d.start();
    let got = hook.wait_for(Duration::from_secs(20), |g| !g.is_empty());
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].json()["request"]["id"], id.as_str());
    verify_signature(&got[0]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(hook.got().len(), 1, "delivered again");
}

#[test]
fn a_slow_receiver_does_not_slow_approvals() {
    if !can_switch_uid() {
        eprintln!("not root: cannot run clients under other uids; skipped");
        return;
    }
    let hook = Receiver::start(Duration::from_secs(8));
    let dir = tempfile::tempdir().unwrap();
    let events = "\"request_created\", \"approval_given\", \"request_approved\"";
    let p = policy(
        dir.path(),
        &hook.url("/hook"),
        &hook.url("/slack"),
        events,
        "",
    );
    let p = format!(
        "{p}[identities]\n\"uid:62001\" = \"rita\"\n\"uid:62002\" = \"ann\"\n\"uid:62003\" = \"bob\"\n"
    );
    let mut d = team(&p);
    d.start();
    let timed = |d: &mut Daemon, uid: u32, who: &str, args: &[&str]| {
        let code = d.env.code(who);
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["--code", &code, "--json"]);
        let t = Instant::now();
        let out = d.client(Some(uid), &a).ok().json();
        (t.elapsed(), out)
    };
    // `request_args` without its code: `timed` adds a fresh one.
    let ask = request_args("");
    let (t0, created) = timed(&mut d, 62001, "rita", &ask[..ask.len() - 2]);
    let id = created["id"].as_str().unwrap().to_string();
    let (t1, _) = timed(&mut d, 62002, "ann", &["approve", &id]);
    let (t2, approved) = timed(&mut d, 62003, "bob", &["approve", &id]);
    assert_eq!(approved["state"], "approved");
    for t in [t0, t1, t2] {
        assert!(
            t < Duration::from_secs(4),
            "a call took {t:?} behind a slow receiver"
        );
    }
    // All of them still arrive (in parallel, each after the receiver's 8 s).
    let got = hook.wait_for(Duration::from_secs(25), |g| g.len() >= 5);
    assert!(got.len() >= 5, "{:?}", events_of(&got));
}

#[test]
fn urls_and_secrets_stay_out_of_policy_check_the_api_and_logs() {
    let live = Receiver::start(Duration::ZERO);
    let dead = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let p = policy(
        dir.path(),
        &live.url("/hook"),
        &format!("http://{dead}/services/{SLACK_TOKEN}"),
        "\"request_created\"",
        "",
    );
    // The test's own user is an approver: `notify test` through the daemon is theirs to run.
    let me = own_user();
    let mut d = Daemon::new(
        &p,
        &[("rita", "requester"), ("ann", "approver"), (&me, "both")],
    );
    for json in [false, true] {
        let mut args = vec!["policy", "check"];
        if json {
            args.push("--json");
        }
        let out = d.env.run(&args).ok().stdout;
        assert!(
            !out.contains("SLACKTOKEN") && !out.contains(SECRET),
            "{out}"
        );
        assert!(
            out.contains("webhook.secret"),
            "the secret's source is shown: {out}"
        );
    }
    d.start();
    let (status, body) = d.http("GET", "/v1/policy", "");
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("SLACKTOKEN"), "{body}");
    assert!(
        body.contains("[[notify]]") || body.contains("notify"),
        "{body}"
    );
    // The broker's own policy check through the API parses the redacted text.
    let out = d.client(None, &["policy", "check"]).ok().stdout;
    assert!(!out.contains("SLACKTOKEN"), "{out}");
    // notify test: one result per target, the live one delivered, the dead one not.
    let run = d.client(None, &["notify", "test", "--json"]);
    assert_eq!(run.code, 1, "one target is down: {}", run.stderr);
    let results: Vec<serde_json::Value> = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(results.len(), 2, "{results:?}");
    let by: HashMap<String, &serde_json::Value> = results
        .iter()
        .map(|r| (r["target"].as_str().unwrap().to_string(), r))
        .collect();
    assert_eq!(by["hook"]["delivered"], true);
    assert_eq!(by["chat"]["delivered"], false);
    assert!(!run.stdout.contains("SLACKTOKEN"), "{}", run.stdout);
    let got = live.wait_for(Duration::from_secs(5), |g| !g.is_empty());
    assert_eq!(got[0].json()["event"], "test");
    verify_signature(&got[0]);
    // A failing delivery is logged without its URL or secret.
    d.env.request("rita");
    std::thread::sleep(Duration::from_secs(3));
    let log = d.log();
    assert!(log.contains("notification not delivered"), "{log}");
    assert!(
        !log.contains("SLACKTOKEN") && !log.contains(SECRET),
        "{log}"
    );
}

mod review;

mod emergency;

/// A risky command typed in a live session reaches a target that lists `command_flagged`,
/// signed, with the command as the audit log recorded it.
#[test]
fn a_command_flagged_in_a_live_session_is_notified() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lab = rt
        .block_on(pink_sombrero::lab::start(
            pink_sombrero::lab::LabConfig::default(),
        ))
        .unwrap();
    let hook = Receiver::start(Duration::ZERO);
    let chat = Receiver::start(Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let p = policy(
        dir.path(),
        &hook.url("/hook"),
        &chat.url(&format!("/services/{SLACK_TOKEN}")),
        "\"command_flagged\"",
        "replacement = \"automation:PinkSombrero-ReplaceNode\"",
    );
    let mut d = team(&p);
    d.start();
    let target = lab.nodes()[0].id.clone();
    let id = d.env.approved(&target, "rita", &["ann", "bob"]);
    let mut open = d.env.open_on_lab(&id, "rita", &lab.endpoint_url());
    let out = crate::common::run_with_stdin(&mut open, b"hostname\nsudo id\nexit\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = hook.wait_for(Duration::from_secs(30), |g| {
        events_of(g).iter().any(|e| e == "command_flagged")
    });
    let flagged: Vec<&Got> = got
        .iter()
        .filter(|g| g.json()["event"] == "command_flagged")
        .collect();
    assert_eq!(flagged.len(), 1, "{:?}", events_of(&got));
    verify_signature(flagged[0]);
    let body = flagged[0].json();
    assert_eq!(body["audit"]["request_id"], id.as_str(), "{body}");
    assert_eq!(body["audit"]["data"]["text"], "sudo id", "{body}");
    assert_eq!(body["audit"]["data"]["severity"], "medium", "{body}");
    rt.block_on(lab.shutdown());
}
