//! `sombrero open`: the session of an approved request, bridged to this terminal.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::connection::{self, actor, code, fail, wait};
use crate::api::BrokerApi;
use crate::backend::{Config, Progress, TerminalOpen};

/// `sombrero open` (its exit status is documented on the subcommand).
#[derive(Debug, Args)]
pub struct OpenArgs {
    /// Request id (must be Approved and yours).
    pub request: String,
    /// Who opens (default: the OS user); must be the requester.
    #[arg(long = "as", value_name = "NAME")]
    pub as_user: Option<String>,
    /// Run one command instead of a shell (`-- CMD ARGS`): its stdout to stdout, its stderr to
    /// stderr, its exit status as ours; recorded and sealed like a shell. A request made with
    /// `--command` opens only that command.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
    /// TOTP code (else prompted on a terminal, else one line of stdin) when the policy wants
    /// one at open (`mfa.at_open`, the default); pass it when piping the shell's input.
    #[arg(long)]
    pub code: Option<String>,
}

/// The code for opening: asked for when given or when the policy wants one at open.
fn open_code(
    api: &dyn BrokerApi,
    given: Option<String>,
    user: &str,
) -> anyhow::Result<Option<String>> {
    if given.is_none() && !api.policy().map_err(fail)?.mfa.at_open {
        return Ok(None);
    }
    code(given, user).map(Some)
}

/// Prints a progress line on stderr: on a terminal `\r\n` around it (the terminal may be in
/// raw mode), elsewhere a plain line a log or a script can read.
fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let line = crate::text::escape_for_terminal(line);
    let _ = if std::io::IsTerminal::is_terminal(&err) {
        write!(err, "\r\n[pink sombrero] {line}\r\n")
    } else {
        writeln!(err, "[pink sombrero] {line}")
    };
    let _ = err.flush();
}

/// Runs `sombrero open`: through the broker daemon when one is configured (it opens,
/// records and finishes the session; this process carries the terminal), else here.
pub fn open(g: &Config, a: OpenArgs) -> anyhow::Result<ExitCode> {
    let backend = connection::backend(g)?;
    let api = backend.api().map_err(fail)?;
    let user = actor(&*backend, a.as_user)?;
    let code = open_code(&*api, a.code, &user)?;
    let req = TerminalOpen {
        request: a.request,
        user,
        code,
        command: a.command,
    };
    let steps: Progress = Arc::new(|line| say(&line));
    Ok(ExitCode::from(wait(backend.open_terminal(req, steps))?))
}

/// `sombrero watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Request id whose live session to watch (read-only; approvers and reviewers).
    pub request: String,
}

/// Runs `sombrero watch`: only a broker daemon holds a session others can watch.
pub fn watch(g: &Config, a: WatchArgs) -> anyhow::Result<ExitCode> {
    let backend = connection::backend(g)?;
    Ok(ExitCode::from(wait(backend.watch_terminal(a.request))?))
}

/// `sombrero kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Request id whose live session to end (approvers).
    pub request: String,
    /// Who kills (default: the OS user); must be an approver.
    #[arg(long = "as", value_name = "NAME")]
    pub as_user: Option<String>,
    /// The killer's TOTP code (else prompted on a terminal, else one line of stdin).
    #[arg(long)]
    pub code: Option<String>,
}

/// Runs `sombrero kill`: the request is closed as terminated by the approver (the process
/// holding the session sees that within a second and ends it, sealing and replacing), and the
/// SSM session is terminated at the service as well (through a daemon: the daemon ends the
/// session it holds).
pub fn kill(g: &Config, a: KillArgs) -> anyhow::Result<ExitCode> {
    let backend = connection::backend(g)?;
    let user = actor(&*backend, a.as_user)?;
    let code = code(a.code, &user)?;
    let killed = wait(backend.kill(a.request, user.clone(), code))?;
    if let Some(w) = &killed.warning {
        eprintln!("sombrero: {w}");
    }
    // The id may come back from a daemon: a peer's bytes.
    connection::say(&format!(
        "{}: session terminated by {user}",
        killed.request.id
    ));
    Ok(ExitCode::SUCCESS)
}
