//! `sombrero` (the TUI) and `sombrero demo`.

use std::process::ExitCode;

use clap::Args;

use crate::config::GlobalOpts;

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

/// Runs the TUI.
pub fn tui(_g: &GlobalOpts, _a: TuiArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the terminal UI is being built (issue #6)")
}

/// Runs the demo.
pub fn demo(_g: &GlobalOpts, _a: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the demo is being built (issue #6)")
}
