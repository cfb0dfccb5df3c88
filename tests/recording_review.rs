//! `sombrero review`: a reviewer's TOTP-checked sign-off lands in the audit log bound to the
//! recording's digest and shows up in `sombrero recordings`; non-reviewers, bad codes and
//! tampered recordings are refused.

#[path = "foundation_support/mod.rs"]
mod foundation_support;
mod recording_support;

use foundation_support::Env;
use pink_sombrero::policy::DEFAULT_POLICY;
use pink_sombrero::recording::{Recorder, RecorderKey};
use recording_support::{lines, meta, write_lines};

fn record(env: &Env) -> String {
    let key = RecorderKey::load_or_create(&env.path().join("keys")).unwrap();
    let mut r = Recorder::create(&env.path().join("recordings"), meta(), &key).unwrap();
    r.output(b"$ rm -rf /tmp/cache\r\n").unwrap();
    r.marker("closed").unwrap();
    let path = r.path().to_str().unwrap().to_string();
    let info = r.seal().unwrap();
    assert_eq!(info.digest.len(), 64);
    path
}

#[test]
fn reviewer_signs_off_and_the_listing_shows_it() {
    let mut env = Env::new(DEFAULT_POLICY);
    env.enrol("rita", "reviewer");
    let cast = record(&env);
    let code = env.code("rita");
    let out = env
        .run(&[
            "review",
            &cast,
            "--as",
            "rita",
            "--code",
            &code,
            "--note",
            "cleanup only",
            "--json",
        ])
        .ok();
    let event = out.json();
    assert_eq!(event["kind"], "reviewed");
    assert_eq!(event["actor"], "rita");
    assert_eq!(event["request_id"], "req-1");
    assert_eq!(event["data"]["note"], "cleanup only");
    let digest = event["data"]["digest"].as_str().unwrap().to_string();

    let listed = env.run(&["recordings", "--json"]).ok().json();
    let r = &listed[0];
    assert_eq!(r["integrity"]["digest"], digest.as_str());
    assert_eq!(r["reviews"][0]["reviewer"], "rita");
    assert_eq!(r["reviews"][0]["note"], "cleanup only");
    env.run(&["audit", "verify"]).ok();
}

#[test]
fn review_is_refused_for_non_reviewers_bad_codes_and_tampered_files() {
    let mut env = Env::new(DEFAULT_POLICY);
    env.enrol("rita", "reviewer");
    env.enrol("alice", "requester");
    let cast = record(&env);
    let code = env.code("alice");
    env.run(&[
        "review", &cast, "--as", "alice", "--code", &code, "--note", "x",
    ])
    .refused("may not review");
    let wrong = env.wrong_code("rita");
    env.run(&[
        "review", &cast, "--as", "rita", "--code", &wrong, "--note", "x",
    ])
    .refused("");
    let mut l = lines(std::path::Path::new(&cast));
    l[1] = l[1].replace("cache", "cachE");
    write_lines(std::path::Path::new(&cast), &l);
    let code = env.code("rita");
    env.run(&[
        "review", &cast, "--as", "rita", "--code", &code, "--note", "x",
    ])
    .refused("TAMPERED: line 2 edited");
}

#[test]
fn review_shows_the_flagged_commands_before_the_sign_off() {
    let mut env = Env::new(DEFAULT_POLICY);
    env.enrol("rita", "reviewer");
    let key = RecorderKey::load_or_create(&env.path().join("keys")).unwrap();
    let mut r = Recorder::create(&env.path().join("recordings"), meta(), &key).unwrap();
    r.input(b"uptime\r").unwrap();
    r.output(b"uptime\r\n up 3 days\r\n$ ").unwrap();
    r.input(b"sudo systemctl stop auditd\r").unwrap();
    r.output(b"sudo systemctl stop auditd\r\n$ ").unwrap();
    let cast = r.path().to_str().unwrap().to_string();
    r.seal().unwrap();
    let code = env.code("rita");
    let out = env
        .run(&[
            "review", &cast, "--as", "rita", "--code", &code, "--note", "checked",
        ])
        .ok();
    assert!(
        out.stderr
            .contains("1 of 2 commands in this recording are flagged"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("high: disabling controls: agent or audit stopped, medium: privilege: sudo"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("uptime"), "{}", out.stderr);
}
