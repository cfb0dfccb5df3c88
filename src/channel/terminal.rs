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
pub use super::pump::{EndReason, SessionEnd};
use super::pump::{Outlet, pump};

/// Byte a piped session sends when local input ends: Ctrl-D, end of input to the remote
/// shell, so `printf 'hostname\n' | sombrero open REQ` ends like `ssh host < script`.
const EOT: u8 = 0x04;

/// Longest a piped script waits for the remote shell's first output before it is sent.
const PIPED_HOLD: std::time::Duration = std::time::Duration::from_secs(2);

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
    io: LocalIo<W, E>,
    on_output: impl FnMut(&[u8]),
    on_input: impl FnMut(&[u8]),
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
    // A script is held back until the remote shell first speaks (its prompt), or for at most
    // PIPED_HOLD: input that reaches a terminal before the shell reads it is echoed twice,
    // once by the terminal and again by the shell's line editor.
    let hold_until =
        (io.mode == InputMode::Piped).then(|| tokio::time::Instant::now() + PIPED_HOLD);
    let mut local = Local {
        handle,
        io,
        on_output,
        on_input,
        notice_line: (before, after),
        input_open: true,
        hold_until,
    };
    pump(&mut events, &mut local).await
}

/// The local terminal (or a script on a pipe) as the session's outlet.
struct Local<W, E, O, I> {
    handle: SessionHandle,
    io: LocalIo<W, E>,
    on_output: O,
    on_input: I,
    notice_line: (&'static str, &'static str),
    input_open: bool,
    hold_until: Option<tokio::time::Instant>,
}

/// What a bridge waits for besides the session: the end of the hold, or local input.
enum LocalWake {
    HoldOver,
    Input(Option<Vec<u8>>),
}

impl<W, E, O, I> Outlet for Local<W, E, O, I>
where
    W: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
    O: FnMut(&[u8]),
    I: FnMut(&[u8]),
{
    type Wake = LocalWake;
    type Error = BridgeError;

    async fn wake(&mut self) -> LocalWake {
        if let Some(t) = self.hold_until {
            tokio::time::sleep_until(t).await;
            return LocalWake::HoldOver;
        }
        if !self.input_open {
            return std::future::pending().await;
        }
        LocalWake::Input(self.io.input.recv().await)
    }

    async fn woken(&mut self, wake: LocalWake) -> Result<(), BridgeError> {
        let data = match wake {
            LocalWake::HoldOver => {
                self.hold_until = None;
                return Ok(());
            }
            LocalWake::Input(Some(data)) => data,
            LocalWake::Input(None) => {
                self.input_open = false;
                match self.io.mode {
                    InputMode::Piped => vec![EOT],
                    InputMode::Interactive => return Ok(()),
                }
            }
        };
        (self.on_input)(&data);
        if self.handle.send_input(data).await.is_err() {
            // The session ended; its final event is still in the queue.
            self.input_open = false;
        }
        Ok(())
    }

    async fn output(&mut self, bytes: Vec<u8>) -> Result<(), BridgeError> {
        self.hold_until = None;
        (self.on_output)(&bytes);
        if let Err(e) = write_all(&mut self.io.output, &bytes).await {
            // Nobody sees the output any more: do not leave the shell running.
            let _ = self.handle.terminate();
            return Err(BridgeError::Output(e));
        }
        Ok(())
    }

    async fn stderr(&mut self, bytes: Vec<u8>) -> Result<(), BridgeError> {
        self.output(bytes).await
    }

    async fn exit_code(&mut self, _code: i32) -> Result<(), BridgeError> {
        Ok(())
    }

    async fn notice(&mut self, text: String) -> Result<(), BridgeError> {
        let text = crate::text::escape_for_terminal(&text);
        let (before, after) = self.notice_line;
        let line = format!("{before}[sombrero] {text}{after}");
        if let Err(e) = write_all(&mut self.io.notices, line.as_bytes()).await {
            debug!(error = %e, "notice not shown");
        }
        Ok(())
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
    stdout: W,
    stderr: E,
    interrupts: mpsc::UnboundedReceiver<()>,
    on_output: impl FnMut(&[u8]),
) -> Result<SessionEnd, BridgeError>
where
    W: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let mut local = CommandIo {
        handle,
        stdout,
        stderr,
        interrupts: Some(interrupts),
        on_output,
    };
    pump(&mut events, &mut local).await
}

/// A command's two local streams, and Ctrl-C, as the session's outlet.
struct CommandIo<W, E, O> {
    handle: SessionHandle,
    stdout: W,
    stderr: E,
    interrupts: Option<mpsc::UnboundedReceiver<()>>,
    on_output: O,
}

impl<W, E, O> CommandIo<W, E, O>
where
    W: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
    O: FnMut(&[u8]),
{
    /// Writes, records, and ends the session when nobody can see its output any more.
    async fn show(&mut self, bytes: &[u8], to_stderr: bool) -> Result<(), BridgeError> {
        let written = if to_stderr {
            write_all(&mut self.stderr, bytes).await
        } else {
            write_all(&mut self.stdout, bytes).await
        };
        (self.on_output)(bytes);
        if let Err(e) = written {
            let _ = self.handle.terminate();
            return Err(BridgeError::Output(e));
        }
        Ok(())
    }
}

impl<W, E, O> Outlet for CommandIo<W, E, O>
where
    W: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
    O: FnMut(&[u8]),
{
    type Wake = Option<()>;
    type Error = BridgeError;

    async fn wake(&mut self) -> Option<()> {
        match self.interrupts.as_mut() {
            Some(rx) => rx.recv().await,
            None => std::future::pending().await,
        }
    }

    async fn woken(&mut self, interrupt: Option<()>) -> Result<(), BridgeError> {
        match interrupt {
            Some(()) => {
                let _ = self.handle.send_input(vec![INTERRUPT]).await;
            }
            None => self.interrupts = None,
        }
        Ok(())
    }

    async fn output(&mut self, bytes: Vec<u8>) -> Result<(), BridgeError> {
        self.show(&bytes, false).await
    }

    async fn stderr(&mut self, bytes: Vec<u8>) -> Result<(), BridgeError> {
        self.show(&bytes, true).await
    }

    async fn exit_code(&mut self, _code: i32) -> Result<(), BridgeError> {
        Ok(())
    }

    async fn notice(&mut self, text: String) -> Result<(), BridgeError> {
        let line = format!("[sombrero] {text}\n");
        if let Err(e) = write_all(&mut self.stderr, line.as_bytes()).await {
            debug!(error = %e, "notice not shown");
        }
        Ok(())
    }
}
