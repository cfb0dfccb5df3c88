//! How a CLI command reaches a broker and the person: the daemon or the data dir opened in
//! this process, the policy in force, the acting user and their TOTP code, exit statuses and
//! output. Every command module builds on this; it knows no command.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, OnceLock};

use anyhow::Context;

use crate::backend::config::Given;
use crate::backend::embedded::Embedded;
use crate::backend::remote::Remote;
use crate::backend::{self, Backend, BackendError, Config};
use crate::broker::{Broker, BrokerError};
use crate::cli::GlobalOpts;
use crate::cli::{ExitError, init_logging};
use crate::remote::session::RelayError;
use crate::review::ReviewError;
use crate::session::SessionError;
use crate::text::escape_for_terminal;
use crate::workflows::scan::ScanError;

/// Resolves the global options once into the [`Config`] every command is handed.
pub(crate) fn config(g: &GlobalOpts) -> Config {
    Config::resolve(Given {
        data_dir: g.data_dir.clone(),
        config_file: g.config.clone(),
        broker: g.broker.clone(),
        store: g.store.clone(),
        aws: g.aws(),
    })
}

/// Turns a broker or backend error into the right exit status: 1 for rules, 2 for input.
/// The one place where errors become exit statuses.
pub(crate) fn fail(e: impl Into<BackendError>) -> anyhow::Error {
    let refused = |m: String| anyhow::Error::new(ExitError::refused(m));
    let usage = |m: String| anyhow::Error::new(ExitError::usage(m));
    match e.into() {
        BackendError::Broker(e) => broker_fail(e),
        BackendError::Review(ReviewError::Broker(e)) => broker_fail(e),
        BackendError::Review(e) if e.is_input() => usage(e.to_string()),
        BackendError::Review(e) => refused(e.to_string()),
        BackendError::Scan(ScanError::Broker(e)) => broker_fail(e),
        BackendError::Scan(e) => anyhow::Error::new(e),
        BackendError::Session(SessionError::Broker(e)) => broker_fail(e),
        BackendError::Session(e) => refused(e.to_string()),
        BackendError::Relay(RelayError::Refused(m)) => refused(m),
        BackendError::Relay(RelayError::Rule(r)) => refused(r.to_string()),
        BackendError::Relay(e) => anyhow::Error::new(e),
        BackendError::Fleet(e) => anyhow::Error::new(e),
        BackendError::Key(e) => anyhow::Error::new(e),
        BackendError::Refused(m) => refused(m),
        BackendError::Input(m) => usage(m),
        BackendError::Failed(m) => anyhow::anyhow!(m),
    }
}

fn broker_fail(e: BrokerError) -> anyhow::Error {
    if e.is_refusal() {
        ExitError::refused(e.to_string()).into()
    } else if e.is_input() {
        ExitError::usage(e.to_string()).into()
    } else {
        anyhow::Error::new(e)
    }
}

/// The backend the commands and the TUI use: the daemon when one is configured, else the
/// data dir opened in this process (on first use).
pub(crate) fn backend(cfg: &Config) -> anyhow::Result<Arc<dyn Backend>> {
    match cfg.broker().map_err(fail)? {
        Some(endpoint) => {
            // A thin client may have no data dir of its own; logging is best effort there.
            if let Ok(paths) = cfg.paths() {
                let _ = init_logging(paths);
            }
            Ok(Arc::new(
                Remote::connect(&endpoint, &cfg.aws).map_err(fail)?,
            ))
        }
        None => Ok(Arc::new(Embedded::new(cfg.clone()))),
    }
}

/// The daemon to talk to: `--broker` / `SOMBRERO_BROKER`, else `broker` in the config file
/// (for the commands that only make sense on one side).
pub(crate) fn remote_endpoint(cfg: &Config) -> anyhow::Result<Option<crate::wire::Endpoint>> {
    cfg.broker().map_err(fail)
}

/// Opens the data dir in this process for commands that do not go through a daemon yet;
/// refused when one is configured, so they never act on a different store by surprise.
pub(crate) fn open(cfg: &Config) -> anyhow::Result<Arc<Broker>> {
    if let Some(e) = cfg.broker().map_err(fail)? {
        return Err(ExitError::usage(format!(
            "this command does not go through a broker daemon yet (--broker {e}): run it on the broker host without --broker"
        ))
        .into());
    }
    open_local(cfg)
}

/// Opens the broker on the data dir, with logging to its log file.
pub(crate) fn open_local(cfg: &Config) -> anyhow::Result<Arc<Broker>> {
    Embedded::new(cfg.clone()).broker().map_err(fail)
}

/// Who acts: the daemon's name for this connection (then `--as` is refused: identity comes
/// from the connection), else `--as`, else the OS user.
pub(crate) fn actor(backend: &dyn Backend, as_user: Option<String>) -> anyhow::Result<String> {
    let identity = wait(backend.identity())?;
    backend::acting(identity, as_user).map_err(fail)
}

/// `--as`, else the OS user.
pub(crate) fn who(as_user: Option<String>) -> anyhow::Result<String> {
    backend::who(as_user).map_err(fail)
}

/// An async runtime: `workers` 0 runs everything on this thread (one session's frames stay
/// on one thread: a multi-threaded runtime cost 4x the throughput of bulk output); more for
/// the TUI, whose loop, broker reads and fleet run side by side.
pub(crate) fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    b.enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Waits for a backend call on this thread, with its exit status on failure. One runtime for
/// the whole command: what a call leaves behind (a fleet's clients) stays usable by the next.
pub(crate) fn wait<T>(
    f: impl std::future::Future<Output = backend::Result<T>>,
) -> anyhow::Result<T> {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = match RT.get() {
        Some(rt) => rt,
        None => {
            let built = runtime(0)?;
            RT.get_or_init(|| built)
        }
    };
    rt.block_on(f).map_err(fail)
}

/// The TOTP code: `--code`, else a no-echo prompt on a terminal, else one line of stdin.
pub(crate) fn code(given: Option<String>, user: &str) -> anyhow::Result<String> {
    let code = match given {
        Some(c) => c,
        None if std::io::stdin().is_terminal() => {
            rpassword::prompt_password(format!("TOTP code for {user}: "))
                .context("reading the TOTP code")?
        }
        None => first_line_of_stdin().context("reading the TOTP code from stdin")?,
    };
    let code = code.trim().to_string();
    if code.is_empty() {
        return Err(ExitError::usage(format!(
            "no TOTP code given for {user}: pass --code CODE or type it when asked"
        ))
        .into());
    }
    Ok(code)
}

/// Prints one line of a table or prompt with everything in it made safe for a terminal
/// (stored, policy and AWS text may hold escape sequences or bidi overrides).
pub(crate) fn say(line: &str) {
    println!("{}", escape_for_terminal(line));
}

/// One line of stdin (at most 64 bytes), read byte by byte straight from fd 0, so nothing after
/// it is buffered away from a session that reads fd 0 next (`open` piping the shell's input).
fn first_line_of_stdin() -> std::io::Result<String> {
    use std::io::Read;
    use std::os::fd::AsFd;
    let mut fd0 = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 64 {
        match fd0.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

pub(crate) fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", crate::text::to_json_line(v)?)?;
    Ok(())
}
