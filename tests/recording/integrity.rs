//! Recorder output read back, asciicast v2 rules, and every tamper case caught by `verify`.

use std::path::PathBuf;

use crate::common::recording::{Fixture, lines, write_lines};
use pink_sombrero::recording::cast::{EventKind, parse_event, parse_header};
use pink_sombrero::recording::verify::Tamper;
use pink_sombrero::recording::writer::chain_path_for;
use pink_sombrero::recording::{Integrity, RecorderKey, verify};

/// A sealed recording with a few of every event kind; returns its path.
fn sealed(fx: &Fixture) -> PathBuf {
    let mut r = fx.recorder();
    r.marker("opened").unwrap();
    for i in 0..8 {
        r.input(format!("echo {i}\r").as_bytes()).unwrap();
        r.output(format!("echo {i}\r\n{i}\r\n$ ").as_bytes())
            .unwrap();
        if i == 3 {
            r.resize(50, 12).unwrap();
            r.tick().unwrap();
        }
    }
    r.marker("closed").unwrap();
    let path = r.path().to_path_buf();
    let info = r.seal().unwrap();
    assert_eq!(info.lines as usize, lines(&path).len());
    path
}

fn check(fx: &Fixture, path: &std::path::Path) -> Integrity {
    verify(path, &fx.key.verifying_key()).integrity
}

#[test]
fn output_reads_back_exactly_with_split_utf8_and_binary_bytes() {
    let fx = Fixture::new();
    let mut r = fx.recorder();
    let text = "héllo €uro 😀 done\r\n";
    for chunk in text.as_bytes().chunks(3) {
        r.output(chunk).unwrap();
    }
    r.output(b"bin:\xff\xfe\x00\x1b[31mred\x1b[0m").unwrap();
    r.input("ls -l\r".as_bytes()).unwrap();
    let path = r.path().to_path_buf();
    r.seal().unwrap();

    let all = lines(&path);
    let mut output = String::new();
    let mut input = String::new();
    for (n, l) in all.iter().enumerate().skip(1) {
        let ev = parse_event(l, n as u64 + 1).unwrap();
        match ev.kind {
            EventKind::Output => output.push_str(&ev.data),
            EventKind::Input => input.push_str(&ev.data),
            _ => {}
        }
    }
    assert_eq!(
        output,
        "héllo €uro 😀 done\r\nbin:\u{FFFD}\u{FFFD}\u{0}\u{1b}[31mred\u{1b}[0m"
    );
    assert_eq!(input, "ls -l\r");
}

#[test]
fn follows_asciicast_v2_rules() {
    let fx = Fixture::new();
    let path = sealed(&fx);
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(name.ends_with("_req-1_sess-1.cast"), "{name}");
    let all = lines(&path);
    let header = parse_header(&all[0]).unwrap();
    assert_eq!((header.version, header.width, header.height), (2, 40, 10));
    assert!(header.timestamp.unwrap() > 1_600_000_000);
    assert_eq!(header.title.as_deref(), Some("pink sombrero req-1"));
    assert_eq!(header.env["TERM"], "xterm-256color");
    assert_eq!(header.env["SHELL"], "/bin/bash");
    let ps = header.pink_sombrero.unwrap();
    assert_eq!(ps.request_id, "req-1");
    assert_eq!(ps.approvers, ["bob", "carol"]);
    assert_eq!(ps.session_id, "sess-1");
    let mut last = 0.0;
    let mut kinds = Vec::new();
    for (n, l) in all.iter().enumerate().skip(1) {
        // Every event is exactly a 3-element array [number, string, string].
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 3);
        assert!(arr[0].is_f64() && arr[1].is_string() && arr[2].is_string());
        let ev = parse_event(l, n as u64 + 1).unwrap();
        assert!(ev.time >= last, "time went back at line {}", n + 1);
        last = ev.time;
        kinds.push(ev.kind);
        if ev.kind == EventKind::Resize {
            assert_eq!(ev.resize_size(), Some((50, 12)));
        }
    }
    assert_eq!(kinds.first(), Some(&EventKind::Marker));
    assert_eq!(kinds.last(), Some(&EventKind::Marker));
}

#[test]
fn intact_recording_verifies_as_sealed() {
    let fx = Fixture::new();
    let path = sealed(&fx);
    match check(&fx, &path) {
        Integrity::Sealed { lines: n, .. } => assert_eq!(n as usize, lines(&path).len()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn markers_reach_the_disk_before_seal() {
    let fx = Fixture::new();
    let mut r = fx.recorder();
    r.output(b"before\r\n").unwrap();
    r.marker("tainted").unwrap();
    let path = r.path().to_path_buf();
    let on_disk = lines(&path);
    assert!(on_disk.last().unwrap().contains("\"m\", \"tainted\""));
    assert!(on_disk.iter().any(|l| l.contains("before")));
    match check(&fx, &path) {
        Integrity::Unsealed {
            verified_lines,
            total_lines,
            ..
        } => assert_eq!((verified_lines, total_lines), (3, 3)),
        other => panic!("{other:?}"),
    }
    r.seal().unwrap();
    assert!(check(&fx, &path).is_sealed_ok());
}

fn tampered(fx: &Fixture, path: &std::path::Path) -> (Tamper, u64, u64) {
    match check(fx, path) {
        Integrity::Tampered { kind, line, count } => (kind, line, count),
        other => panic!("expected tampering, got {other:?}"),
    }
}

#[test]
fn every_single_byte_edit_is_caught_with_its_line() {
    let fx = Fixture::new();
    let path = sealed(&fx);
    let original = std::fs::read(&path).unwrap();
    let line_of = |pos: usize| original[..pos].iter().filter(|b| **b == b'\n').count() as u64 + 1;
    for pos in 0..original.len() {
        let mut bytes = original.clone();
        bytes[pos] = if bytes[pos] == b'x' { b'y' } else { b'x' };
        std::fs::write(&path, &bytes).unwrap();
        let verdict = check(&fx, &path);
        assert!(!verdict.is_sealed_ok(), "edit at byte {pos} not caught");
        assert_eq!(
            verdict.first_bad_line(),
            Some(line_of(pos)),
            "byte {pos}: {verdict:?}"
        );
    }
}

#[test]
fn edited_line_is_named() {
    let fx = Fixture::new();
    let path = sealed(&fx);
    let mut l = lines(&path);
    l[5] = l[5].replace("echo", "rm -rf");
    write_lines(&path, &l);
    assert_eq!(tampered(&fx, &path), (Tamper::Edited, 6, 1));
}

#[test]
fn deleted_lines_are_named() {
    let fx = Fixture::new();
    let path = sealed(&fx);
    let mut l = lines(&path);
    l.drain(4..6);
    write_lines(&path, &l);
    assert_eq!(tampered(&fx, &path), (Tamper::Deleted, 5, 2));
}

#[test]
fn inserted_line_is_named() {
    let fx = Fixture::new();
    let path = sealed(&fx);
    let mut l = lines(&path);
    l.insert(3, "[0.5, \"o\", \"innocent\"]".into());
    write_lines(&path, &l);
    assert_eq!(tampered(&fx, &path), (Tamper::Inserted, 4, 1));
}

#[test]
fn reordered_lines_are_named() {
    let fx = Fixture::new();
    let path = sealed(&fx);
    let mut l = lines(&path);
    l.swap(7, 8);
    write_lines(&path, &l);
    assert_eq!(tampered(&fx, &path), (Tamper::Reordered, 8, 1));
}

#[test]
fn truncation_is_named() {
    let fx = Fixture::new();
    let path = sealed(&fx);
    let l = lines(&path);
    write_lines(&path, &l[..10]);
    assert_eq!(tampered(&fx, &path).0, Tamper::Truncated);
    assert_eq!(tampered(&fx, &path).1, 11);
    // Cut inside the last line.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    assert_eq!(tampered(&fx, &path), (Tamper::Truncated, 10, 1));
}

#[test]
fn wrong_key_or_forged_signature_is_a_bad_seal() {
    let fx = Fixture::new();
    let path = sealed(&fx);
    let other = RecorderKey::load_or_create(&fx.tmp.path().join("other")).unwrap();
    assert!(matches!(
        verify(&path, &other.verifying_key()).integrity,
        Integrity::BadSignature { .. }
    ));
    let chain = chain_path_for(&path);
    let text = std::fs::read_to_string(&chain).unwrap();
    let sig_at = text.find("\"sig\":\"").unwrap() + 7;
    let mut forged = text.into_bytes();
    forged[sig_at] = if forged[sig_at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&chain, forged).unwrap();
    assert!(matches!(check(&fx, &path), Integrity::BadSignature { .. }));
}

#[test]
fn missing_seal_is_unsealed_and_missing_chain_is_reported() {
    let fx = Fixture::new();
    let path = sealed(&fx);
    let chain = chain_path_for(&path);
    let text = std::fs::read_to_string(&chain).unwrap();
    let without_seal: String = text
        .lines()
        .filter(|l| !l.contains("\"seal\""))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&chain, without_seal).unwrap();
    let n = lines(&path).len() as u64;
    match check(&fx, &path) {
        Integrity::Unsealed {
            verified_lines,
            total_lines,
            digest,
        } => {
            assert_eq!((verified_lines, total_lines), (n, n));
            assert_eq!(digest.len(), 64);
        }
        other => panic!("{other:?}"),
    }
    std::fs::remove_file(&chain).unwrap();
    assert!(matches!(check(&fx, &path), Integrity::ChainMissing { .. }));
}

#[test]
fn edited_chain_file_is_damaged() {
    let fx = Fixture::new();
    let path = sealed(&fx);
    let chain = chain_path_for(&path);
    let text = std::fs::read_to_string(&chain).unwrap();
    let mut l: Vec<&str> = text.lines().collect();
    l[1] = "{\"type\":\"lines\",\"from\":5,\"to\":5,\"head\":\"00\",\"d\":\"000000000000\"}";
    std::fs::write(&chain, l.join("\n") + "\n").unwrap();
    assert!(matches!(
        check(&fx, &path),
        Integrity::ChainDamaged { chain_line: 2, .. }
    ));
}

#[test]
fn cached_listing_still_catches_an_edit_made_after_it() {
    use pink_sombrero::recording::list::ListCache;
    let fx = Fixture::new();
    let path = sealed(&fx);
    let key = fx.key.verifying_key();
    let mut cache = ListCache::default();
    let first = cache.list(&fx.recordings(), Some(&key)).unwrap();
    assert!(first[0].integrity.is_sealed_ok(), "{}", first[0].integrity);

    // Same size, mtime put back: only the inode change time tells.
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 3;
    bytes[last] = if bytes[last] == b'a' { b'b' } else { b'a' };
    std::fs::write(&path, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(before)
        .unwrap();

    let again = cache.list(&fx.recordings(), Some(&key)).unwrap();
    assert!(
        !again[0].integrity.is_sealed_ok(),
        "the cache hid a tampered recording: {}",
        again[0].integrity
    );
}

#[test]
fn audit_checkpoints_are_due_every_n_lines_and_match_the_chain() {
    use pink_sombrero::recording::writer::CHECKPOINT_LINES;
    let fx = Fixture::new();
    let mut r = fx.recorder();
    // The header alone is not worth a checkpoint before the interval is up.
    assert_eq!(r.checkpoint_due(), None);
    for i in 0..CHECKPOINT_LINES {
        r.output(format!("line {i}\r\n").as_bytes()).unwrap();
    }
    r.marker("flush").unwrap();
    let (lines_at, head) = r
        .checkpoint_due()
        .expect("due after CHECKPOINT_LINES lines");
    assert_eq!(lines_at, CHECKPOINT_LINES + 2);
    // Handed out once; the next is due only after more lines or time.
    assert_eq!(r.checkpoint_due(), None);
    let path = r.path().to_path_buf();
    r.seal().unwrap();
    // What the session puts in the audit log is a head the chain file holds for that line.
    let heads = pink_sombrero::recording::verify::chain_heads(&path).unwrap();
    assert_eq!(heads.get(&lines_at), Some(&head));
}
