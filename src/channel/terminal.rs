//! Bridges a running session to the local terminal for `sombrero open`: raw mode on a TTY
//! (restored on every path, panics included), plain passthrough when stdin is a pipe, window
//! size changes forwarded, and taps on both directions for the recorder.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use thiserror::Error;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::client::{SessionEvent, SessionHandle};
use super::limits;
use super::payload::SizeData;

/// Byte a piped session sends when local input ends: Ctrl-D, end of input to the remote
/// shell, so `printf 'hostname\n' | sombrero open REQ` ends like `ssh host < script`.
const EOT: u8 = 0x04;

/// Longest a piped script waits for the remote shell's first output before it is sent.
const PIPED_HOLD: std::time::Duration = std::time::Duration::from_secs(2);

/// How the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The service closed the channel or the client terminated it; the service's text.
    Closed(String),
    /// The session could not continue; what went wrong.
    Failed(String),
}

/// Result of a bridged session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    /// The remote shell's exit status, when the agent reported it.
    pub exit_code: Option<i32>,
    /// Why the session ended.
    pub reason: EndReason,
}

/// Local terminal failures.
#[derive(Debug, Error)]
pub enum BridgeError {
    /// Raw mode could not be switched on.
    #[error("could not put the terminal in raw mode: {0}")]
    RawMode(std::io::Error),
    /// The stdin reader thread could not be started.
    #[error("could not start reading the terminal: {0}")]
    Stdin(std::io::Error),
    /// Writing session output locally failed (e.g. the reading end of a pipe closed).
    #[error("could not write session output: {0}; the session was terminated")]
    Output(std::io::Error),
}

/// Whether local input is a person at a terminal or a script on a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputMode {
    /// A TTY in raw mode: every key goes to the remote side; end of input is not expected.
    Interactive,
    /// A pipe or file: at end of input the remote shell gets Ctrl-D.
    Piped,
}

/// The local ends of a bridge.
#[derive(Debug)]
pub struct LocalIo<W, E> {
    /// Keystrokes or script, in chunks; the channel closing is end of input.
    pub input: mpsc::Receiver<Vec<u8>>,
    /// Where remote output goes.
    pub output: W,
    /// Where notices go (not recorded as session output).
    pub notices: E,
    /// See [`InputMode`].
    pub mode: InputMode,
}

/// The size to report at session start: the local terminal's, or 300x100 without one.
pub fn local_size() -> SizeData {
    match terminal_size() {
        Some((cols, rows)) => SizeData {
            cols: u32::from(cols),
            rows: u32::from(rows),
        },
        None => SizeData {
            cols: limits::DEFAULT_COLS,
            rows: limits::DEFAULT_ROWS,
        },
    }
}

/// Columns and rows of the terminal on stdout, else on stdin (output may be piped to a log
/// while a person types). crossterm's `size()` asks /dev/tty first, which need not be either.
fn terminal_size() -> Option<(u16, u16)> {
    fd_size(libc::STDOUT_FILENO).or_else(|| fd_size(libc::STDIN_FILENO))
}

fn fd_size(fd: libc::c_int) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col, ws.ws_row))
}

/// Restores cooked mode when dropped; also installed (once) in the panic hook.
#[derive(Debug)]
struct RawModeGuard;

fn restore_terminal() {
    // Nothing useful can be done if this fails while exiting.
    let _ = crossterm::terminal::disable_raw_mode();
}

impl RawModeGuard {
    fn enable() -> Result<Self, BridgeError> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_terminal();
                previous(info);
            }));
        });
        crossterm::terminal::enable_raw_mode().map_err(BridgeError::RawMode)?;
        Ok(RawModeGuard)
    }
}

impl Drop for RawModeGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Bridges the process's stdin/stdout to the session until it ends. `on_output` sees every
/// byte shown to the user, `on_input` every byte sent, in order (for the recorder).
pub async fn bridge_stdio(
    handle: SessionHandle,
    events: mpsc::Receiver<SessionEvent>,
    on_output: impl FnMut(&[u8]),
    on_input: impl FnMut(&[u8]),
) -> Result<SessionEnd, BridgeError> {
    // Raw mode follows stdin: a person typing needs every key passed through, even when the
    // output goes to a pipe.
    let tty = std::io::stdin().is_terminal();
    let _raw = if tty {
        Some(RawModeGuard::enable()?)
    } else {
        None
    };
    let resizer = tty.then(|| tokio::spawn(forward_resizes(handle.clone())));
    let (input, _reader) = spawn_stdin_reader()?;
    let io = LocalIo {
        input,
        output: DirectStdout,
        notices: tokio::io::stderr(),
        mode: if tty {
            InputMode::Interactive
        } else {
            InputMode::Piped
        },
    };
    let result = bridge(handle, events, io, on_output, on_input).await;
    if let Some(task) = resizer {
        task.abort();
    }
    result
}

/// Stops the stdin reader thread when dropped.
#[derive(Debug)]
struct StopReader(Arc<AtomicBool>);

impl Drop for StopReader {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Writes straight to the process's stdout from the session's own thread. `tokio::io::stdout`
/// hands every write to the blocking pool and wakes the runtime afterwards; with a frame per
/// few hundred bytes of output that cost most of a bulk session's CPU. Blocking on the terminal
/// is the back-pressure a session wants anyway.
struct DirectStdout;

impl tokio::io::AsyncWrite for DirectStdout {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::io::Write;
        std::task::Poll::Ready(std::io::stdout().lock().write(buf))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::io::Write;
        std::task::Poll::Ready(std::io::stdout().lock().flush())
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// Reads fd 0 on a plain thread that polls with a timeout, so it stops soon after the bridge
/// ends instead of keeping a read pending (tokio's stdin would hold the runtime open and eat
/// the next keystroke).
fn spawn_stdin_reader() -> Result<(mpsc::Receiver<Vec<u8>>, StopReader), BridgeError> {
    let (tx, rx) = mpsc::channel(limits::BYTE_CHANNEL_CAPACITY);
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    std::thread::Builder::new()
        .name("sombrero-stdin".into())
        .spawn(move || {
            let mut buf = vec![0u8; limits::INPUT_CHUNK];
            while !stopped.load(Ordering::Relaxed) {
                match stdin_readable(limits::STDIN_POLL) {
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(e) => {
                        warn!(error = %e, "cannot poll stdin; no more input is sent");
                        return;
                    }
                }
                match read_stdin(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        warn!(error = %e, "local input failed; no more input is sent");
                        return;
                    }
                }
            }
        })
        .map_err(BridgeError::Stdin)?;
    Ok((rx, StopReader(stop)))
}

/// Waits up to `timeout` for fd 0 to have input (or end of input).
fn stdin_readable(timeout: std::time::Duration) -> std::io::Result<bool> {
    let mut fds = libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut fds, 1, ms) };
    match n {
        n if n < 0 => {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
        0 => Ok(false),
        _ => Ok(true),
    }
}

/// One unbuffered read from fd 0 (a buffered reader would hide data from `poll`).
fn read_stdin(buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let n = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
}

/// Sends the terminal size on every SIGWINCH.
async fn forward_resizes(handle: SessionHandle) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut winch = match signal(SignalKind::window_change()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot watch terminal size changes");
            return;
        }
    };
    while winch.recv().await.is_some() {
        if let Some((cols, rows)) = terminal_size()
            && handle.resize(cols, rows).is_err()
        {
            return;
        }
    }
}

/// Bridges arbitrary local streams to the session (what [`bridge_stdio`] runs; tests use
/// in-memory streams).
pub async fn bridge<W, E>(
    handle: SessionHandle,
    mut events: mpsc::Receiver<SessionEvent>,
    mut io: LocalIo<W, E>,
    mut on_output: impl FnMut(&[u8]),
    mut on_input: impl FnMut(&[u8]),
) -> Result<SessionEnd, BridgeError>
where
    W: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    // Piped: plain notice lines; on a terminal, on a line of their own whatever the cursor.
    let (before, after) = match io.mode {
        InputMode::Interactive => ("\r\n", "\r\n"),
        InputMode::Piped => ("", "\n"),
    };
    let mut exit_code = None;
    let mut input_open = true;
    // A script is held back until the remote shell first speaks (its prompt), or for at most
    // PIPED_HOLD: input that reaches a terminal before the shell reads it is echoed twice,
    // once by the terminal and again by the shell's line editor.
    let mut hold_until =
        (io.mode == InputMode::Piped).then(|| tokio::time::Instant::now() + PIPED_HOLD);
    loop {
        let hold = async {
            match hold_until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = hold => hold_until = None,
            event = events.recv() => {
                let Some(event) = event else {
                    return Ok(task_stopped(exit_code));
                };
                match event {
                    SessionEvent::Output(bytes) | SessionEvent::Stderr(bytes) => {
                        hold_until = None;
                        on_output(&bytes);
                        if let Err(e) = write_all(&mut io.output, &bytes).await {
                            // Nobody sees the output any more: do not leave the shell running.
                            let _ = handle.terminate();
                            return Err(BridgeError::Output(e));
                        }
                    }
                    SessionEvent::ExitCode(code) => exit_code = Some(code),
                    SessionEvent::Notice(text) => {
                        let text = crate::text::escape_for_terminal(&text);
                        let line = format!("{before}[sombrero] {text}{after}");
                        if let Err(e) = write_all(&mut io.notices, line.as_bytes()).await {
                            debug!(error = %e, "notice not shown");
                        }
                    }
                    SessionEvent::Closed { reason } => {
                        return Ok(SessionEnd { exit_code, reason: EndReason::Closed(reason) });
                    }
                    SessionEvent::Failed { error } => {
                        return Ok(SessionEnd { exit_code, reason: EndReason::Failed(error) });
                    }
                }
            }
            read = io.input.recv(), if input_open && hold_until.is_none() => {
                let data = match read {
                    Some(data) => data,
                    None => {
                        input_open = false;
                        match io.mode {
                            InputMode::Piped => vec![EOT],
                            InputMode::Interactive => continue,
                        }
                    }
                };
                on_input(&data);
                if handle.send_input(data).await.is_err() {
                    // The session ended; its final event is still in the queue.
                    input_open = false;
                }
            }
        }
    }
}

/// The end reported when the session task vanished without saying how the session ended.
fn task_stopped(exit_code: Option<i32>) -> SessionEnd {
    SessionEnd {
        exit_code,
        reason: EndReason::Failed("the session task stopped unexpectedly".into()),
    }
}

async fn write_all(w: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

/// Runs a one-shot command session (`open REQ -- CMD`) on this process's stdout and stderr:
/// the remote stdout to stdout, the remote stderr to stderr, nothing read from stdin, Ctrl-C
/// passed on (the agent turns it into SIGINT for the command).
pub async fn bridge_command_stdio(
    handle: SessionHandle,
    events: mpsc::Receiver<SessionEvent>,
    on_output: impl FnMut(&[u8]),
) -> Result<SessionEnd, BridgeError> {
    let (interrupt, interrupts) = mpsc::unbounded_channel();
    let watcher = tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if interrupt.send(()).is_err() {
                return;
            }
        }
    });
    let end = bridge_command(
        handle,
        events,
        DirectStdout,
        tokio::io::stderr(),
        interrupts,
        on_output,
    )
    .await;
    watcher.abort();
    end
}

/// Byte the agent turns into SIGINT for a command (A `agent/session/shell/shell_unix.go`).
const INTERRUPT: u8 = 0x03;

/// Bridges a command session to two local streams (what [`bridge_command_stdio`] runs).
/// `on_output` sees both streams' bytes in arrival order (for the recorder).
pub async fn bridge_command<W, E>(
    handle: SessionHandle,
    mut events: mpsc::Receiver<SessionEvent>,
    mut stdout: W,
    mut stderr: E,
    mut interrupts: mpsc::UnboundedReceiver<()>,
    mut on_output: impl FnMut(&[u8]),
) -> Result<SessionEnd, BridgeError>
where
    W: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let mut exit_code = None;
    let mut interrupts_open = true;
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else {
                    return Ok(task_stopped(exit_code));
                };
                let written = match &event {
                    SessionEvent::Output(bytes) => Some(write_all(&mut stdout, bytes).await),
                    SessionEvent::Stderr(bytes) => Some(write_all(&mut stderr, bytes).await),
                    _ => None,
                };
                if let SessionEvent::Output(b) | SessionEvent::Stderr(b) = &event {
                    on_output(b);
                }
                if let Some(Err(e)) = written {
                    let _ = handle.terminate();
                    return Err(BridgeError::Output(e));
                }
                match event {
                    SessionEvent::ExitCode(code) => exit_code = Some(code),
                    SessionEvent::Notice(text) => {
                        let line = format!("[sombrero] {text}\n");
                        if let Err(e) = write_all(&mut stderr, line.as_bytes()).await {
                            debug!(error = %e, "notice not shown");
                        }
                    }
                    SessionEvent::Closed { reason } => {
                        return Ok(SessionEnd { exit_code, reason: EndReason::Closed(reason) });
                    }
                    SessionEvent::Failed { error } => {
                        return Ok(SessionEnd { exit_code, reason: EndReason::Failed(error) });
                    }
                    SessionEvent::Output(_) | SessionEvent::Stderr(_) => {}
                }
            }
            i = interrupts.recv(), if interrupts_open => match i {
                Some(()) => {
                    let _ = handle.send_input(vec![INTERRUPT]).await;
                }
                None => interrupts_open = false,
            },
        }
    }
}
