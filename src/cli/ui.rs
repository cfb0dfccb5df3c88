//! `sombrero` (the TUI) and `sombrero demo`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use crate::api::BrokerApi;
use crate::backend::Config;
use crate::backend::embedded::Embedded;
use crate::broker::{Broker, BrokerOptions};
use crate::cli::ExitError;
use crate::cli::connection;
use crate::config::Paths;
use crate::fleet::aws::AwsFleet;
use crate::lab::{self, LabConfig};
use crate::policy::Role;
use crate::recording::RecorderKey;
use crate::tui::demo::{DemoUser, demo_codes_fn};
use crate::tui::driver::Parts;
use crate::tui::theme::Theme;
use crate::tui::{TuiContext, run_tui};

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
pub fn choose_theme(g: &Config, flag: Option<&str>) -> anyhow::Result<Theme> {
    let config = g.config_path().map_err(connection::fail)?;
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

/// Runs the TUI on the backend: embedded (this process opens the data dir and, while the
/// TUI runs, delivers notifications) or a daemon (the user is the connection's identity;
/// sessions go through its relay; recordings are listed by it and played here).
pub fn tui(g: &Config, a: TuiArgs) -> anyhow::Result<ExitCode> {
    let theme = choose_theme(g, a.theme.as_deref())?;
    let backend = connection::backend(g)?;
    let api = backend.api().map_err(connection::fail)?;
    let user = match api.identity().map_err(connection::fail)? {
        Some(_) => connection::actor(&*backend, a.as_user)?,
        None => local_user(&*api, a.as_user)?,
    };
    let ctx = TuiContext {
        backend: Arc::clone(&backend),
        user,
        theme,
        demo_codes: None,
        parts: Parts::ALL,
    };
    let rt = connection::runtime(2)?;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let duties = rt.spawn(backend.duties(stopping));
    let outcome = rt.block_on(run_tui(ctx));
    let _ = stop.send(true);
    let _ = rt.block_on(duties);
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
fn local_user(broker: &dyn BrokerApi, as_user: Option<String>) -> anyhow::Result<String> {
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
fn demo_dir(g: &Config) -> anyhow::Result<PathBuf> {
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
pub fn demo(g: &Config, a: DemoArgs) -> anyhow::Result<ExitCode> {
    let theme = choose_theme(g, a.theme.as_deref())?;
    let dir = demo_dir(g)?;
    let paths = Paths::at(&dir);
    paths.ensure()?;
    super::init_logging(&paths)?;
    std::fs::write(paths.policy(), DEMO_POLICY)
        .with_context(|| format!("cannot write {}", paths.policy().display()))?;
    let broker =
        Arc::new(Broker::open(&paths, BrokerOptions::default()).map_err(connection::fail)?);
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
    RecorderKey::load_or_create(&paths.keys())?;
    let rt = connection::runtime(2)?;
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
        let backend =
            Embedded::with_parts(Config::at(&dir), broker, Some(fleet), paths.recordings());
        let ctx = TuiContext {
            backend: Arc::new(backend),
            user: DEMO_USERS[0].0.to_string(),
            theme,
            demo_codes: Some(demo_codes_fn(users)),
            parts: Parts::ALL,
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
