//! `sombrero serve` as a real process on a real socket: identity from peer credentials, the
//! flow through client processes that hold no secrets, and a daemon killed mid-request.
//!
//! Distinct approvers need distinct peers. Running as root, client processes run under other
//! uids (mapped as `uid:N` in the policy's `[identities]`); otherwise those tests say so and
//! stop, and the mapping is covered at the unit level (`serve::identity` tests).

use crate::common::daemon::{Daemon, can_switch_uid, exists, own_user, request_args};

const REQUESTER: u32 = 61_001;
const APPROVER_A: u32 = 61_002;
const APPROVER_B: u32 = 61_003;
const STRANGER: u32 = 61_009;

/// rita requests, ann and bob approve; each is a uid of its own; the test's own user is enrolled
/// under its own name (so it maps to itself without a line).
fn team() -> Daemon {
    let me = own_user();
    let policy = format!(
        "requesters = [\"*\"]\napprovers = [\"*\"]\nrequest_ttl = \"20m\"\n[identities]\n\"uid:{REQUESTER}\" = \"rita\"\n\"uid:{APPROVER_A}\" = \"ann\"\n\"uid:{APPROVER_B}\" = \"bob\"\n"
    );
    let mut d = Daemon::new(
        &policy,
        &[
            ("rita", "requester"),
            ("ann", "approver"),
            ("bob", "approver"),
            (&me, "both"),
        ],
    );
    d.start();
    d
}

fn request_as(d: &mut Daemon, uid: u32, who: &str) -> String {
    let code = d.env.code(who);
    let mut args = request_args(&code);
    args.push("--json");
    let out = d.client(Some(uid), &args).ok().json();
    assert_eq!(out["requester"], who);
    assert_eq!(out["state"], "pending");
    out["id"].as_str().unwrap().to_string()
}

fn approve_as(d: &mut Daemon, uid: u32, who: &str, id: &str) -> serde_json::Value {
    let code = d.env.code(who);
    d.client(Some(uid), &["approve", id, "--code", &code, "--json"])
        .ok()
        .json()
}

#[test]
fn whoami_is_the_peer_os_user_and_strangers_are_refused() {
    let d = team();
    let (status, body) = d.http("GET", "/v1/whoami", "");
    assert_eq!(status, 200, "{body}");
    let me: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(me["user"], own_user().as_str());
    assert_eq!(me["external"], own_user().as_str());
    // SAFETY: getuid cannot fail.
    assert_eq!(me["via"]["uid"], unsafe { libc::getuid() });
    if !can_switch_uid() {
        eprintln!("not root: cannot run clients under other uids; stranger check skipped");
        return;
    }
    // A uid nobody mapped or enrolled gets nothing, not even the list.
    d.client(Some(STRANGER), &["list"])
        .refused(&format!("uid:{STRANGER} is not a sombrero user"));
    let log = d.log();
    assert!(log.contains("unknown identity refused"), "{log}");
}

#[test]
fn forged_actor_is_refused() {
    let mut d = team();
    let me = own_user();
    let code = d.env.code(&me);
    let mut forged = request_args(&code);
    forged.extend(["--as", "rita"]);
    d.client(None, &forged)
        .usage("cannot be used with a broker daemon");
    // The wire has no actor field at all: a body that names one is refused, not obeyed.
    let forged = format!(
        r#"{{"target":"i-0abc1234","reason":"database disk is full","incident":null,"duration_secs":600,"code":"{code}","requester":"rita"}}"#
    );
    let (status, body) = d.http("POST", "/v1/requests", &forged);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("unknown field `requester`"), "{body}");
    let listed = d.client(None, &["list", "--json"]).ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 0);
    // Enrolment (a new secret) never goes over the wire.
    d.client(None, &["user", "add", "mallory", "--role", "approver"])
        .usage("run `sombrero user add` on the broker host");
    let (status, body) = d.http("POST", "/v1/users", "{}");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("local_only"), "{body}");
}

#[test]
fn full_flow_with_requester_and_approvers_in_separate_processes() {
    if !can_switch_uid() {
        eprintln!("not root: distinct peers need other uids; covered by serve::identity tests");
        return;
    }
    let mut d = team();
    let id = request_as(&mut d, REQUESTER, "rita");
    // The requester cannot approve their own request, whatever they pass.
    let code = d.env.code("rita");
    d.client(Some(REQUESTER), &["approve", &id, "--code", &code])
        .refused("rita asked for request");
    let one = approve_as(&mut d, APPROVER_A, "ann", &id);
    assert_eq!(one["state"], "pending");
    // The same approver twice is refused (a second process, same peer).
    let code = d.env.code("ann");
    d.client(Some(APPROVER_A), &["approve", &id, "--code", &code])
        .refused("ann has already approved");
    let two = approve_as(&mut d, APPROVER_B, "bob", &id);
    assert_eq!(two["state"], "approved");
    let by: Vec<&str> = two["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["by"].as_str().unwrap())
        .collect();
    assert_eq!(by, ["ann", "bob"]);
    let shown = d.client(Some(APPROVER_B), &["show", &id]).ok();
    assert!(shown.stdout.contains("approved:  ann"), "{}", shown.stdout);
    assert!(
        shown.stdout.contains("request_approved"),
        "{}",
        shown.stdout
    );
    d.client(None, &["audit", "verify"])
        .ok()
        .stdout
        .contains("audit chain holds")
        .then_some(())
        .unwrap();
    let users = d.client(Some(REQUESTER), &["user", "list", "--json"]).ok();
    assert!(!users.stdout.contains(d.env.secret("ann")));
    assert!(!users.stdout.contains("secret"));
}

#[test]
fn daemon_killed_mid_request_loses_nothing() {
    if !can_switch_uid() {
        eprintln!("not root: distinct peers need other uids; covered by serve::identity tests");
        return;
    }
    let mut d = team();
    let id = request_as(&mut d, REQUESTER, "rita");
    let one = approve_as(&mut d, APPROVER_A, "ann", &id);
    assert_eq!(one["approvals"].as_array().unwrap().len(), 1);
    d.kill9();
    assert!(exists(&d.socket()), "SIGKILL leaves the socket file behind");
    // The stale socket is replaced; the first approval is still there.
    d.start();
    let two = approve_as(&mut d, APPROVER_B, "bob", &id);
    assert_eq!(two["state"], "approved");
    assert_eq!(two["approvals"].as_array().unwrap().len(), 2);
    d.client(None, &["audit", "verify"]).ok();
}

#[test]
fn socket_mode_live_daemon_and_clean_shutdown() {
    use std::os::unix::fs::PermissionsExt;
    let mut d = team();
    let mode = std::fs::metadata(d.socket()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);
    // A second daemon on a live socket is refused and leaves it alone.
    let out = d.serve_command(&d.url()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another broker is listening"));
    let (status, _) = d.http("GET", "/v1/revision", "");
    assert_eq!(status, 200);
    // TCP only with TLS (tests/serve/tcp.rs covers it).
    let out = d.serve_command("tcp://127.0.0.1:0").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-cert"));
    // A TLS broker nobody listens on: unreachable (exit 1), not a local data dir.
    let mut tcp = d.env.command(&["--broker", "tcp://127.0.0.1:9", "list"]);
    let out = crate::common::daemon::run_command(&mut tcp);
    out.refused("cannot reach the broker at tcp://127.0.0.1:9");
    let status = d.terminate();
    assert!(status.success(), "{status:?}");
    assert!(!exists(&d.socket()), "the socket is removed on SIGTERM");
    let log = d.log();
    assert!(log.contains("shutting down"), "{log}");
}

#[test]
fn long_poll_wakes_on_a_change() {
    let mut d = team();
    let (_, body) = d.http("GET", "/v1/revision", "");
    let rev: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rev = rev["revision"].as_u64().unwrap();
    let url = d.url();
    let waiter = std::thread::spawn(move || {
        use pink_sombrero::api::BrokerApi;
        let b = pink_sombrero::remote::RemoteBroker::connect(&url.parse().unwrap()).unwrap();
        b.wait_revision(rev, std::time::Duration::from_secs(20))
            .unwrap()
    });
    let me = own_user();
    let code = d.env.code(&me);
    d.client(None, &request_args(&code)).ok();
    let after = waiter.join().unwrap();
    assert!(after > rev, "{after} > {rev}");
}

#[test]
fn a_refusal_through_the_daemon_stays_typed() {
    use pink_sombrero::api::BrokerApi;
    use pink_sombrero::broker::BrokerError;
    use pink_sombrero::request::{NewRequest, Refusal};
    let mut d = team();
    let me = own_user();
    let short = NewRequest {
        requester: me.clone(),
        target: "i-0abc1234".into(),
        reason: "disk".into(),
        incident: None,
        duration: std::time::Duration::from_secs(20 * 60),
        command: None,
    };
    let url = d.url();
    let code = d.env.code(&me);
    let got = std::thread::spawn(move || {
        let b = pink_sombrero::remote::RemoteBroker::connect(&url.parse().unwrap()).unwrap();
        b.create_request(short, &code)
    })
    .join()
    .unwrap();
    // The client holds the broker's own refusal, not a kind and a string.
    match got {
        Err(BrokerError::Refused(Refusal::ReasonTooShort { got: 4, min })) => assert!(min > 4),
        other => panic!("not the typed refusal: {other:?}"),
    }
    // On the wire it is a field of the error body, beside the message older clients read.
    // Rules come before the code, so the refused request above spent no code.
    let code = d.env.code(&me);
    let body = format!(
        r#"{{"target":"i-0abc1234","reason":"disk","incident":null,"duration_secs":1200,"code":"{code}"}}"#
    );
    let (status, reply) = d.http("POST", "/v1/requests", &body);
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["kind"], "refused", "{status} {reply}");
    assert_eq!(reply["refusal"]["refusal"], "reason_too_short", "{reply}");
    assert!(
        reply["message"].as_str().unwrap().contains("characters"),
        "{reply}"
    );
}

/// The test's own user is a requester only; rita (a uid of her own) a requester, ann the one
/// approver and reviewer. Both requesters have a request: (daemon, own request, rita's).
fn requesters_only() -> Option<(Daemon, String, String)> {
    if !can_switch_uid() {
        eprintln!(
            "not root: a second requester needs another uid; covered by serve::visibility tests"
        );
        return None;
    }
    let me = own_user();
    let policy = format!(
        "requesters = [\"*\"]\napprovers = [\"ann\"]\nreviewers = [\"ann\"]\n[identities]\n\"uid:{REQUESTER}\" = \"rita\"\n\"uid:{APPROVER_A}\" = \"ann\"\n"
    );
    let mut d = Daemon::new(
        &policy,
        &[(&me, "requester"), ("rita", "requester"), ("ann", "both")],
    );
    d.start();
    let mine = request_as_own(&mut d);
    let ritas = request_as(&mut d, REQUESTER, "rita");
    Some((d, mine, ritas))
}

fn request_as_own(d: &mut Daemon) -> String {
    let code = d.env.code(&own_user());
    let mut args = request_args(&code);
    args.push("--json");
    let out = d.client(None, &args).ok().json();
    out["id"].as_str().unwrap().to_string()
}

#[test]
fn a_requester_reads_only_their_own_events_and_no_identity_mappings() {
    let Some((d, mine, ritas)) = requesters_only() else {
        return;
    };
    let me = own_user();
    // The policy without its [identities] table (uids and ARNs of others).
    let (status, body) = d.http("GET", "/v1/policy", "");
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains(&format!("uid:{REQUESTER}")), "{body}");
    assert!(body.contains("withheld"), "{body}");
    // The audit log: only events of their own request or by themselves.
    let (status, body) = d.http("GET", "/v1/audit?after=0&limit=1000", "");
    assert_eq!(status, 200, "{body}");
    let events: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert!(!events.is_empty());
    for e in &events {
        assert!(
            e["actor"] == me.as_str() || e["request_id"] == mine.as_str(),
            "someone else's event shown: {e}"
        );
    }
    // Paging one event at a time finds the same events: a page of the log with none of theirs
    // is skipped on the broker, not answered empty (which a client reads as the end).
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let (status, body) = d.http("GET", &format!("/v1/audit?after={after}&limit=1"), "");
        assert_eq!(status, 200, "{body}");
        let page: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        assert!(page.len() <= 1, "{body}");
        let Some(e) = page.last() else { break };
        after = e["seq"].as_u64().unwrap();
        paged.extend(page);
    }
    assert_eq!(paged, events, "paging one by one lost events");
    // Someone else's request's events: refused; their own: shown.
    let (status, body) = d.http("GET", &format!("/v1/requests/{ritas}/events"), "");
    assert_eq!(status, 403, "{body}");
    let (status, body) = d.http("GET", &format!("/v1/requests/{mine}/events"), "");
    assert_eq!(status, 200, "{body}");
    // An approver (ann) sees everything, rita's events included.
    let all = d.client(Some(APPROVER_A), &["audit", "export"]).ok().stdout;
    assert!(all.contains(&ritas), "{all}");
    let policy = d
        .client(Some(APPROVER_A), &["policy", "check", "--json"])
        .ok()
        .stdout;
    assert!(policy.contains(&format!("uid:{REQUESTER}")), "{policy}");
}

#[test]
fn a_denial_without_a_comment_is_refused_on_the_wire() {
    let Some((d, _, ritas)) = requesters_only() else {
        return;
    };
    // The comment is checked before the code or the role: nothing is spent or audited.
    let code = "123456";
    for body in [
        format!(r#"{{"code":"{code}"}}"#),
        format!(r#"{{"code":"{code}","comment":"  "}}"#),
    ] {
        let (status, reply) = d.http("POST", &format!("/v1/requests/{ritas}/deny"), &body);
        assert_eq!(status, 400, "{reply}");
        assert!(reply.contains("needs a comment"), "{reply}");
    }
    // Through the CLI as the approver: the request is still pending.
    let shown = d
        .client(Some(APPROVER_A), &["show", &ritas, "--json"])
        .ok()
        .json();
    assert_eq!(shown["request"]["state"], "pending", "{shown}");
}

#[test]
fn implicit_identities_off_refuses_the_os_name_mapping() {
    let d = Daemon::started_for_me(
        "requesters = [\"*\"]\napprovers = [\"*\"]\nimplicit_identities = false\n",
    );
    let (status, body) = d.http("GET", "/v1/whoami", "");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("is not a sombrero user"), "{body}");
    d.client(None, &["list"]).refused("is not a sombrero user");
}

/// One raw POST that tolerates the daemon answering (and closing) before the whole body is
/// sent: (status, body), status 0 when nothing came back.
fn post_big(d: &Daemon, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = s
        .write_all(head.as_bytes())
        .and_then(|()| s.write_all(body.as_bytes()));
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn data_dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some(if m.is_dir() {
                data_dir_size(&e.path())
            } else {
                m.len()
            })
        })
        .sum()
}

#[test]
fn hostile_fields_are_refused_by_the_daemon_before_anything_is_stored() {
    let mut d = team();
    let me = own_user();
    let audited = |d: &Daemon| {
        let (status, body) = d.http("GET", "/v1/audit/verify", "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["events"]
            .as_u64()
            .unwrap()
    };
    let events = audited(&d);
    let size = data_dir_size(d.env.path());
    let code = d.env.code(&me);
    let forged = "\x1b[s\x1b[1A\x1b[31G i-0aaaaaaaaaaaaaaaa \x1b[u";
    let long = "x".repeat(501);
    for (target, reason, incident, needle) in [
        (
            "i-0abc1234",
            forged,
            None,
            "the reason holds character \\\\x1b",
        ),
        (
            "i-0abc1234",
            "the disk is \u{202e}lluf",
            None,
            "the reason holds",
        ),
        (
            "i-0abc1234",
            "the disk is full",
            Some("INC\u{85}"),
            "the incident holds",
        ),
        ("i-0abc1234", long.as_str(), None, "the reason is too long"),
        (
            "i-0abc\x1b[2J",
            "the disk is full",
            None,
            "the target is not an instance id",
        ),
    ] {
        let body = serde_json::json!({
            "target": target, "reason": reason, "incident": incident,
            "duration_secs": 600, "code": code,
        });
        let (status, text) = d.http("POST", "/v1/requests", &body.to_string());
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("\"kind\":\"input\""), "{text}");
        assert!(text.contains(needle), "{needle} not in {text}");
        assert!(
            !text.contains("\\u001b") && !text.contains('\u{202e}'),
            "{text}"
        );
    }
    // A 1.9 MB target with a wrong code, five times: refused (by shape, or by the body limit),
    // never echoed, never stored.
    let wrong = d.env.wrong_code(&me);
    let target = format!("i-{}", "a".repeat(1_900_000));
    let body = serde_json::json!({
        "target": target, "reason": "the disk is full", "duration_secs": 600, "code": wrong,
    })
    .to_string();
    for _ in 0..5 {
        let (status, text) = post_big(&d, "/v1/requests", &body);
        assert!(matches!(status, 400 | 413), "{status}: {text}");
        assert!(
            text.len() < 500,
            "the refusal echoed the target: {} bytes",
            text.len()
        );
    }
    // The CLI through the daemon: exit 2, the field named.
    let mut args = request_args(&code);
    args[4] = forged;
    d.client(None, &args)
        .usage("the reason holds character \\x1b");

    assert_eq!(audited(&d), events, "a refused field was audited");
    let grown = data_dir_size(d.env.path()).saturating_sub(size);
    assert!(grown < 64 * 1024, "the data dir grew by {grown} bytes");
    // The code was never spent: it still creates a request.
    let (status, text) = d.http(
        "POST",
        "/v1/requests",
        &serde_json::json!({"target": "i-0abc1234", "reason": "the disk is full",
            "duration_secs": 600, "code": code})
        .to_string(),
    );
    assert_eq!(status, 200, "{text}");
}

/// Bytes under `dir`, every file.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                dir_bytes(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}

fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap()
        / 1024
}

#[test]
fn oversized_and_repeated_refusals_leave_disk_and_memory_bounded() {
    let mut d = team();
    let before = dir_bytes(d.env.path());
    let create = |target: &str| {
        serde_json::json!({
            "target": target,
            "reason": "database disk is full",
            "duration_secs": 600,
            "code": "000000",
        })
        .to_string()
    };
    // The attack as found: 1.9 MB targets with a wrong code. Refused at the edge, unaudited.
    let huge = create(&format!("i-{}", "a".repeat(1_900_000)));
    for _ in 0..50 {
        assert_eq!(post_big(&d, "/v1/requests", &huge).0, 413);
    }
    // Wrong codes on a well-formed request: refused, audited up to the budget, then counted.
    let wrong = create("i-0abc1234");
    for _ in 0..50 {
        assert_eq!(post_big(&d, "/v1/requests", &wrong).0, 409);
    }
    let (status, body) = d.http("GET", "/v1/recordings", "");
    assert_eq!(status, 200, "{body}");
    let pid = d.child.as_ref().unwrap().id();
    assert!(rss_mib(pid) < 100, "{} MiB", rss_mib(pid));

    // Stopping records the minute's summary.
    assert!(d.terminate().success());
    let grown = dir_bytes(d.env.path()).saturating_sub(before);
    assert!(grown < 1_000_000, "the data dir grew by {grown} bytes");
    let summary = d.env.audit_of("refusals_suppressed");
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert_eq!(summary[0]["actor"], own_user().as_str());
    // 50 attempts: one is the lockout itself (always stored), 20 fill the budget.
    assert_eq!(summary[0]["data"]["suppressed"], 50 - 1 - 20);
    d.env.run(&["audit", "verify"]).ok();
}
