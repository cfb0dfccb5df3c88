//! One node shell on a pseudo-terminal: bash (or sh) in the node's scratch home, with a
//! scrubbed environment so the lab's own credentials never reach a node.
//!
//! Blocking PTY I/O runs on two plain threads (reader, writer); the session task talks to
//! them through channels. The reader reports output in order and then the exit status.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};
use thiserror::Error;
use tokio::sync::mpsc;

use crate::channel::payload::SizeData;

/// Largest chunk of shell output put in one frame (the agent's stream payload size).
pub(crate) const OUTPUT_CHUNK: usize = 1024;

/// What a node shell is started with.
#[derive(Debug, Clone)]
pub(crate) struct ShellSpec {
    /// Node id, also what `hostname` prints.
    pub node_id: String,
    /// Scratch home (HOME and cwd).
    pub home: PathBuf,
    /// Directory put first on PATH (holds the node's `hostname`).
    pub bin: PathBuf,
}

/// Something the shell did.
#[derive(Debug)]
pub(crate) enum ShellEvent {
    /// Bytes written to the terminal (a command's standard output).
    Output(Vec<u8>),
    /// Bytes a command wrote to its standard error (never from a terminal).
    Stderr(Vec<u8>),
    /// The shell exited with this code (after all its output).
    Exited(i32),
}

/// Failure to start a shell.
#[derive(Debug, Error)]
pub enum ShellError {
    /// The PTY or the process could not be created.
    #[error("cannot start the node shell: {0}")]
    Spawn(String),
}

/// A running shell; dropping it hangs the shell up.
pub(crate) struct Shell {
    input: std::sync::mpsc::Sender<Vec<u8>>,
    master: Box<dyn MasterPty + Send>,
    pid: Option<u32>,
    exited: Arc<AtomicBool>,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell").field("pid", &self.pid).finish()
    }
}

fn pty_size(size: SizeData) -> PtySize {
    PtySize {
        rows: size.rows.clamp(1, u16::MAX as u32) as u16,
        cols: size.cols.clamp(1, u16::MAX as u32) as u16,
        pixel_width: 0,
        pixel_height: 0,
    }
}

/// bash if present (first on the usual paths), else sh.
fn shell_program() -> (PathBuf, bool) {
    for p in ["/bin/bash", "/usr/bin/bash", "/usr/local/bin/bash"] {
        if Path::new(p).exists() {
            return (PathBuf::from(p), true);
        }
    }
    (PathBuf::from("/bin/sh"), false)
}

fn command(spec: &ShellSpec) -> CommandBuilder {
    let (program, is_bash) = shell_program();
    let mut cmd = CommandBuilder::new(&program);
    let prompt = if is_bash {
        // Skip rc files so the host's profile cannot change what a node looks like.
        cmd.arg("--noprofile");
        cmd.arg("--norc");
        format!("lab@{}:\\w\\$ ", spec.node_id)
    } else {
        format!("lab@{}$ ", spec.node_id)
    };
    cmd.env_clear();
    cmd.cwd(&spec.home);
    for (k, v) in node_env(spec, &program) {
        cmd.env(k, v);
    }
    cmd.env("PS1", prompt);
    cmd
}

/// The whole environment of a node process: scrubbed, so the lab's own credentials never
/// reach a node (the agent sets TERM and LANG the same way, A `agent/session/shell/shell_unix.go`).
pub(crate) fn node_env(spec: &ShellSpec, shell: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("HOME", spec.home.display().to_string()),
        (
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", spec.bin.display()),
        ),
        ("USER", "lab".into()),
        ("LOGNAME", "lab".into()),
        ("SHELL", shell.display().to_string()),
        ("TERM", "xterm-256color".into()),
        ("LANG", "C.UTF-8".into()),
        ("HOSTNAME", spec.node_id.clone()),
    ]
}

/// Starts a shell at `size`; output and exit arrive on the returned receiver.
pub(crate) fn spawn(
    spec: &ShellSpec,
    size: SizeData,
) -> Result<(Shell, mpsc::Receiver<ShellEvent>), ShellError> {
    let err = |e: &dyn std::fmt::Display| ShellError::Spawn(e.to_string());
    let pair = native_pty_system()
        .openpty(pty_size(size))
        .map_err(|e| err(&e))?;
    let mut child = pair
        .slave
        .spawn_command(command(spec))
        .map_err(|e| err(&e))?;
    // Our copy of the slave must go, or reads on the master never see the shell's exit.
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().map_err(|e| err(&e))?;
    let mut writer = pair.master.take_writer().map_err(|e| err(&e))?;
    let pid = child.process_id();
    let exited = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel(64);
    let (input, input_rx) = std::sync::mpsc::channel::<Vec<u8>>();

    std::thread::Builder::new()
        .name(format!("lab-pty-in-{}", spec.node_id))
        .spawn(move || {
            for chunk in input_rx {
                if writer
                    .write_all(&chunk)
                    .and_then(|_| writer.flush())
                    .is_err()
                {
                    break;
                }
            }
        })
        .map_err(|e| err(&e))?;

    let exited_flag = exited.clone();
    std::thread::Builder::new()
        .name(format!("lab-pty-out-{}", spec.node_id))
        .spawn(move || {
            let mut buf = [0u8; OUTPUT_CHUNK];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx
                            .blocking_send(ShellEvent::Output(buf[..n].to_vec()))
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // EIO once the shell and everything it started have closed the terminal.
                    Err(_) => break,
                }
            }
            let code = child.wait().map(|s| s.exit_code() as i32).unwrap_or(-1);
            exited_flag.store(true, Ordering::SeqCst);
            let _ = tx.blocking_send(ShellEvent::Exited(code));
        })
        .map_err(|e| err(&e))?;

    Ok((
        Shell {
            input,
            master: pair.master,
            pid,
            exited,
        },
        rx,
    ))
}

impl Shell {
    /// Queues keystrokes for the terminal.
    pub(crate) fn write(&self, bytes: Vec<u8>) {
        let _ = self.input.send(bytes);
    }

    /// Resizes the terminal (the shell gets SIGWINCH).
    pub(crate) fn resize(&self, size: SizeData) {
        if let Err(e) = self.master.resize(pty_size(size)) {
            tracing::warn!(error = %e, "cannot resize node terminal");
        }
    }

    /// Ends the node's terminal session at once: SIGKILL to every process in the session the
    /// shell leads, then once more shortly after for anything forked in between. A gentler
    /// hang-up lets the shell run the rest of a command line (`sleep 60; echo LATE`) after a
    /// session was terminated, and a foreground job could keep the terminal open.
    pub(crate) fn kill(&self) {
        let Some(pid) = self.pid else { return };
        if self.exited.load(Ordering::SeqCst) {
            return;
        }
        let Ok(pid) = i32::try_from(pid) else { return };
        kill_session(pid);
        let exited = self.exited.clone();
        let _ = std::thread::Builder::new()
            .name("lab-pty-reaper".into())
            .spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                if !exited.load(Ordering::SeqCst) {
                    kill_session(pid);
                }
            });
    }
}

/// SIGKILL to every process in session `sid`, the shell first so it forks nothing more.
pub(crate) fn kill_session(sid: i32) {
    // SAFETY: plain signal delivery to the shell we started and processes in its session.
    unsafe { libc::kill(sid, libc::SIGKILL) };
    for member in session_members(sid) {
        // SAFETY: as above.
        unsafe { libc::kill(member, libc::SIGKILL) };
    }
}

/// Processes whose session id is `sid` (the shell leads its own session on the terminal).
fn session_members(sid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![sid];
    };
    let mut out: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|stat| {
                    // Fields after the parenthesised command: state ppid pgrp session ...
                    let rest = &stat[stat.rfind(')')? + 2..];
                    rest.split_whitespace().nth(3)?.parse::<i32>().ok()
                })
                == Some(sid)
        })
        .collect();
    if !out.contains(&sid) {
        out.push(sid);
    }
    out
}

impl Drop for Shell {
    fn drop(&mut self) {
        self.kill();
    }
}
