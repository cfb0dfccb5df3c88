//! The real `sombrero` binary: keys show, verify exit codes and messages, recordings listing.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::recording::{lines, meta, write_lines};
use pink_sombrero::recording::{Recorder, RecorderKey};

fn sombrero(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sombrero"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

fn record(data: &Path) -> std::path::PathBuf {
    let key = RecorderKey::load_or_create(&data.join("keys")).unwrap();
    let mut r = Recorder::create(&data.join("recordings"), meta(), &key).unwrap();
    r.marker("opened").unwrap();
    r.output(b"$ whoami\r\nroot\r\n").unwrap();
    r.marker("closed").unwrap();
    let path = r.path().to_path_buf();
    r.seal().unwrap();
    path
}

#[test]
fn keys_show_prints_the_public_key_created_on_first_use() {
    let tmp = tempfile::tempdir().unwrap();
    let out = sombrero(tmp.path(), &["keys", "show", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = RecorderKey::load(&tmp.path().join("keys")).unwrap();
    assert_eq!(v["public_key"], key.public_hex());
    let out = sombrero(tmp.path(), &["keys", "show"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("ed25519 {}", key.public_hex())
    );
}

#[test]
fn verify_exits_zero_only_for_intact_sealed_and_names_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cast = record(tmp.path());
    let cast_arg = cast.to_str().unwrap();
    let ok = sombrero(tmp.path(), &["verify", cast_arg]);
    assert_eq!(ok.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("intact and sealed"));

    let mut l = lines(&cast);
    l[2] = l[2].replace("whoami", "whoamI");
    write_lines(&cast, &l);
    let bad = sombrero(tmp.path(), &["verify", cast_arg]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains("TAMPERED: line 3 edited"),
        "{}",
        String::from_utf8_lossy(&bad.stdout)
    );
    let json = sombrero(tmp.path(), &["verify", "--json", cast_arg]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["status"], "tampered");
    assert_eq!(v["kind"], "edited");
    assert_eq!(v["line"], 3);

    let missing = sombrero(tmp.path(), &["verify", "/nonexistent.cast"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn recordings_lists_metadata_and_integrity() {
    let tmp = tempfile::tempdir().unwrap();
    let cast = record(tmp.path());
    let out = sombrero(tmp.path(), &["recordings", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &v.as_array().unwrap()[0];
    assert_eq!(r["path"], cast.to_str().unwrap());
    assert_eq!(r["meta"]["request_id"], "req-1");
    assert_eq!(r["meta"]["requester"], "alice");
    assert_eq!(r["integrity"]["status"], "sealed");
    let text = sombrero(tmp.path(), &["recordings"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("req-1  alice  mi-0123456789abcdef0") && text.contains("sealed ✓"),
        "{text}"
    );
}

#[test]
fn recordings_count_flagged_commands_and_filter_on_them() {
    let tmp = tempfile::tempdir().unwrap();
    let key = RecorderKey::load_or_create(&tmp.path().join("keys")).unwrap();
    let mut casts = Vec::new();
    for (request, typed) in [("req-1", "sudo id\rhistory -c\r"), ("req-2", "ls\r")] {
        let mut m = meta();
        m.request_id = request.into();
        m.session_id = format!("sess-{request}");
        let mut r = Recorder::create(&tmp.path().join("recordings"), m, &key).unwrap();
        r.output(b"$ ").unwrap();
        for line in typed.split_inclusive('\r') {
            r.input(line.as_bytes()).unwrap();
            r.output(format!("{}\n$ ", line).as_bytes()).unwrap();
        }
        casts.push(r.path().to_path_buf());
        r.seal().unwrap();
    }
    let out = sombrero(tmp.path(), &["recordings", "--json"]);
    assert!(out.status.success());
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let flags: Vec<(String, serde_json::Value)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["meta"]["request_id"].as_str().unwrap().to_string(),
                r["flags"].clone(),
            )
        })
        .collect();
    assert!(
        flags.contains(&(
            "req-1".into(),
            serde_json::json!({"high": 1, "medium": 1, "low": 0})
        )),
        "{flags:?}"
    );
    assert!(
        flags.contains(&(
            "req-2".into(),
            serde_json::json!({"high": 0, "medium": 0, "low": 0})
        )),
        "{flags:?}"
    );

    let out = sombrero(tmp.path(), &["recordings", "--flagged"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("req-1") && text.contains("flags 1H 1M"),
        "{text}"
    );
    assert!(!text.contains("req-2"), "{text}");

    // A policy rule counts too.
    std::fs::write(
        tmp.path().join("policy.toml"),
        "requesters = [\"*\"]\napprovers = [\"*\"]\n\n[[review.flag]]\npattern = '^ls$'\nlabel = \"listing\"\nseverity = \"low\"\n",
    )
    .unwrap();
    let out = sombrero(tmp.path(), &["recordings", "--flagged"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("req-2") && text.contains("flags 1L"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn export_text_is_what_was_seen_without_escape_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let key = RecorderKey::load_or_create(&tmp.path().join("keys")).unwrap();
    let mut r = Recorder::create(&tmp.path().join("recordings"), meta(), &key).unwrap();
    r.output(b"$ ").unwrap();
    r.input(b"ls --color\r").unwrap();
    r.output(b"ls --color\r\n\x1b[01;34mreports\x1b[0m  \x1b[01;32mrun.sh\x1b[0m\r\n$ ")
        .unwrap();
    r.input(b"top\r").unwrap();
    r.output(b"top\r\n\x1b[?1049h\x1b[H\x1b[2J\x1b[7mtop - load average: 0.42\x1b[0m")
        .unwrap();
    r.input(b"q").unwrap();
    r.output(b"\x1b[?1049l$ ").unwrap();
    r.input(b"echo done\r").unwrap();
    r.output(b"echo done\r\n\x1b[31mdone\x1b[0m\r\n$ ").unwrap();
    let path = r.path().to_path_buf();
    r.seal().unwrap();

    let out = sombrero(
        tmp.path(),
        &["export", path.to_str().unwrap(), "--format", "text"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.contains(&0x1b), "no ESC byte in the transcript");
    let text = String::from_utf8(out.stdout).unwrap();
    for seen in [
        "$ ls --color",
        "reports  run.sh",
        "top - load average: 0.42",
        "$ echo done",
        "           done",
    ] {
        assert!(text.contains(seen), "{seen:?} missing from:\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("[00:00:") && l.ends_with("$ top")),
        "command lines carry their time:\n{text}"
    );

    let out = sombrero(
        tmp.path(),
        &["export", path.to_str().unwrap(), "--format", "commands"],
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("top  (full screen)"), "{table}");
    assert!(table.contains("echo done"), "{table}");
}

#[test]
fn commands_refuse_a_broken_review_flag_in_the_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let path = record(tmp.path());
    std::fs::write(
        tmp.path().join("policy.toml"),
        "requesters = [\"*\"]\napprovers = [\"*\"]\n[[review.flag]]\npattern = \"(x\"\nlabel = \"x\"\nseverity = \"low\"\n",
    )
    .unwrap();
    let out = sombrero(tmp.path(), &["commands", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 4: review.flag.pattern"), "{err}");
}
