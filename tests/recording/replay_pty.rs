//! `sombrero replay` as a real process in a pseudo-terminal: it draws the player with the
//! integrity badge, takes keys, and leaves the terminal restored when it quits.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::recording::Fixture;
use portable_pty::{CommandBuilder, PtySize, native_pty_system};

/// Reads the child's output on a thread; `wait_for` collects until a needle shows up.
struct Screen {
    rx: mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Screen {
    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !String::from_utf8_lossy(&self.seen).contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(chunk) => self.seen.extend(chunk),
                Err(_) => panic!(
                    "{needle:?} never appeared; output: {:?}",
                    String::from_utf8_lossy(&self.seen)
                ),
            }
        }
    }
}

#[test]
fn replay_draws_takes_keys_and_restores_the_terminal() {
    let fx = Fixture::new();
    let mut r = fx.recorder();
    r.output(b"$ echo replay-me\r\nreplay-me\r\n$ ").unwrap();
    r.marker("closed").unwrap();
    let cast = r.path().to_path_buf();
    r.seal().unwrap();

    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 20,
            cols: 80,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_sombrero"));
    cmd.arg("--data-dir");
    cmd.arg(fx.tmp.path());
    cmd.arg("replay");
    cmd.arg(&cast);
    cmd.env("TERM", "xterm-256color");
    let mut child = pty.slave.spawn_command(cmd).unwrap();
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut screen = Screen {
        rx,
        seen: Vec::new(),
    };
    let mut keys = pty.master.take_writer().unwrap();
    screen.wait_for("sealed ✓");
    screen.wait_for("replay-me");
    keys.write_all(b"/").unwrap();
    screen.wait_for("enter search");
    // Esc alone (followed at once by another key it would read as Alt+key).
    keys.write_all(b"\x1b").unwrap();
    screen.seen.clear();
    screen.wait_for("play");
    keys.write_all(b"q").unwrap();
    // Never hang the suite: a player that ignores `q` is killed and the test fails.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("replay did not quit on q");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    // Leaving the alternate screen is part of restoring the terminal.
    screen.wait_for("\x1b[?1049l");
}
