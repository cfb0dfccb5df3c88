//! One non-interactive command, as the agent runs a `NonInteractiveCommands` session
//! (A `agent/session/shell/shell_unix.go`, `StartCommandExecutor`): the document's command line
//! split into words like a POSIX shell would (the agent uses shlex) and executed without a
//! shell and without stdin; stdout and stderr read separately; then the exit status (-1 when
//! a signal ended it, as Go's `ExitCode` reports).

use std::os::unix::process::CommandExt;
use std::process::Stdio;

use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::shell::{OUTPUT_CHUNK, ShellError, ShellEvent, ShellSpec, kill_session, node_env};

/// A running command; dropping it kills the command and everything it started.
#[derive(Debug)]
pub(crate) struct Running {
    pid: i32,
    exited: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Starts `line` on the node; output, standard error and the exit status arrive on the
/// returned receiver, the exit status last.
pub(crate) fn spawn(
    spec: &ShellSpec,
    line: &str,
) -> Result<(Running, mpsc::Receiver<ShellEvent>), ShellError> {
    let words = crate::command_line::split(line)
        .filter(|w| !w.is_empty())
        .ok_or_else(|| ShellError::Spawn(format!("cannot parse the command line {line:?}")))?;
    let mut cmd = tokio::process::Command::new(&words[0]);
    cmd.args(&words[1..])
        .env_clear()
        .envs(node_env(spec, std::path::Path::new("/bin/sh")))
        .current_dir(&spec.home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Its own session, so a kill reaches whatever it started.
    // SAFETY: setsid is async-signal-safe and touches only the child.
    unsafe {
        cmd.as_std_mut().pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| ShellError::Spawn(format!("{}: {e}", words[0])))?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| ShellError::Spawn("the command has no process id".into()))?;
    let (tx, rx) = mpsc::channel(64);
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(ShellError::Spawn(
            "the command's output pipes are missing".into(),
        ));
    };
    let exited = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let exited_flag = exited.clone();
    tokio::spawn(async move {
        let (mut out_buf, mut err_buf) = ([0u8; OUTPUT_CHUNK], [0u8; OUTPUT_CHUNK]);
        let (mut out_open, mut err_open) = (true, true);
        while out_open || err_open {
            let event = tokio::select! {
                n = stdout.read(&mut out_buf), if out_open => match n {
                    Ok(n) if n > 0 => ShellEvent::Output(out_buf[..n].to_vec()),
                    _ => { out_open = false; continue; }
                },
                n = stderr.read(&mut err_buf), if err_open => match n {
                    Ok(n) if n > 0 => ShellEvent::Stderr(err_buf[..n].to_vec()),
                    _ => { err_open = false; continue; }
                },
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
        let code = child.wait().await.ok().and_then(|s| s.code()).unwrap_or(-1);
        exited_flag.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = tx.send(ShellEvent::Exited(code)).await;
    });
    Ok((Running { pid, exited }, rx))
}

impl Running {
    /// Sends `signal` to the command (the agent turns Ctrl-C and friends into signals).
    pub(crate) fn signal(&self, signal: libc::c_int) {
        if !self.exited.load(std::sync::atomic::Ordering::SeqCst) {
            // SAFETY: plain signal delivery to the command we started.
            unsafe { libc::kill(self.pid, signal) };
        }
    }

    /// Kills the command and everything in its session.
    pub(crate) fn kill(&self) {
        if !self.exited.load(std::sync::atomic::Ordering::SeqCst) {
            kill_session(self.pid);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The signal the agent sends for a control byte in a command session's input
/// (A `agent/appconfig`, `ByteControlSignalsLinux`: Ctrl-C and Ctrl-\ only).
pub(crate) fn control_signal(byte: u8) -> Option<libc::c_int> {
    match byte {
        0x03 => Some(libc::SIGINT),
        0x1c => Some(libc::SIGQUIT),
        _ => None,
    }
}
