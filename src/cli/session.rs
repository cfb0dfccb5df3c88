//! `sombrero open`: the session of an approved request, bridged to this terminal.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::ExitError;
use super::connection::{self, actor, code, fail, open as open_broker, remote_endpoint, who};
use crate::api::BrokerApi;
use crate::channel::terminal::{bridge_command_stdio, bridge_stdio, local_size};
use crate::config::{GlobalOpts, Paths};
use crate::fleet::Fleet;
use crate::fleet::aws::AwsFleet;
use crate::recording::RecorderKey;
use crate::remote::session::{self as relay, RelayError};
use crate::remote::{BoxIo, RemoteBroker};
use crate::session::{self, SessionDeps, SessionError, Step};
use crate::wire::session::exit_status;

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
fn say(step: &Step) {
    let line = step.to_string();
    let mut err = std::io::stderr().lock();
    let line = crate::text::escape_for_terminal(&line);
    let _ = if std::io::IsTerminal::is_terminal(&err) {
        write!(err, "\r\n[pink sombrero] {line}\r\n")
    } else {
        writeln!(err, "[pink sombrero] {line}")
    };
    let _ = err.flush();
}

/// What a session needs on this host: the fleet from the AWS options, the data dir's
/// recordings directory and recorder key. `sombrero serve` builds its hub from the same.
pub(crate) async fn session_deps(
    g: &GlobalOpts,
    broker: Arc<crate::broker::Broker>,
) -> anyhow::Result<SessionDeps<AwsFleet>> {
    let paths = Paths::resolve(g).map_err(|e| ExitError::usage(e.to_string()))?;
    let recordings_dir = crate::recording::recordings_dir(g.config.as_deref(), &paths)
        .map_err(|e| ExitError::usage(e.to_string()))?;
    let key = RecorderKey::load_or_create(&paths.keys())?;
    let fleet = Arc::new(AwsFleet::from_opts(g).await?);
    Ok(SessionDeps {
        broker,
        channel: fleet.channel_options(),
        fleet,
        recordings_dir,
        key: Arc::new(key),
        replace_timeout: session::REPLACE_TIMEOUT,
    })
}

/// Runs `sombrero open`: through the broker daemon when one is configured (it opens,
/// records and finishes the session; this process carries the terminal), else here.
pub fn open(g: &GlobalOpts, a: OpenArgs) -> anyhow::Result<ExitCode> {
    if let Some(endpoint) = remote_endpoint(g)? {
        let remote = RemoteBroker::connect(&endpoint).map_err(fail)?;
        let user = actor(&remote, a.as_user)?;
        let code = open_code(&remote, a.code, &user)?;
        if !a.command.is_empty() {
            let path = relay::command_path(&a.request, local_size(), &a.command);
            return relayed(&remote, &path, |io, req| async move {
                let req = relay::with_code(req, code.as_deref())?;
                relay::open_command(io, req).await.map(ExitCode::from)
            });
        }
        let path = relay::session_path(&a.request, local_size());
        return relayed(&remote, &path, |io, req| async move {
            let req = relay::with_code(req, code.as_deref())?;
            relay::open(io, req).await.map(ExitCode::from)
        });
    }
    let broker = Arc::new(open_broker(g)?);
    let user = who(a.as_user)?;
    let code = open_code(&*broker, a.code, &user)?;
    // One session, one thread: a multi-threaded runtime hands every frame between the
    // bridge and the session task across threads (a futex wake each way), which cost 4x the
    // throughput of bulk output. Broker calls still run on the blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let deps = session_deps(g, broker).await?;
        let command = (!a.command.is_empty()).then_some(a.command.as_slice());
        let opened = session::open_for(
            &deps,
            &a.request,
            &user,
            code.as_deref(),
            local_size(),
            command,
            |s| say(&s),
        )
        .await;
        let mut live = match opened {
            Ok(live) => live,
            Err(SessionError::Broker(e)) => return Err(fail(e)),
            Err(e) => return Err(ExitError::refused(e.to_string()).into()),
        };
        let Some(events) = live.events.take() else {
            return Err(anyhow::anyhow!("session events were already taken"));
        };
        let (out_tap, in_tap) = (live.tap.clone(), live.tap.clone());
        let end = if command.is_some() {
            bridge_command_stdio(live.handle.clone(), events, move |b| out_tap.output(b)).await
        } else {
            let resizes = tokio::spawn(record_resizes(live.tap.clone()));
            let end = bridge_stdio(
                live.handle.clone(),
                events,
                move |b| out_tap.output(b),
                move |b| in_tap.input(b),
            )
            .await;
            resizes.abort();
            end
        };
        let done = session::finish(&deps, live, end, |s| say(&s)).await;
        if let Err(why) = &done.seal {
            eprintln!("sombrero: the recording could not be sealed: {why}");
        }
        Ok(ExitCode::from(exit_status(&done.reason, done.exit_code)))
    })
}

/// Records every terminal resize (the bridge forwards them; this puts them in the cast).
async fn record_resizes(tap: session::RecorderTap) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut winch) = signal(SignalKind::window_change()) else {
        return;
    };
    while winch.recv().await.is_some() {
        if let Ok((cols, rows)) = crossterm::terminal::size() {
            let _ = tap.resize(cols, rows);
        }
    }
}

/// `sombrero watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Request id whose live session to watch (read-only; approvers and reviewers).
    pub request: String,
}

/// Runs `sombrero watch`: only a broker daemon holds a session others can watch.
pub fn watch(g: &GlobalOpts, a: WatchArgs) -> anyhow::Result<ExitCode> {
    let Some(endpoint) = remote_endpoint(g)? else {
        return Err(ExitError::usage(format!(
            "watching needs a broker daemon: a session opened without one lives in the process that opened it. Run `sombrero serve` and pass --broker to watch {}",
            a.request
        ))
        .into());
    };
    let remote = RemoteBroker::connect(&endpoint).map_err(fail)?;
    relayed(
        &remote,
        &relay::watch_path(&a.request),
        |io, req| async move {
            // On a terminal the screen is clipped to it; piped, it is drawn at the session's size.
            let view = std::io::stdout().is_terminal().then(|| {
                let size = local_size();
                let fit = |n: u32| u16::try_from(n).unwrap_or(u16::MAX);
                (fit(size.rows), fit(size.cols))
            });
            let watched =
                relay::watch(io, req, tokio::io::stdout(), tokio::io::stderr(), view).await?;
            Ok(match watched.ended {
                Some(_) => ExitCode::SUCCESS,
                None => {
                    eprintln!(
                        "sombrero: the connection to the broker ended before the session did"
                    );
                    ExitCode::from(1)
                }
            })
        },
    )
}

/// Connects a websocket at `path` on the daemon's transport and runs `session` over it.
fn relayed<Fut>(
    remote: &RemoteBroker,
    path: &str,
    session: impl FnOnce(BoxIo, relay::Request) -> Fut,
) -> anyhow::Result<ExitCode>
where
    Fut: std::future::Future<Output = Result<ExitCode, RelayError>>,
{
    let connector = remote.connector();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let io = connector.connect().await.map_err(|e| {
            ExitError::refused(format!(
                "cannot reach the broker at {}: {e} (is `sombrero serve` running, and may you use its socket?)",
                remote.endpoint()
            ))
        })?;
        let req = relay::request_for(&*connector, &io, path)
            .await
            .map_err(|e| ExitError::refused(e.to_string()))?;
        session(io, req).await.map_err(|e| match e {
            RelayError::Refused(m) => ExitError::refused(m).into(),
            other => anyhow::Error::new(other),
        })
    })
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

/// Runs `sombrero kill` on the embedded broker: the request is closed as terminated by the
/// approver (the process holding the session sees that within a second and ends it, sealing
/// and replacing), and the SSM session is terminated at the service as well.
pub fn kill(g: &GlobalOpts, a: KillArgs) -> anyhow::Result<ExitCode> {
    if let Some(endpoint) = remote_endpoint(g)? {
        // The daemon ends the session it holds (or, held elsewhere, at the service).
        let remote = RemoteBroker::connect(&endpoint).map_err(fail)?;
        let user = actor(&remote, a.as_user)?;
        let code = code(a.code, &user)?;
        let closed = remote
            .kill_session(&a.request, &user, &code)
            .map_err(fail)?;
        // The id comes back from the daemon: a peer's bytes.
        connection::say(&format!("{}: session terminated by {user}", closed.id));
        return Ok(ExitCode::SUCCESS);
    }
    let broker = open_broker(g)?;
    let user = who(a.as_user)?;
    let code = code(a.code, &user)?;
    let closed = broker
        .kill_session(&a.request, &user, &code)
        .map_err(fail)?;
    if let Some(sid) = closed.session_id.clone() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let ended =
            runtime.block_on(async { AwsFleet::from_opts(g).await?.terminate_session(&sid).await });
        if let Err(e) = ended {
            eprintln!(
                "sombrero: the request is closed, but TerminateSession failed ({e}); the session's own process ends it"
            );
        }
    }
    println!("{}: session terminated by {user}", closed.id);
    Ok(ExitCode::SUCCESS)
}
