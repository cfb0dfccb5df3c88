//! `bridge_stdio` on a real pseudo-terminal: this test binary points its own stdin and stdout
//! at a PTY slave (one test only, since file descriptors are process-wide) and checks raw mode
//! while the session runs, keystrokes passed unbuffered, SIGWINCH forwarded as a Size frame,
//! and the terminal restored when the session ends.

use std::os::fd::RawFd;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use crate::common::peer::{Listener, WAIT};
use pink_sombrero::channel::client::{ClientOptions, SessionTarget, connect};
use pink_sombrero::channel::codec::PayloadType;
use pink_sombrero::channel::payload::exit_code_payload;
use pink_sombrero::channel::terminal::{EndReason, bridge_stdio, local_size};

/// Points fds 0 and 1 at the PTY slave; puts the originals back when dropped (also on panic).
struct Redirect {
    saved: [RawFd; 2],
}

impl Redirect {
    fn to(slave: RawFd) -> Redirect {
        let saved = unsafe { [libc::dup(0), libc::dup(1)] };
        assert!(saved.iter().all(|&fd| fd >= 0));
        unsafe {
            assert_eq!(libc::dup2(slave, 0), 0);
            assert_eq!(libc::dup2(slave, 1), 1);
        }
        Redirect { saved }
    }
}

impl Drop for Redirect {
    fn drop(&mut self) {
        unsafe {
            libc::dup2(self.saved[0], 0);
            libc::dup2(self.saved[1], 1);
            libc::close(self.saved[0]);
            libc::close(self.saved[1]);
        }
    }
}

fn open_pty(cols: u16, rows: u16) -> (RawFd, RawFd) {
    let (mut master, mut slave) = (0, 0);
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        )
    };
    assert_eq!(rc, 0, "openpty failed");
    (master, slave)
}

fn canonical(fd: RawFd) -> bool {
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::tcgetattr(fd, &mut t) }, 0);
    t.c_lflag & libc::ICANON != 0
}

fn set_size(master: RawFd, cols: u16, rows: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    assert_eq!(unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) }, 0);
}

/// Everything the PTY master reads, on a thread.
fn master_reader(master: RawFd) -> std_mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std_mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let n = unsafe { libc::read(master, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 || tx.send(buf[..n as usize].to_vec()).is_err() {
                return;
            }
        }
    });
    rx
}

async fn wait_until(mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("condition not reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_mode_keys_resize_and_restore_on_a_real_pty() {
    let (master, slave) = open_pty(90, 30);
    let screen = master_reader(master);
    let redirect = Redirect::to(slave);
    assert!(canonical(slave));
    let size = local_size();
    assert_eq!((size.cols, size.rows), (90, 30));

    let listener = Listener::bind().await;
    let target = SessionTarget {
        stream_url: listener.url.clone(),
        token: "t".into(),
        session_id: "s-1".into(),
    };
    let opts = ClientOptions {
        initial_size: size,
        ..ClientOptions::default()
    };
    let (client, mut peer) = tokio::join!(connect(target, opts), listener.accept());
    let (handle, events) = client.unwrap();
    let sent_size = peer.handshake().await;
    assert_eq!(sent_size.payload, br#"{"cols":90,"rows":30}"#);

    let bridge = tokio::spawn(bridge_stdio(handle, events, |_| {}, |_| {}));
    wait_until(|| !canonical(slave)).await;

    // One key without a newline reaches the session: no line buffering, no local echo.
    assert_eq!(unsafe { libc::write(master, b"q".as_ptr().cast(), 1) }, 1);
    let key = peer.next_input().await;
    assert_eq!(key.payload, b"q");
    peer.ack(&key).await;

    peer.send_out(PayloadType::Output, b"remote says hi").await;
    let mut shown = Vec::new();
    while !shown.ends_with(b"remote says hi") {
        shown.extend(screen.recv_timeout(WAIT).unwrap());
    }

    // The window changes; SIGWINCH (raised here, as we are not the PTY's session leader)
    // makes the bridge send the new size.
    set_size(master, 120, 40);
    let raiser = tokio::spawn(async {
        loop {
            unsafe { libc::raise(libc::SIGWINCH) };
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let resize = peer.next_input().await;
    raiser.abort();
    assert_eq!(resize.payload_type, PayloadType::Size);
    assert_eq!(resize.payload, br#"{"cols":120,"rows":40}"#);
    peer.ack(&resize).await;

    peer.send_out(PayloadType::ExitCode, &exit_code_payload(4))
        .await;
    peer.close_channel("bye").await;
    let end = tokio::time::timeout(WAIT, bridge)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(end.exit_code, Some(4));
    assert_eq!(end.reason, EndReason::Closed("bye".into()));
    assert!(canonical(slave), "terminal left in raw mode");
    drop(redirect);
}
