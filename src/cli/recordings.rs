//! Recording commands: verify, replay, recordings, review, keys.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::GlobalOpts;

/// `sombrero verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The `.cast` file.
    pub file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sombrero replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The `.cast` file.
    pub file: PathBuf,
    /// Initial speed (0.25 to 16).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Compress idle pauses longer than this many seconds.
    #[arg(long, default_value_t = 2.0)]
    pub idle_limit: f64,
}

/// `sombrero recordings`.
#[derive(Debug, Args)]
pub struct RecordingsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sombrero review`.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The `.cast` file.
    pub file: PathBuf,
    /// Reviewer (default: the OS user).
    #[arg(long = "as", value_name = "NAME")]
    pub as_user: Option<String>,
    /// TOTP code (else prompted on a terminal, else one line of stdin).
    #[arg(long)]
    pub code: Option<String>,
    /// What the reviewer concluded.
    #[arg(long)]
    pub note: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sombrero keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print the recorder's Ed25519 public key.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn todo_area() -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is being built (issue #4)")
}

/// Runs `sombrero verify`.
pub fn verify(_g: &GlobalOpts, _a: VerifyArgs) -> anyhow::Result<ExitCode> {
    todo_area()
}

/// Runs `sombrero replay`.
pub fn replay(_g: &GlobalOpts, _a: ReplayArgs) -> anyhow::Result<ExitCode> {
    todo_area()
}

/// Runs `sombrero recordings`.
pub fn recordings(_g: &GlobalOpts, _a: RecordingsArgs) -> anyhow::Result<ExitCode> {
    todo_area()
}

/// Runs `sombrero review`.
pub fn review(_g: &GlobalOpts, _a: ReviewArgs) -> anyhow::Result<ExitCode> {
    todo_area()
}

/// Runs `sombrero keys ...`.
pub fn keys(_g: &GlobalOpts, _c: KeysCommand) -> anyhow::Result<ExitCode> {
    todo_area()
}
