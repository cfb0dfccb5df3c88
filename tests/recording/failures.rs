//! Real failure conditions: a recorder killed with SIGKILL, a file size limit (RLIMIT_FSIZE),
//! and a recordings path that cannot be a directory. Children are this test binary re-run
//! with `RECORDING_CHILD` set, so each condition hits a real process.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::recording::{Fixture, meta};
use pink_sombrero::recording::writer::chain_path_for;
use pink_sombrero::recording::{Integrity, Recorder, RecorderKey, verify};

const CHILD: &str = "RECORDING_CHILD";
const DIR: &str = "RECORDING_CHILD_DIR";

/// Runs this test again as a child process in `role`; `test` is its name in this module.
fn spawn_child(test: &str, role: &str, dir: &Path) -> std::process::Child {
    // The binary names tests by their path below the crate root (`failures::name`).
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let test = format!("{module}::{test}");
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &test, "--nocapture", "--test-threads=1"])
        .env(CHILD, role)
        .env(DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn child_role() -> Option<(String, PathBuf)> {
    Some((std::env::var(CHILD).ok()?, std::env::var(DIR).ok()?.into()))
}

fn only_cast(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "cast"))
}

/// Child: records forever (a marker every 20 events forces flushes) until killed.
fn record_until_killed(dir: &Path) -> ! {
    let key = RecorderKey::load(&dir.join("keys")).unwrap();
    let mut r = Recorder::create(&dir.join("recordings"), meta(), &key).unwrap();
    for i in 0u64.. {
        r.output(format!("line {i} of a long session\r\n").as_bytes())
            .unwrap();
        if i % 20 == 0 {
            r.marker(&format!("m{i}")).unwrap();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    unreachable!()
}

#[test]
fn sigkill_leaves_an_unsealed_recording_verified_up_to_the_cut() {
    if let Some((role, dir)) = child_role() {
        assert_eq!(role, "record");
        record_until_killed(&dir);
    }
    let fx = Fixture::new();
    let mut child = spawn_child(
        "sigkill_leaves_an_unsealed_recording_verified_up_to_the_cut",
        "record",
        fx.tmp.path(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    // Wait until several flushes have reached the chain file, then kill mid-session.
    loop {
        let records = only_cast(&fx.recordings())
            .and_then(|c| std::fs::read_to_string(chain_path_for(&c)).ok())
            .map_or(0, |t| t.lines().count());
        if records >= 6 {
            break;
        }
        assert!(Instant::now() < deadline, "child never flushed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL on unix
    child.wait().unwrap();

    let cast = only_cast(&fx.recordings()).unwrap();
    match verify(&cast, &fx.key.verifying_key()).integrity {
        Integrity::Unsealed {
            verified_lines,
            total_lines,
            ..
        } => {
            assert!(verified_lines >= 21, "only {verified_lines} lines verified");
            assert!(total_lines >= verified_lines);
        }
        other => panic!("expected unsealed, got {other:?}"),
    }
    // The cut recording still loads for replay.
    let rec = pink_sombrero::recording::player::Recording::load(&cast).unwrap();
    assert!(rec.events.len() >= 20);
}

/// Child: under a 64 KiB file size limit with SIGXFSZ ignored, writes until the recorder
/// refuses; prints the error and exits 3.
fn record_until_limit(dir: &Path) -> ! {
    let key = RecorderKey::load(&dir.join("keys")).unwrap();
    let limit = libc::rlimit {
        rlim_cur: 64 * 1024,
        rlim_max: 64 * 1024,
    };
    // SAFETY: plain libc calls on this process's own limits and signal disposition.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    let mut r = Recorder::create(&dir.join("recordings"), meta(), &key).unwrap();
    let chunk = vec![b'x'; 1000];
    for _ in 0..1000 {
        let res = r.output(&chunk).and_then(|()| r.marker("flush"));
        if let Err(e) = res {
            println!("ERROR: {e}");
            // Once failed, the recorder refuses everything.
            assert!(r.output(b"more").is_err());
            std::process::exit(3);
        }
    }
    std::process::exit(0);
}

#[test]
fn file_size_limit_is_a_returned_error_not_silent_loss() {
    if let Some((role, dir)) = child_role() {
        assert_eq!(role, "fsize");
        record_until_limit(&dir);
    }
    let fx = Fixture::new();
    let child = spawn_child(
        "file_size_limit_is_a_returned_error_not_silent_loss",
        "fsize",
        fx.tmp.path(),
    );
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("cannot write recording"), "{stdout}");
    assert!(stdout.contains("the session must end"), "{stdout}");
    // What did reach the disk is still verifiable as far as the chain goes.
    let cast = only_cast(&fx.recordings()).unwrap();
    assert!(matches!(
        verify(&cast, &fx.key.verifying_key()).integrity,
        Integrity::Unsealed { .. }
    ));
}

#[test]
fn recordings_path_that_is_a_file_fails_to_create() {
    let fx = Fixture::new();
    let blocker = fx.tmp.path().join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let err = Recorder::create(&blocker.join("recordings"), meta(), &fx.key).unwrap_err();
    assert!(err.to_string().contains("cannot create recording"), "{err}");
}
