//! `sombrero` (the TUI) and `sombrero demo`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use crate::broker::{Broker, BrokerOptions};
use crate::cli::ExitError;
use crate::cli::connection;
use crate::cli::wiring;
use crate::config::{GlobalOpts, Paths};
use crate::fleet::aws::AwsFleet;
use crate::lab::{self, LabConfig};
use crate::policy::Role;
use crate::recording::RecorderKey;
use crate::remote::RemoteBroker;
use crate::session::{self, SessionDeps};
use crate::tui::demo::{DemoUser, demo_codes_fn};
use crate::tui::driver::FleetFn;
use crate::tui::theme::Theme;
use crate::tui::{TuiContext, fleet_view, run_tui};
use crate::wire::Endpoint;

/// `sombrero tui`.
#[derive(Debug, Default, Args)]
pub struct TuiArgs {
    /// Colour theme (`default`, `high-contrast`, `light`, or a path to a theme TOML).
    #[arg(long, env = "SOMBRERO_THEME")]
    pub theme: Option<String>,
    /// Act as this user (default: the OS user).
    #[arg(long = "as", value_name = "NAME")]
    pub as_user: Option<String>,
}

/// `sombrero demo`.
#[derive(Debug, Default, Args)]
pub struct DemoArgs {
    /// Number of lab nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Colour theme.
    #[arg(long, env = "SOMBRERO_THEME")]
    pub theme: Option<String>,
}

/// The theme: `--theme` / `SOMBRERO_THEME`, else `theme` in the config file, else `default`;
/// `NO_COLOR` (set and non-empty) removes colours.
pub fn choose_theme(g: &GlobalOpts, flag: Option<&str>) -> anyhow::Result<Theme> {
    let paths = Paths::resolve(g).map_err(|e| ExitError::usage(e.to_string()))?;
    let config = g.config.clone().unwrap_or_else(|| paths.config());
    let from_config = theme_in_config(&config)?;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    // Bare `sombrero` has no clap args to read the variable into, so it is read here too.
    let from_env = std::env::var("SOMBRERO_THEME")
        .ok()
        .filter(|t| !t.is_empty());
    let choice = flag.or(from_env.as_deref()).or(from_config.as_deref());
    let user_dir = crate::tui::theme::user_themes_dir();
    Theme::choose_in(choice, user_dir.as_deref(), no_color)
        .map_err(|e| ExitError::usage(e.to_string()).into())
}

fn theme_in_config(path: &Path) -> anyhow::Result<Option<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| ExitError::usage(format!("{}: {e}", path.display())))?;
    match table.get("theme") {
        None => Ok(None),
        Some(toml::Value::String(t)) => Ok(Some(t.clone())),
        Some(_) => Err(ExitError::usage(format!(
            "{}: theme must be a string (default, high-contrast, light or a path)",
            path.display()
        ))
        .into()),
    }
}

/// A fleet listing from the global options (lab endpoint or AWS), marking nodes older than
/// `max_age` OLD; errors show on the Fleet screen instead of stopping the TUI.
pub fn fleet_from_opts(g: &GlobalOpts, max_age: Option<std::time::Duration>) -> FleetFn {
    let g = g.clone();
    let fleet: Arc<tokio::sync::OnceCell<Result<FleetFn, String>>> = Arc::default();
    Arc::new(move || {
        let g = g.clone();
        let fleet = Arc::clone(&fleet);
        Box::pin(async move {
            let f = fleet
                .get_or_init(|| async {
                    AwsFleet::from_opts(&g)
                        .await
                        .map(|f| fleet_view::fleet_fn(Arc::new(f), max_age))
                        .map_err(|e| e.to_string())
                })
                .await
                .clone()?;
            f().await
        })
    })
}

/// Runs the TUI.
pub fn tui(g: &GlobalOpts, a: TuiArgs) -> anyhow::Result<ExitCode> {
    let theme = choose_theme(g, a.theme.as_deref())?;
    if let Some(endpoint) = connection::remote_endpoint(g)? {
        return remote_tui(g, &endpoint, a, theme);
    }
    let broker = Arc::new(connection::open(g)?);
    let max_age = broker.policy().map_err(connection::fail)?.max_instance_age;
    let user = local_user(&broker, a.as_user)?;
    let paths = Paths::resolve(g).map_err(|e| ExitError::usage(e.to_string()))?;
    let recordings_dir = crate::recording::recordings_dir(g.config.as_deref(), &paths)
        .map_err(|e| ExitError::usage(e.to_string()))?;
    let key = RecorderKey::load_or_create(&paths.keys())?;
    let verifying = key.verifying_key();
    let rt = runtime()?;
    // Sessions need a fleet; without one (no region, no endpoint) the TUI still runs and the
    // Fleet screen says what is missing.
    let open_session = match rt.block_on(AwsFleet::from_opts(g)) {
        Ok(fleet) => Some(wiring::session_opener(session_deps(
            &broker,
            Arc::new(fleet),
            recordings_dir.clone(),
            key,
        ))),
        Err(e) => {
            tracing::warn!(error = %e, "no fleet: sessions cannot be opened from this TUI");
            None
        }
    };
    let notify_broker = Arc::clone(&broker);
    let ctx = TuiContext {
        recordings: Some(wiring::recordings_fn(
            broker.clone(),
            recordings_dir,
            Some(verifying),
        )),
        replay: Some(wiring::replay_fn(broker.clone(), Some(verifying))),
        broker,
        user,
        theme,
        demo_codes: None,
        fleet: Some(fleet_from_opts(g, max_age)),
        open_session,
    };
    // Embedded, this process is the broker: it delivers notifications while the TUI runs.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let notifier = rt.spawn(crate::notify::worker::run(notify_broker, stopping));
    let outcome = rt.block_on(run_tui(ctx));
    let _ = stop.send(true);
    let _ = rt.block_on(notifier);
    outcome?;
    Ok(ExitCode::SUCCESS)
}

/// What a new person should do on a data dir where nobody is enrolled yet.
const NOBODY_ENROLLED: &str = "nobody is enrolled here yet, so there is no one to act as.
  On this machine, enrol the first people (each gets a TOTP secret for their phone):
    sombrero user add NAME --role requester|approver|reviewer
  Or try everything first with three demo users and a lab fleet:
    sombrero demo";

/// Who the local TUI acts as: `--as`, else the OS user, if enrolled. On a fresh data dir, or
/// for a name nobody enrolled, says what to do instead (exit 2).
fn local_user(broker: &Broker, as_user: Option<String>) -> anyhow::Result<String> {
    let users = broker.users().map_err(connection::fail)?;
    if users.is_empty() {
        return Err(ExitError::usage(NOBODY_ENROLLED).into());
    }
    let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
    let given = as_user.is_some();
    let who = connection::who(as_user).ok();
    if let Some(name) = &who
        && names.contains(&name.as_str())
    {
        return Ok(name.clone());
    }
    let whom = match (&who, given) {
        (Some(name), true) => format!("{name} is not enrolled here"),
        (Some(name), false) => format!(
            "you are {name} on this machine, and nobody by that name is enrolled: choose who with `sombrero tui --as NAME`"
        ),
        (None, _) => "cannot tell who you are: choose with `sombrero tui --as NAME`".to_string(),
    };
    Err(ExitError::usage(format!(
        "{}.\n  Enrolled here: {}\n  e.g. sombrero tui --as {}",
        whom,
        names.join(", "),
        names[0]
    ))
    .into())
}

/// The TUI against a `sombrero serve` daemon: the user is the connection's identity.
/// Sessions go through the daemon's relay; recordings are listed by the daemon and
/// downloaded to be verified and played here.
fn remote_tui(
    g: &GlobalOpts,
    endpoint: &Endpoint,
    a: TuiArgs,
    theme: Theme,
) -> anyhow::Result<ExitCode> {
    let remote = Arc::new(RemoteBroker::connect_with(endpoint, g).map_err(connection::fail)?);
    let user = connection::actor(&*remote, a.as_user)?;
    // Sessions are the daemon's: it opens, records and replaces; the pane carries bytes.
    let open_session = Some(wiring::relay_opener(remote.connector()));
    let ctx = TuiContext {
        // Listed by the daemon; replayed here after downloading, verified with its key.
        recordings: Some(wiring::remote_recordings_fn(remote.clone())),
        replay: Some(wiring::remote_replay_fn(remote.clone())),
        // Listed by the daemon with its fleet: this client may hold no AWS credentials.
        fleet: Some(wiring::remote_fleet_fn(remote.clone())),
        broker: remote,
        user,
        theme,
        demo_codes: None,
        open_session,
    };
    runtime()?.block_on(run_tui(ctx))?;
    Ok(ExitCode::SUCCESS)
}

/// What a session needs, from the data dir's paths.
fn session_deps(
    broker: &Arc<Broker>,
    fleet: Arc<AwsFleet>,
    recordings_dir: PathBuf,
    key: RecorderKey,
) -> SessionDeps<AwsFleet> {
    SessionDeps {
        broker: broker.clone(),
        channel: fleet.channel_options(),
        fleet,
        recordings_dir,
        key: Arc::new(key),
        replace_timeout: session::REPLACE_TIMEOUT,
    }
}

/// A multi-threaded runtime: the UI loop, broker reads and the fleet run side by side.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The demo's policy: the real rules (two approvers, TOTP, short TTLs) and the lab's
/// replacement document, so the whole lifecycle runs end to end.
const DEMO_POLICY: &str = r#"# pink-sombrero demo policy (written by `sombrero demo`).
requesters = ["oncall"]
approvers = ["alice", "bob"]
reviewers = ["alice", "bob"]
approvals_required = 2
request_ttl = "30m"
grant_window = "15m"
max_session_duration = "30m"
reason_min_length = 10
replacement = "automation:PinkSombrero-ReplaceNode"
"#;

/// The demo's people: one on-call engineer and two approvers who also review.
const DEMO_USERS: [(&str, &str, &[Role]); 3] = [
    ("oncall", "requester", &[Role::Requester]),
    ("alice", "approver", &[Role::Approver, Role::Reviewer]),
    ("bob", "approver", &[Role::Approver, Role::Reviewer]),
];

/// A fresh data dir for the demo: `--data-dir` if given (it must be new or empty), else a new
/// directory under the system's temporary directory.
fn demo_dir(g: &GlobalOpts) -> anyhow::Result<PathBuf> {
    let dir = match &g.data_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!(
            "sombrero-demo-{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S"),
            std::process::id()
        )),
    };
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(ExitError::usage(format!(
            "{} is not empty: the demo needs a fresh data dir (omit --data-dir to get one)",
            dir.display()
        ))
        .into());
    }
    Ok(dir)
}

/// Runs the demo: a lab fleet in this process, a fresh data dir with three enrolled users,
/// and the TUI as the on-call engineer, with a DEMO panel showing everyone's codes.
pub fn demo(g: &GlobalOpts, a: DemoArgs) -> anyhow::Result<ExitCode> {
    let theme = choose_theme(g, a.theme.as_deref())?;
    let dir = demo_dir(g)?;
    let paths = Paths::at(&dir);
    paths.ensure()?;
    super::init_logging(&paths)?;
    std::fs::write(paths.policy(), DEMO_POLICY)
        .with_context(|| format!("cannot write {}", paths.policy().display()))?;
    let broker =
        Arc::new(Broker::open(&paths, BrokerOptions::default()).map_err(connection::fail)?);
    let max_age = broker.policy().map_err(connection::fail)?.max_instance_age;
    let mut users = Vec::new();
    for (name, role, roles) in DEMO_USERS {
        let e = broker
            .enrol_user(name, roles.iter().copied().collect())
            .map_err(connection::fail)?;
        // Confirmed as the person would, with the previous step's code (still accepted), so
        // the code the DEMO panel shows now is fresh.
        let earlier = broker.now() - chrono::Duration::seconds(30);
        let first =
            crate::mfa::code_at(name, &e.secret_base32, earlier).map_err(|e| anyhow::anyhow!(e))?;
        broker
            .confirm_enrolment(name, &first)
            .map_err(connection::fail)?;
        users.push(DemoUser {
            name: name.to_string(),
            role: role.to_string(),
            secret_base32: e.secret_base32,
        });
    }
    let key = RecorderKey::load_or_create(&paths.keys())?;
    let verifying = key.verifying_key();
    let rt = runtime()?;
    rt.block_on(async {
        let lab = lab::start(LabConfig {
            nodes: a.nodes,
            ..LabConfig::default()
        })
        .await
        .context("cannot start the demo's lab")?;
        let fleet = Arc::new(
            AwsFleet::lab(&lab.endpoint_url())
                .await
                .context("cannot reach the demo's lab")?,
        );
        let ctx = TuiContext {
            recordings: Some(wiring::recordings_fn(
                broker.clone(),
                paths.recordings(),
                Some(verifying),
            )),
            replay: Some(wiring::replay_fn(broker.clone(), Some(verifying))),
            open_session: Some(wiring::session_opener(session_deps(
                &broker,
                fleet.clone(),
                paths.recordings(),
                key,
            ))),
            fleet: Some(fleet_view::fleet_fn(fleet, max_age)),
            demo_codes: Some(demo_codes_fn(users)),
            broker,
            user: DEMO_USERS[0].0.to_string(),
            theme,
        };
        let result = run_tui(ctx).await;
        lab.shutdown().await;
        result.map_err(anyhow::Error::from)
    })?;
    println!(
        "Demo data kept in {dir}\n  recordings: sombrero --data-dir {dir} recordings\n  audit:      sombrero --data-dir {dir} audit verify",
        dir = dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
