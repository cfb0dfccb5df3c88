//! The real binary in a real pseudo-terminal: the TUI takes the terminal and gives it back.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portable_pty::{CommandBuilder, PtySize, native_pty_system};

/// Alternate screen on and off (xterm 1049), raw-mode independent markers of take and restore.
const ENTER_ALT: &[u8] = b"\x1b[?1049h";
const LEAVE_ALT: &[u8] = b"\x1b[?1049l";

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn tui_restores_the_terminal_when_quitting() {
    let dir = tempfile::tempdir().unwrap();
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 30,
            cols: 100,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    // The TUI acts only as someone enrolled: enrol alice first, as an operator would.
    let enrolled = std::process::Command::new(env!("CARGO_BIN_EXE_sombrero"))
        .args(["user", "add", "alice", "--role", "requester", "--json"])
        .env("SOMBRERO_DATA_DIR", dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(enrolled.status.success(), "{enrolled:?}");
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_sombrero"));
    cmd.args(["tui", "--as", "alice"]);
    cmd.env("SOMBRERO_DATA_DIR", dir.path());
    cmd.env("TERM", "xterm-256color");
    // No fleet configured: the UI must still come up.
    for var in [
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL_SSM",
    ] {
        cmd.env_remove(var);
    }
    let mut child = pty.slave.spawn_command(cmd).unwrap();
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().unwrap();
    let writer = Arc::new(Mutex::new(pty.master.take_writer().unwrap()));
    let output = Arc::new(Mutex::new(Vec::new()));
    let (out, w) = (Arc::clone(&output), Arc::clone(&writer));
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            // Answer cursor-position queries like a terminal would.
            if find(&buf[..n], b"\x1b[6n").is_some() {
                let _ = w.lock().unwrap().write_all(b"\x1b[1;1R");
            }
            out.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let wait_for = |needle: &[u8]| {
        for _ in 0..400 {
            if find(&output.lock().unwrap(), needle).is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "never saw {:?} in:\n{}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(&output.lock().unwrap())
        );
    };
    wait_for(b"PINK SOMBRERO");
    wait_for(b"alice");
    writer.lock().unwrap().write_all(b"q").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    wait_for(LEAVE_ALT);
    let out = output.lock().unwrap();
    let entered = find(&out, ENTER_ALT).unwrap();
    let left = out.len()
        - LEAVE_ALT.len()
        - out
            .windows(LEAVE_ALT.len())
            .rev()
            .position(|w| w == LEAVE_ALT)
            .unwrap();
    assert!(
        left > entered,
        "the alternate screen is left after it was entered"
    );
    assert!(
        find(&out, b"\x1b[?25h").is_some_and(|shown| shown > entered),
        "the cursor is shown again"
    );
}
