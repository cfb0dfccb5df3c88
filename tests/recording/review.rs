//! `sombrero review`: a reviewer's TOTP-checked sign-off lands in the audit log bound to the
//! recording's digest and shows up in `sombrero recordings`; non-reviewers, bad codes and
//! tampered recordings are refused.

use crate::common::cli::Env;
use crate::common::recording::{audit_recording, lines, meta, write_lines};
use pink_sombrero::policy::DEFAULT_POLICY;
use pink_sombrero::recording::{Recorder, RecorderKey};

fn record(env: &Env) -> String {
    let key = RecorderKey::load_or_create(&env.path().join("keys")).unwrap();
    let mut r = Recorder::create(&env.path().join("recordings"), meta(), &key).unwrap();
    r.output(b"$ rm -rf /tmp/cache\r\n").unwrap();
    r.marker("closed").unwrap();
    let path = r.path().to_str().unwrap().to_string();
    let info = r.seal().unwrap();
    assert_eq!(info.digest.len(), 64);
    audit_recording(env.path(), "req-1", &info.path, Some(&info));
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

/// A recording of eight lines, each flushed as its own chain record (start, then one `lines`
/// record per line), sealed and audited as a session does; returns the cast's path.
fn record_line_by_line(env: &Env) -> std::path::PathBuf {
    let key = RecorderKey::load_or_create(&env.path().join("keys")).unwrap();
    let mut r = Recorder::create(&env.path().join("recordings"), meta(), &key).unwrap();
    for i in 1..=7 {
        r.marker(&format!("step {i}")).unwrap();
    }
    let info = r.seal().unwrap();
    assert_eq!(info.lines, 8);
    audit_recording(env.path(), "req-1", &info.path, Some(&info));
    info.path
}

/// Keeps cast lines 1-4 and chain records 1-5 (the start and lines 1-4): seal and the rest gone.
fn cut(cast: &std::path::Path) {
    let l = lines(cast);
    write_lines(cast, &l[..4]);
    let chain = pink_sombrero::recording::writer::chain_path_for(cast);
    let c = lines(&chain);
    write_lines(&chain, &c[..5]);
}

#[test]
fn a_recording_cut_after_sealing_is_tampered_and_cannot_be_signed_off() {
    let mut env = Env::new(DEFAULT_POLICY);
    env.enrol("rita", "reviewer");
    let cast = record_line_by_line(&env);
    let file = cast.to_str().unwrap();
    env.run(&["verify", file]).ok();
    cut(&cast);
    // On its own the rest would pass as an unsealed recording of 4 lines.
    let key = RecorderKey::load(&env.path().join("keys")).unwrap();
    let alone = pink_sombrero::recording::verify(&cast, &key.verifying_key());
    assert!(
        alone.integrity.to_string().contains("unsealed"),
        "{alone:?}"
    );

    let out = env.run(&["verify", file]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout.contains("TAMPERED: truncated after line 4 of 8"),
        "{}",
        out.stdout
    );
    let v = env.run(&["verify", file, "--json"]).json();
    assert_eq!(v["status"], "audit_tampered");
    assert_eq!(v["line"], 5);
    let listed = env.run(&["recordings"]).ok().stdout;
    assert!(listed.contains("TAMPERED at line 5"), "{listed}");
    let code = env.code("rita");
    env.run(&[
        "review", file, "--as", "rita", "--code", &code, "--note", "fine",
    ])
    .refused("truncated after line 4 of 8");
}

#[test]
fn an_unsealed_recording_is_crashed_only_when_the_audit_log_says_why() {
    let mut env = Env::new(DEFAULT_POLICY);
    env.enrol("rita", "reviewer");
    let key = RecorderKey::load_or_create(&env.path().join("keys")).unwrap();
    let mut r = Recorder::create(&env.path().join("recordings"), meta(), &key).unwrap();
    r.marker("opened").unwrap();
    let cast = r.path().to_path_buf();
    // The process dies: no seal, nothing more in the audit log than the start.
    std::mem::forget(r);
    audit_recording(env.path(), "req-1", &cast, None);
    let file = cast.to_str().unwrap();
    let out = env.run(&["verify", file]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("unsealed"), "{}", out.stdout);
    let code = env.code("rita");
    env.run(&[
        "review", file, "--as", "rita", "--code", &code, "--note", "x",
    ])
    .refused("unsealed");
    // The audit log records why the session ended without a seal: now it is a crash.
    let b = pink_sombrero::broker::Broker::open(
        &pink_sombrero::config::Paths::at(env.path()),
        Default::default(),
    )
    .unwrap();
    b.record(
        "sombrero",
        pink_sombrero::audit::EventKind::RecordingFailed,
        Some("req-1"),
        serde_json::json!({"error": "disk full"}),
    )
    .unwrap();
    drop(b);
    let out = env.run(&["verify", file]);
    assert!(
        out.stdout.contains("crashed") && out.stdout.contains("disk full"),
        "{}",
        out.stdout
    );
    let code = env.code("rita");
    let v = env
        .run(&[
            "review", file, "--as", "rita", "--code", &code, "--note", "x", "--json",
        ])
        .ok()
        .json();
    assert!(v["data"]["integrity"].as_str().unwrap().contains("crashed"));
}

#[test]
fn a_recording_the_audit_log_names_but_the_disk_lacks_is_missing() {
    let mut env = Env::new(DEFAULT_POLICY);
    env.enrol("rita", "reviewer");
    let cast = record_line_by_line(&env);
    let name = cast.file_name().unwrap().to_str().unwrap().to_string();
    std::fs::remove_file(&cast).unwrap();
    std::fs::remove_file(pink_sombrero::recording::writer::chain_path_for(&cast)).unwrap();
    let text = env.run(&["recordings"]).ok().stdout;
    assert!(text.contains("MISSING") && text.contains(&name), "{text}");
    let v = env.run(&["recordings", "--json"]).ok().json();
    assert_eq!(v[0]["integrity"]["status"], "missing");
    assert!(
        v[0]["integrity"]["reason"]
            .as_str()
            .unwrap()
            .contains("sealed with 8 lines"),
        "{v}"
    );
    // A file planted under another name is not the audited recording either.
    let other = record(&env);
    let planted = std::path::Path::new(&other).with_file_name("planted.cast");
    std::fs::rename(&other, &planted).unwrap();
    std::fs::rename(
        pink_sombrero::recording::writer::chain_path_for(std::path::Path::new(&other)),
        pink_sombrero::recording::writer::chain_path_for(&planted),
    )
    .unwrap();
    let out = env.run(&["verify", planted.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("NOT IN AUDIT LOG"), "{}", out.stdout);
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
    let info = r.seal().unwrap();
    audit_recording(env.path(), "req-1", &info.path, Some(&info));
    let cast = info.path.to_str().unwrap().to_string();
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

#[test]
fn the_tuis_recordings_tab_counts_flags_under_the_policys_rules() {
    let policy = format!(
        "{DEFAULT_POLICY}\n[[review.flag]]\npattern = '\\buptime\\b'\nlabel = \"curiosity\"\nseverity = \"low\"\n"
    );
    let env = Env::new(&policy);
    let key = RecorderKey::load_or_create(&env.path().join("keys")).unwrap();
    let mut r = Recorder::create(&env.path().join("recordings"), meta(), &key).unwrap();
    r.input(b"uptime\r").unwrap();
    r.input(b"sudo systemctl stop auditd\r").unwrap();
    let info = r.seal().unwrap();
    audit_recording(env.path(), "req-1", &info.path, Some(&info));
    let broker = pink_sombrero::broker::Broker::open(
        &pink_sombrero::config::Paths::at(env.path()),
        Default::default(),
    )
    .unwrap();
    let backend = pink_sombrero::backend::embedded::Embedded::with_parts(
        pink_sombrero::backend::Config::at(env.path()),
        std::sync::Arc::new(broker),
        None,
        env.path().join("recordings"),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let list = || rt.block_on(pink_sombrero::tui::recording_rows::listed(&backend));
    let rows = list();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].flags.as_ref().map(|f| f.text.as_str()),
        Some("1H 1L")
    );
    // Listed again from the cache: the same counts.
    assert_eq!(list()[0].flags, rows[0].flags);
}
