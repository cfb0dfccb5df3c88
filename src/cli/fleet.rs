//! Fleet commands: fleet, reap, rogue.

use std::process::ExitCode;

use clap::Args;

use crate::config::GlobalOpts;

/// `sombrero fleet`.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sombrero reap`.
#[derive(Debug, Args)]
pub struct ReapArgs {
    /// Say what would be replaced, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sombrero rogue`.
#[derive(Debug, Args)]
pub struct RogueArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `sombrero fleet`.
pub fn fleet(_g: &GlobalOpts, _a: FleetArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is being built (issue #3)")
}

/// Runs `sombrero reap`.
pub fn reap(_g: &GlobalOpts, _a: ReapArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is being built (issue #5)")
}

/// Runs `sombrero rogue`.
pub fn rogue(_g: &GlobalOpts, _a: RogueArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is being built (issue #5)")
}
