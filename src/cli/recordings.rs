//! Recording commands: verify, replay, recordings, review, keys.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use ed25519_dalek::VerifyingKey;

use crate::cli::ExitError;
use crate::config::{GlobalOpts, Paths};
use crate::recording::{self, RecorderKey, keys};

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

/// The trusted recorder key from the data dir (verification needs only its public half).
fn trusted_key(g: &GlobalOpts) -> anyhow::Result<VerifyingKey> {
    let paths = Paths::resolve(g)?;
    let key = RecorderKey::load(&paths.keys()).map_err(|e| ExitError::refused(e.to_string()))?;
    Ok(key.verifying_key())
}

/// Runs `sombrero verify`: exit 0 only for an intact, sealed recording.
pub fn verify(g: &GlobalOpts, a: VerifyArgs) -> anyhow::Result<ExitCode> {
    if !a.file.is_file() {
        return Err(ExitError::usage(format!("{} is not a file", a.file.display())).into());
    }
    let key = trusted_key(g)?;
    let report = recording::verify(&a.file, &key);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}: {}", report.path, report.integrity);
    }
    Ok(if report.integrity.is_sealed_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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

/// Runs `sombrero keys ...`: prints the recorder's public key (creating the key on first use).
pub fn keys(g: &GlobalOpts, c: KeysCommand) -> anyhow::Result<ExitCode> {
    let KeysCommand::Show { json } = c;
    let paths = Paths::resolve(g)?;
    let key = RecorderKey::load_or_create(&paths.keys())?;
    let path = paths.keys().join(keys::KEY_FILE);
    if json {
        let v = serde_json::json!({
            "algorithm": "ed25519",
            "public_key": key.public_hex(),
            "path": path.display().to_string(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("ed25519 {}", key.public_hex());
    }
    Ok(ExitCode::SUCCESS)
}
