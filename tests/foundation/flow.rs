//! The request lifecycle through the real binary: the dual-approval flow and every refusal.

use crate::common::cli::{Env, POLICY, code_for_step, current_step};

fn team() -> Env {
    Env::enrolled(
        POLICY,
        &[
            ("rita", "both"),
            ("ann", "approver"),
            ("bob", "approver"),
            ("cat", "approver"),
            ("rob", "requester"),
        ],
    )
}

#[test]
fn dual_approval_flow() {
    let mut env = team();
    let id = env.request("rita");
    assert!(id.starts_with("req-") && id.len() == 12, "{id}");

    let one = env.approve(&id, "ann").ok().json();
    assert_eq!(one["state"], "pending");
    assert_eq!(one["approvals"].as_array().unwrap().len(), 1);

    let two = env.approve(&id, "bob").ok().json();
    assert_eq!(two["state"], "approved");
    assert!(two["grant_expires_at"].is_string());

    let listed = env
        .run(&["list", "--state", "approved", "--json"])
        .ok()
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());

    let shown = env.run(&["show", &id]).ok();
    assert!(shown.stdout.contains("approved:  ann"), "{}", shown.stdout);
    assert!(
        shown.stdout.contains("request_approved"),
        "{}",
        shown.stdout
    );

    let verified = env.run(&["audit", "verify"]).ok();
    assert!(
        verified.stdout.contains("audit chain holds"),
        "{}",
        verified.stdout
    );

    let kinds = env.audit_kinds();
    for k in [
        "request_created",
        "approval_given",
        "request_approved",
        "mfa_accepted",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    // Secrets never reach the audit log.
    let export = env.run(&["audit", "export"]).ok();
    assert!(!export.stdout.contains(env.secret("ann")));
}

#[test]
fn code_from_stdin_when_not_a_terminal() {
    let mut env = team();
    let code = env.code("rita");
    let mut child = env
        .command(&[
            "request",
            "--target",
            "i-0abc1234",
            "--reason",
            "database disk is full",
            "--as",
            "rita",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{code}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("pending") && text.contains("0 of 2 approvals"),
        "{text}"
    );
}

#[test]
fn self_duplicate_and_non_approver_are_refused() {
    let mut env = team();
    let id = env.request("rita");
    env.approve(&id, "rita")
        .refused("cannot approve or deny it");
    env.approve(&id, "ann").ok();
    env.approve(&id, "ann").refused("has already approved");
    env.approve(&id, "rob").refused("rob is not an approver");
    let code = "123456";
    env.run(&["approve", &id, "--as", "zed", "--code", code])
        .refused("zed is not an approver");
    assert_eq!(env.state(&id), "pending");
    env.approve(&id, "bob").ok();
    assert_eq!(env.state(&id), "approved");
    env.approve(&id, "cat")
        .refused("already has the approvals it needs");
}

#[test]
fn replayed_code_is_refused() {
    let mut env = team();
    let a = env.request("rita");
    let b = env.request("rob");
    let code = env.code("ann");
    env.run(&["approve", &a, "--as", "ann", "--code", &code])
        .ok();
    env.run(&["approve", &b, "--as", "ann", "--code", &code])
        .refused("already used");
    let events = env.run(&["audit", "export"]).ok().stdout;
    assert!(events.contains("\"mfa_replayed\""));
}

#[test]
fn five_wrong_codes_lock_the_user_out() {
    let mut env = team();
    let id = env.request("rita");
    for left in (1..=4).rev() {
        let wrong = env.wrong_code("ann");
        env.run(&["approve", &id, "--as", "ann", "--code", &wrong])
            .refused(&format!("{left} tries left"));
    }
    let wrong = env.wrong_code("ann");
    env.run(&["approve", &id, "--as", "ann", "--code", &wrong])
        .refused("locked out");
    // Now even a good code is refused.
    env.approve(&id, "ann").refused("locked out");
    let users = env.run(&["user", "list", "--json"]).ok().json();
    let ann = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "ann")
        .unwrap();
    assert!(ann["locked_until"].is_string());
    let events = env.run(&["audit", "export"]).ok().stdout;
    assert!(events.contains("\"mfa_locked_out\"") && events.contains("\"mfa_locked\""));
    assert_eq!(env.state(&id), "pending");
}

#[test]
fn approval_after_deny_is_refused() {
    let mut env = team();
    let id = env.request("rita");
    let code = env.code("bob");
    let denied = env
        .run(&[
            "deny",
            &id,
            "--as",
            "bob",
            "--code",
            &code,
            "--comment",
            "use the runbook",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(denied["state"], "denied");
    env.approve(&id, "cat").refused("is denied");
}

#[test]
fn cancel_only_by_the_requester() {
    let mut env = team();
    let id = env.request("rita");
    env.run(&["cancel", &id, "--as", "ann"])
        .refused("only rita");
    let v = env
        .run(&["cancel", &id, "--as", "rita", "--json"])
        .ok()
        .json();
    assert_eq!(v["state"], "cancelled");
    env.approve(&id, "ann").refused("is cancelled");
}

#[test]
fn approval_after_expiry_is_refused() {
    let mut env = Env::new(&POLICY.replace("request_ttl = \"30m\"", "request_ttl = \"2s\""));
    env.enrol("rita", "requester");
    env.enrol("ann", "approver");
    let id = env.request("rita");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    env.approve(&id, "ann").refused("timed out");
    assert_eq!(env.state(&id), "expired");
}

#[test]
fn request_rules_from_the_policy() {
    let mut env = Env::new(&format!("{POLICY}incident_pattern = \"^INC-[0-9]+$\"\n"));
    env.enrol("rita", "requester");
    env.enrol("ann", "approver");
    env.try_request("rita", "too short", &[])
        .refused("at least 10");
    env.try_request("rita", "database disk is full", &[])
        .refused("--incident");
    // Enrolled only as an approver: the policy's "*" does not make ann a requester.
    env.try_request("ann", "database disk is full", &["--incident", "INC-7"])
        .refused("ann may not request");
}

#[test]
fn input_errors_exit_2() {
    let mut env = team();
    env.run(&["show", "req-ffffffff"])
        .usage("no request req-ffffffff");
    env.run(&["list", "--state", "sideways"]).usage("--state");
    env.try_request("rita", "database disk is full", &["--duration", "soon"])
        .usage("--duration");
    env.run(&["user", "add", "x", "--role", "wizard"])
        .usage("--role");
    env.run(&["approve", "req-ffffffff", "--as", "ann"])
        .usage("no TOTP code");
}

#[test]
fn interactive_enrolment_confirms_with_a_code_from_stdin() {
    let env = Env::new(POLICY);
    // Enrol without --json: the secret is printed, then one code is read from stdin.
    let mut child = env
        .command(&["user", "add", "dana", "--role", "approver"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read the printed secret from the first lines, then answer with a code.
    use std::io::{BufRead, BufReader, Write};
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut secret = None;
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 {
        if let Some(s) = line.trim().strip_prefix("secret: ") {
            secret = Some(s.to_string());
            break;
        }
        line.clear();
    }
    let secret = secret.expect("secret printed");
    let code = crate::common::cli::code_for_step(&secret, crate::common::cli::current_step());
    writeln!(child.stdin.take().unwrap(), "{code}").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(child.wait().unwrap().success(), "{rest}");
    assert!(rest.contains("Confirmed"), "{rest}");
    let users = env.run(&["user", "list", "--json"]).ok().json();
    assert!(users[0]["confirmed_at"].is_string());
}

#[test]
fn a_removed_approvers_approval_no_longer_counts() {
    let mut env = team();
    let id = env.request("rita");
    env.approve(&id, "ann").ok();
    let removed = env.run(&["user", "remove", "ann"]).ok().stdout;
    assert!(removed.contains("Removed ann"), "{removed}");
    // bob's approval would be the second; ann's no longer counts, so it is one of two.
    let after = env.approve(&id, "bob").ok().json();
    assert_eq!(after["state"], "pending", "{after}");
    // A third, current approver completes it.
    let done = env.approve(&id, "cat").ok().json();
    assert_eq!(done["state"], "approved", "{done}");
    // ann can no longer act at all, and is no longer listed.
    let stale = code_for_step(env.secret("ann"), current_step());
    let other = env.request("rob");
    env.run(&["approve", &other, "--as", "ann", "--code", &stale])
        .refused("ann");
    let users = env.run(&["user", "list", "--json"]).ok().stdout;
    assert!(!users.contains("\"ann\""), "{users}");
    let audit = env.run(&["audit", "export"]).ok().stdout;
    assert!(audit.contains("\"user_removed\""), "{audit}");
    // Removing a user who is not enrolled says so.
    env.run(&["user", "remove", "ann"]).refused("ann");
}

#[test]
fn a_rotated_secret_kills_the_old_codes() {
    let mut env = team();
    let id = env.request("rita");
    let old = env.rotate("bob");
    let old_code = code_for_step(&old, current_step());
    env.run(&["approve", &id, "--as", "bob", "--code", &old_code])
        .refused("bob");
    // The new secret works.
    let one = env.approve(&id, "bob").ok().json();
    assert_eq!(one["approvals"].as_array().unwrap().len(), 1);
    let audit = env.run(&["audit", "export"]).ok().stdout;
    assert!(audit.contains("\"user_rotated\""), "{audit}");
    assert!(!audit.contains(&old), "a secret reached the audit log");
}

#[test]
fn a_removed_requester_cannot_act_and_through_a_daemon_may_not_remove() {
    let mut env = team();
    let id = env.approved("i-0abc1234", "rob", &["ann", "bob"]);
    env.run(&["user", "remove", "rob"]).ok();
    // Their request stays theirs to cancel; opening it is refused (broker::tests).
    env.run(&["cancel", &id, "--as", "rob"]).ok();
    let out = env.try_request("rob", "database disk is full", &["--duration", "20m"]);
    assert_eq!(out.code, 1, "a removed user made a request: {}", out.stdout);
    env.run(&[
        "--broker",
        "unix:/nonexistent.sock",
        "user",
        "remove",
        "rob",
    ])
    .usage("on the broker host");
}

/// The forged screen of issue #12: save the cursor, go up a line to column 31, print another
/// target over the real one, restore the cursor.
const FORGED: &str = "\x1b[s\x1b[1A\x1b[31G i-0aaaaaaaaaaaaaaaa \x1b[u";

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_size(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

fn audit_count(env: &Env) -> usize {
    env.run(&["audit", "export"]).ok().stdout.lines().count()
}

#[test]
fn hostile_fields_are_refused_before_anything_is_stored() {
    let mut env = team();
    let id = env.request("rita");
    let events = audit_count(&env);
    let size = dir_size(env.path());

    // Refusals come before the code is checked, so one code serves every attempt (a fresh
    // code per attempt would wait 30 s each).
    let rcode = env.code("rita");
    let long_reason = "x".repeat(501);
    let long_incident = "I".repeat(65);
    for (reason, extra, needle) in [
        (
            FORGED,
            vec![],
            "the reason holds character \\x1b at position 1",
        ),
        (
            "the disk is full \u{202e}lanigiro",
            vec![],
            "the reason holds character \\u202e",
        ),
        (
            "the disk is full \u{2066}isolated",
            vec![],
            "the reason holds character \\u2066",
        ),
        (
            "the disk is full",
            vec!["--incident", "INC-1\n"],
            "the incident holds",
        ),
        (
            long_reason.as_str(),
            vec![],
            "the reason is too long: at most 500",
        ),
        (
            "the disk is full",
            vec!["--incident", &long_incident],
            "the incident is too long",
        ),
    ] {
        let out = env
            .request_with_code("i-0abc1234", "rita", reason, &rcode, &extra)
            .usage(needle);
        assert!(
            !out.stderr.contains('\x1b') && !out.stderr.contains('\u{202e}'),
            "{}",
            out.stderr
        );
    }
    // A 100 kB target (one argument carries at most 128 KiB) with a wrong code: refused for
    // its shape, never echoed, nothing audited.
    let target = format!("i-{}", "0".repeat(100_000));
    let wrong = env.wrong_code("rita");
    let out = env
        .request_with_code(&target, "rita", "the disk is full", &wrong, &[])
        .usage("the target is too long");
    assert!(
        out.stderr.len() < 400,
        "the target was echoed: {}",
        out.stderr.len()
    );
    // Comments and the acting user's name follow the same rule.
    let code = env.code("ann");
    env.decide("approve", &id, "ann", &code, FORGED)
        .usage("the comment holds character \\x1b");
    env.decide("deny", &id, "ann", &code, "no \u{202d}")
        .usage("the comment holds character \\u202d");
    env.run(&["cancel", &id, "--as", "\x1b]0;rita\x07"])
        .usage("the user name holds character \\x1b");
    env.decide("approve", &id, "ann", &code, &long_reason)
        .usage("the comment is too long");

    assert_eq!(audit_count(&env), events, "a refused field was audited");
    let grown = dir_size(env.path()).saturating_sub(size);
    assert!(grown < 16 * 1024, "the data dir grew by {grown} bytes");
    assert_eq!(env.state(&id), "pending");
    // The code was not spent by the refusals.
    env.run(&["approve", &id, "--as", "ann", "--code", &code])
        .ok();
}

#[test]
fn an_old_database_holding_escape_sequences_prints_them_escaped() {
    let mut env = team();
    let id = env.request("rita");
    env.approve(&id, "ann").ok();
    // What a version without the input rule could store; the audit chain is left as it was.
    let db = rusqlite::Connection::open(env.db()).unwrap();
    let changed = db
        .execute(
            "UPDATE requests SET body = json_set(body, '$.reason', ?1, '$.incident', ?2, \
             '$.approvals[0].comment', ?3) WHERE id = ?4",
            rusqlite::params![FORGED, "INC-\u{202e}12", "ok\x1b]0;title\x07", id],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);

    let shown = env.run(&["show", &id]).ok().stdout;
    let listed = env.run(&["list"]).ok().stdout;
    for out in [&shown, &listed] {
        assert!(!out.contains('\x1b') && !out.contains('\u{202e}') && !out.contains('\x07'));
        assert!(
            out.contains("\\x1b[s\\x1b[1A\\x1b[31G i-0aaaaaaaaaaaaaaaa \\x1b[u"),
            "{out}"
        );
    }
    assert!(shown.contains("incident:  INC-\\u202e12"), "{shown}");
    assert!(shown.contains("approved:  ann at"), "{shown}");
    assert!(shown.contains("(ok\\x1b]0;title\\x07)"), "{shown}");
    let json = env.run(&["show", &id, "--json"]).ok().stdout;
    assert!(!json.contains('\x1b'), "{json}");
    env.run(&["audit", "verify"]).ok();
}

/// `approve` as `who` with the code on stdin (so it is "prompted"): (stdout, stderr).
fn approve_prompted(env: &mut Env, id: &str, who: &str) -> (String, String) {
    use std::io::Write;
    let code = env.code(who);
    let mut child = env
        .command(&["approve", id, "--as", who])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{code}").unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

#[test]
fn the_approve_prompt_shows_what_is_approved_and_partial_reads_partial() {
    let mut env = team();
    let id = env.request("rita");
    let (first, context) = approve_prompted(&mut env, &id, "ann");
    for needle in [
        format!("You are about to approve {id}:"),
        "Requester  rita".into(),
        "Target     i-0abc1234".into(),
        "Reason     database disk is full".into(),
        "Incident   (none)".into(),
        "Duration   20m".into(),
        "s ago (".into(),
        "Approvals  0 of 2 so far (none yet); yours is not the last: it stays pending".into(),
    ] {
        assert!(context.contains(&needle), "{needle:?} not in {context}");
    }
    assert!(
        first.contains(&format!(
            "Your approval of {id} is recorded: 1 of 2. Still PENDING"
        )),
        "{first}"
    );
    let (last, context) = approve_prompted(&mut env, &id, "bob");
    assert!(
        context.contains("1 of 2 so far (ann); yours makes it APPROVED"),
        "{context}"
    );
    assert!(
        last.contains(&format!("APPROVED {id} (2 of 2): rita may open it now.")),
        "{last}"
    );
}

#[test]
fn an_unconfirmed_enrolment_cannot_act_until_confirmed() {
    let mut env = team();
    env.enrol_unconfirmed("una", "both");
    // Neither as requester nor as approver; the message says how to confirm, and the
    // refusal is audited without spending the code.
    env.try_request("una", "database disk is full", &[])
        .refused("sombrero user confirm una");
    let id = env.request("rita");
    let code = env.code("una");
    env.run(&["approve", &id, "--as", "una", "--code", &code])
        .refused("enrolment is not confirmed");
    let rejected = env.audit_of("mfa_rejected");
    assert!(
        rejected
            .iter()
            .any(|v| v["actor"] == "una" && v["data"]["why"] == "enrolment not confirmed"),
        "{rejected:?}"
    );
    let listed = env.run(&["user", "list", "--json"]).ok().json();
    let una = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "una")
        .unwrap()
        .clone();
    assert!(una["confirmed_at"].is_null(), "{una}");

    // Confirmed with a code from the authenticator, una acts.
    env.confirm("una");
    env.approve(&id, "una").ok();
}

#[test]
fn first_run_says_how_to_start_and_who_is_enrolled() {
    let mut env = Env::new(POLICY);
    let bare = |env: &Env, args: &[&str], user: &str| {
        let mut c = env.command(args);
        c.env("USER", user).env_remove("LOGNAME");
        crate::common::cli::Run::from(c.output().unwrap())
    };
    // `sombrero` as a new person types it, on a data dir where nobody is enrolled.
    let first = bare(&env, &[], "zed").usage("nobody is enrolled here yet");
    for step in ["sombrero user add NAME --role", "sombrero demo"] {
        assert!(
            first.stderr.contains(step),
            "{step:?} missing: {}",
            first.stderr
        );
    }
    env.enrol("rita", "both");
    env.enrol("ann", "approver");
    // People are enrolled, but not the OS user: the names to choose from.
    let unknown = bare(&env, &[], "zed").usage("you are zed on this machine");
    for name in ["ann", "rita", "sombrero tui --as"] {
        assert!(
            unknown.stderr.contains(name),
            "{name:?} missing: {}",
            unknown.stderr
        );
    }
    bare(&env, &["tui", "--as", "zed"], "rita").usage("zed is not enrolled here");
}
