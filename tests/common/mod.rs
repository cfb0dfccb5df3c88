//! Fixtures shared by the integration test binaries (one per area, `tests/*/main.rs`).
//! Each binary compiles all of them and uses a few, hence the blanket `dead_code`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

/// The `sombrero` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_sombrero");

/// Spawns `sombrero serve` (stderr piped) and waits for its "listening on" line, which it
/// returns; the rest of stderr is drained on a thread so the daemon never blocks on it.
/// Panics if the daemon exits first.
pub fn spawn_listening(serve: &mut Command) -> (Child, String) {
    let mut child = serve.stderr(Stdio::piped()).spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "serve exited before listening"
        );
    }
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = err.read_to_string(&mut sink);
    });
    (child, line)
}

/// Spawns `cmd` with stdin, stdout and stderr piped.
pub fn spawn_piped(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `cmd` to its end with `stdin` written to it (then closed) and its output captured.
pub fn run_with_stdin(cmd: &mut Command, stdin: &[u8]) -> std::process::Output {
    let mut child = spawn_piped(cmd);
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// Reads `r` until what it said contains `needle`; returns all of it. Panics if `r` ends
/// first, showing what came.
pub fn read_until(r: &mut impl Read, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = r.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "ended before {needle:?}: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// An in-process broker under a test clock, its users enrolled.
pub mod broker;
/// A data dir and the CLI run on it (`Env`, `Run`), TOTP codes, races.
pub mod cli;
/// `sombrero serve` on a Unix socket over an [`cli::Env`].
pub mod daemon;
/// Fleet over the lab; audit events of a data dir.
pub mod fleet;
/// The SSM lab and a raw data-channel peer against it.
pub mod lab;
/// The moto emulator's endpoints, when it runs.
pub mod moto;
/// A scripted data-channel peer on loopback.
pub mod peer;
/// Recording fixtures: keys, metadata, audited recordings.
pub mod recording;
/// A PKI, `sombrero serve` on TLS and an STS stand-in.
pub mod tls;
/// External tools (cfn-lint, systemd-analyze) found or skipped.
pub mod tools;
/// TUI states, snapshots and key presses.
pub mod tui;
