//! `sombrero` (the TUI) and `sombrero demo`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use crate::cli::ExitError;
use crate::cli::access;
use crate::config::{GlobalOpts, Paths};
use crate::fleet::aws::AwsFleet;
use crate::tui::driver::FleetFn;
use crate::tui::theme::Theme;
use crate::tui::{TuiContext, fleet_view, run_tui};

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
    Theme::choose(flag.or(from_config.as_deref()), no_color)
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

/// A fleet listing from the global options (lab endpoint or AWS); errors show on the Fleet
/// screen instead of stopping the TUI.
pub fn fleet_from_opts(g: &GlobalOpts) -> FleetFn {
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
                        .map(|f| fleet_view::fleet_fn(Arc::new(f)))
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
    let broker = Arc::new(access::open(g)?);
    let user = access::who(a.as_user)?;
    let ctx = TuiContext {
        broker,
        user,
        theme,
        demo_codes: None,
        fleet: Some(fleet_from_opts(g)),
        open_session: None,
        recordings: None,
        replay: None,
    };
    runtime()?.block_on(run_tui(ctx))?;
    Ok(ExitCode::SUCCESS)
}

/// A multi-threaded runtime: the UI loop, broker reads and the fleet run side by side.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs the demo.
pub fn demo(_g: &GlobalOpts, _a: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the demo is being built (issue #6)")
}
