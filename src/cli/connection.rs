//! How a CLI command reaches a broker and the person: the daemon or the data dir opened in
//! this process, the policy in force, the acting user and their TOTP code, exit statuses and
//! output. Every command module builds on this; it knows no command.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::Context;

use crate::api::BrokerApi;
use crate::broker::{Broker, BrokerError, BrokerOptions};
use crate::cli::{ExitError, init_logging};
use crate::config::{GlobalOpts, Paths};
use crate::policy::{self, Policy, PolicyError};
use crate::remote::RemoteBroker;
use crate::store::any::StoreSpec;
use crate::store::dynamo::AwsSelect;
use crate::text::escape_for_terminal;
use crate::wire::Endpoint;

/// The policy in force for these options without writing anything: the file if there is
/// one, else the documented default (what the first command that opens the data dir writes).
pub(crate) fn policy_or_default(g: &GlobalOpts, paths: &Paths) -> anyhow::Result<Policy> {
    let path = policy_path(g, paths)?;
    let text = if path.exists() {
        std::fs::read_to_string(&path).map_err(|source| {
            ExitError::usage(
                PolicyError::Read {
                    path: path.clone(),
                    source,
                }
                .to_string(),
            )
        })?
    } else {
        policy::DEFAULT_POLICY.to_owned()
    };
    Ok(Policy::parse(&text, &path).map_err(|e| ExitError::usage(e.to_string()))?)
}

/// The policy file for these options (env, then config file, then the data dir).
pub(crate) fn policy_path(g: &GlobalOpts, paths: &Paths) -> anyhow::Result<std::path::PathBuf> {
    crate::policy_file::resolve_path(g.config.as_deref(), paths)
        .map_err(|e| ExitError::usage(e.to_string()).into())
}

/// Turns a broker error into the right exit status: 1 for rules, 2 for input.
pub(crate) fn fail(e: BrokerError) -> anyhow::Error {
    if e.is_refusal() {
        ExitError::refused(e.to_string()).into()
    } else if e.is_input() {
        ExitError::usage(e.to_string()).into()
    } else {
        anyhow::Error::new(e)
    }
}

/// The daemon to talk to: `--broker` / `SOMBRERO_BROKER`, else `broker` in the config file.
pub(crate) fn remote_endpoint(g: &GlobalOpts) -> anyhow::Result<Option<Endpoint>> {
    if let Some(e) = &g.broker {
        return Ok(Some(e.clone()));
    }
    let paths = Paths::resolve(g).map_err(|e| ExitError::usage(e.to_string()))?;
    let Some((text, file)) = crate::config::config_string(g.config.as_deref(), &paths, "broker")
        .map_err(|e| ExitError::usage(e.to_string()))?
    else {
        return Ok(None);
    };
    text.parse()
        .map(Some)
        .map_err(|e| ExitError::usage(format!("{}: broker: {e}", file.display())).into())
}

/// The broker the access commands and the TUI use: the daemon when one is configured, else
/// the data dir opened in this process.
pub(crate) fn connect(g: &GlobalOpts) -> anyhow::Result<Arc<dyn BrokerApi>> {
    match remote_endpoint(g)? {
        Some(endpoint) => {
            // A thin client may have no data dir of its own; logging is best effort there.
            if let Ok(paths) = Paths::resolve(g) {
                let _ = init_logging(&paths);
            }
            Ok(Arc::new(
                RemoteBroker::connect_with(&endpoint, g).map_err(fail)?,
            ))
        }
        None => Ok(Arc::new(open_local(g)?)),
    }
}

/// Opens the data dir in this process for commands that do not go through a daemon yet;
/// refused when one is configured, so they never act on a different store by surprise.
pub(crate) fn open(g: &GlobalOpts) -> anyhow::Result<Broker> {
    if let Some(e) = remote_endpoint(g)? {
        return Err(ExitError::usage(format!(
            "this command does not go through a broker daemon yet (--broker {e}): run it on the broker host without --broker"
        ))
        .into());
    }
    open_local(g)
}

/// Opens the broker on the data dir, with logging to its log file.
pub(crate) fn open_local(g: &GlobalOpts) -> anyhow::Result<Broker> {
    let paths = Paths::resolve(g).map_err(|e| ExitError::usage(e.to_string()))?;
    init_logging(&paths)?;
    let opts = BrokerOptions {
        policy_path: Some(policy_path(g, &paths)?),
        clock: None,
    };
    let spec = spec(g, &paths)?;
    let broker = Broker::open_store(&paths, opts, &spec).map_err(fail)?;
    if broker.policy_created() {
        eprintln!(
            "sombrero: wrote the default policy to {} (two approvals, any enrolled approver); review it with `sombrero policy check`",
            broker.policy_path().display()
        );
    }
    Ok(broker)
}

/// Who acts: the daemon's name for this connection (then `--as` is refused: identity comes
/// from the connection), else `--as`, else the OS user.
pub(crate) fn actor(api: &dyn BrokerApi, as_user: Option<String>) -> anyhow::Result<String> {
    match api.identity().map_err(fail)? {
        Some(me) => match as_user {
            Some(other) => Err(ExitError::usage(format!(
                "--as {other} cannot be used with a broker daemon: it knows you as {me} from your connection (your OS user or IAM identity)"
            ))
            .into()),
            None => Ok(me),
        },
        None => who(as_user),
    }
}

/// `--as`, else the OS user.
pub(crate) fn who(as_user: Option<String>) -> anyhow::Result<String> {
    as_user
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ExitError::usage("cannot tell who you are: pass --as NAME").into())
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

/// The broker daemon, when `--broker` (or the config) names one.
pub(crate) fn remote(g: &GlobalOpts) -> anyhow::Result<Option<RemoteBroker>> {
    remote_endpoint(g)?
        .map(|e| RemoteBroker::connect_with(&e, g).map_err(fail))
        .transpose()
}

/// A recording's name as the broker lists it (the argument of verify, replay and review).
pub(crate) fn remote_name(file: &std::path::Path) -> anyhow::Result<&str> {
    file.to_str().ok_or_else(|| {
        ExitError::usage(format!("{} is not a recording name", file.display())).into()
    })
}

/// The store named by `--store`, `SOMBRERO_STORE` or the config file, else SQLite.
pub(crate) fn spec(g: &GlobalOpts, paths: &Paths) -> anyhow::Result<StoreSpec> {
    let mut spec = StoreSpec::resolve(g.store.as_deref(), g.config.as_deref(), paths)
        .map_err(|e| ExitError::usage(e.to_string()))?;
    // The table is reached with the same --profile/--region as every other AWS call.
    if let StoreSpec::Dynamo { aws, .. } = &mut spec {
        *aws = aws_select(g);
    }
    Ok(spec)
}

/// The AWS profile and region the global options name.
pub(crate) fn aws_select(g: &GlobalOpts) -> AwsSelect {
    AwsSelect {
        profile: g.profile.clone(),
        region: g.region.clone(),
    }
}
