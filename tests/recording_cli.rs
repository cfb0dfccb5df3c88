//! The real `sombrero` binary: keys show, verify exit codes and messages, recordings listing.

mod recording_support;

use std::path::Path;
use std::process::{Command, Output};

use pink_sombrero::recording::{Recorder, RecorderKey};
use recording_support::{lines, meta, write_lines};

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
