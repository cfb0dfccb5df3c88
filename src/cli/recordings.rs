//! Recording commands: verify, replay, recordings, review, keys.

use std::io::IsTerminal;
use std::path::PathBuf;

use std::process::ExitCode;

use clap::{Args, Subcommand};

use ed25519_dalek::VerifyingKey;

use crate::backend::Config;
use crate::cli::{ExitError, connection};
use crate::recording::view::clock;
use crate::recording::{keys, list};
use crate::tui::player::{PlayError, play_source};

/// `sombrero verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The `.cast` file (with --broker: its name, as `sombrero recordings` lists it).
    pub file: PathBuf,
    /// Verify against this Ed25519 public key (64 hex digits, as `sombrero keys show` prints
    /// it) instead of the data dir's key or the broker's.
    #[arg(long, value_name = "HEX")]
    pub key: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sombrero replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The `.cast` file (with --broker: its name, as `sombrero recordings` lists it).
    pub file: PathBuf,
    /// Check integrity against this Ed25519 public key (64 hex digits) instead of the data
    /// dir's key or the broker's.
    #[arg(long, value_name = "HEX")]
    pub key: Option<String>,
    /// Initial speed (0.25 to 16).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Compress idle pauses longer than this many seconds.
    #[arg(long, default_value_t = 2.0)]
    pub idle_limit: f64,
    /// Colour theme, as for the TUI (`default`, `high-contrast`, `light`, or a theme TOML;
    /// else SOMBRERO_THEME, then `theme` in the config file).
    #[arg(long)]
    pub theme: Option<String>,
}

/// `sombrero recordings`.
#[derive(Debug, Args)]
pub struct RecordingsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Only recordings with at least one flagged command (see `sombrero commands`).
    #[arg(long)]
    pub flagged: bool,
}

/// `sombrero review`.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The `.cast` file (with --broker: its name, as `sombrero recordings` lists it).
    #[arg(required_unless_present = "pending")]
    pub file: Option<PathBuf>,
    /// List the sessions waiting for a required review instead (recording, requester, target,
    /// ended, due in / overdue by, sign-offs so far).
    #[arg(long, conflicts_with_all = ["file", "note", "code", "as_user"])]
    pub pending: bool,
    /// Reviewer (default: the OS user; with --broker, always the connection's identity).
    #[arg(long = "as", value_name = "NAME")]
    pub as_user: Option<String>,
    /// TOTP code (else prompted on a terminal, else one line of stdin).
    #[arg(long)]
    pub code: Option<String>,
    /// What the reviewer concluded.
    #[arg(long, required_unless_present = "pending")]
    pub note: Option<String>,
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

/// `--key HEX`, parsed.
fn given_key(hex: Option<&str>) -> anyhow::Result<Option<VerifyingKey>> {
    hex.map(|h| {
        keys::parse_public_hex(h).ok_or_else(|| {
            ExitError::usage(format!(
                "--key {h:?} is not an Ed25519 public key: give the 64 hex digits `sombrero keys show` prints"
            ))
            .into()
        })
    })
    .transpose()
}

/// Runs `sombrero verify`: exit 0 only for an intact, sealed recording. Through a broker the
/// recording is downloaded and verified here, not taken on the broker's word.
pub fn verify(g: &Config, a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let key = given_key(a.key.as_deref())?;
    let backend = connection::backend(g)?;
    let verified = connection::wait(backend.verify(a.file, key))?;
    if !verified.audited {
        eprintln!("sombrero: {NO_AUDIT_LOG}");
    }
    let report = verified.report;
    if a.json {
        println!("{}", crate::text::to_json_pretty(&report)?);
    } else {
        connection::say(&format!("{}: {}", report.path, report.integrity));
    }
    Ok(if report.integrity.is_sealed_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Said when a recording can only be verified on its own.
const NO_AUDIT_LOG: &str = "no audit log in this data dir: the file is verified on its own, not against what the broker recorded";

/// Runs `sombrero replay`: the player full-screen until `q`.
pub fn replay(g: &Config, a: ReplayArgs) -> anyhow::Result<ExitCode> {
    if !(0.25..=16.0).contains(&a.speed) {
        return Err(ExitError::usage("--speed must be between 0.25 and 16").into());
    }
    if !std::io::stdout().is_terminal() {
        return Err(
            ExitError::usage("replay needs a terminal; use `sombrero verify` in scripts").into(),
        );
    }
    let key = given_key(a.key.as_deref())?;
    let backend = connection::backend(g)?;
    // The status bar shows the same verdict as `verify`: the file held to the audit log.
    let src = connection::wait(backend.replay_source(a.file, key))?;
    if src.audit.is_none() {
        eprintln!("sombrero: {NO_AUDIT_LOG}");
    }
    let theme = super::ui::choose_theme(g, a.theme.as_deref())?;
    play_source(&src, &theme, a.speed, a.idle_limit).map_err(|e| match e {
        PlayError::Load(m) => ExitError::usage(m).into(),
        e => anyhow::Error::new(e),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `sombrero recordings`: through a broker, the recordings it keeps that this identity
/// may see, verified by the broker with its own key.
pub fn recordings(g: &Config, a: RecordingsArgs) -> anyhow::Result<ExitCode> {
    let backend = connection::backend(g)?;
    let listing = connection::wait(backend.recordings())?;
    let (mut all, place) = (listing.all, listing.place);
    if a.flagged {
        all.retain(|r| r.flags.is_some_and(|f| f.total() > 0));
    }
    if a.json {
        println!("{}", crate::text::to_json_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        let which = if a.flagged {
            "flagged recordings"
        } else {
            "recordings"
        };
        println!("no {which} in {place}");
        return Ok(ExitCode::SUCCESS);
    }
    for r in &all {
        print_row(r);
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of `sombrero recordings`.
fn print_row(r: &list::RecordingSummary) {
    let started = r
        .timestamp
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map_or_else(
            || "?".to_string(),
            |t| t.format("%Y-%m-%d %H:%M").to_string(),
        );
    let (req, who, target) = r.meta.as_ref().map_or(("-", "-", "-"), |m| {
        (
            m.request_id.as_str(),
            m.requester.as_str(),
            m.target.as_str(),
        )
    });
    let reviewed = if r.reviews.is_empty() {
        "not reviewed".to_string()
    } else {
        let names: Vec<&str> = r.reviews.iter().map(|v| v.reviewer.as_str()).collect();
        format!("reviewed by {}", names.join(", "))
    };
    let flags = r.flags.map_or_else(|| "?".to_string(), |f| f.badge());
    connection::say(&format!(
        "{started}  {req}  {who}  {target}  {}  {}  flags {flags}  {reviewed}  {}",
        clock(r.duration),
        r.integrity.badge(),
        r.path.display()
    ));
}

/// Runs `sombrero review`: a reviewer's TOTP-checked sign-off, audited with the recording's
/// digest. Through a broker, the broker checks and records it as the connection's identity.
pub fn review(g: &Config, a: ReviewArgs) -> anyhow::Result<ExitCode> {
    if a.pending {
        return super::review_queue::pending(g, a.json);
    }
    let (Some(file), Some(note)) = (a.file.as_deref(), a.note.as_deref()) else {
        return Err(ExitError::usage("give the recording and --note (or --pending)").into());
    };
    let note = note.trim();
    if note.is_empty() {
        return Err(ExitError::usage("--note must say what the review concluded").into());
    }
    // Before the code is asked for; the broker checks again (the daemon's path too).
    crate::text::validate_field(crate::text::Field::Note, note)
        .map_err(|e| ExitError::usage(e.to_string()))?;
    let backend = connection::backend(g)?;
    let prepared = connection::wait(backend.prepare_review(file.to_path_buf(), a.as_user))?;
    // What the reviewer signs off on: the risky moments, before the code is asked for.
    eprint!(
        "{}",
        super::transcript::flagged_notice(&prepared.cast, prepared.extra_rules.clone())?
    );
    let code = connection::code(a.code, &prepared.who)?;
    let shown = prepared.shown.clone();
    let event = connection::wait(backend.sign_off(prepared, code, note.to_string()))?;
    if a.json {
        println!("{}", crate::text::to_json_pretty(&event)?);
    } else {
        let badge = event
            .data
            .get("integrity")
            .and_then(|v| v.as_str())
            .unwrap_or("?");
        connection::say(&format!(
            "reviewed by {}: {shown} ({badge}), audit event {}",
            event.actor, event.seq
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `sombrero keys ...`: prints the recorder's public key (creating the key on first use
/// on the broker host; through a daemon, the key that matters is the broker's: it seals).
pub fn keys(g: &Config, c: KeysCommand) -> anyhow::Result<ExitCode> {
    let KeysCommand::Show { json } = c;
    let backend = connection::backend(g)?;
    let info = connection::wait(backend.recorder_key())?;
    let public = hex::encode(info.key.as_bytes());
    match (info.path, json) {
        (None, true) => {
            let v = serde_json::json!({"algorithm": "ed25519", "public_key": public, "source": "broker"});
            println!("{}", crate::text::to_json_pretty(&v)?);
        }
        (None, false) => {
            println!("ed25519 {public}");
            eprintln!(
                "sombrero: as the broker reports it; for an independent check compare with `sombrero keys show` run on the broker host"
            );
        }
        (Some(path), true) => {
            let v = serde_json::json!({
                "algorithm": "ed25519",
                "public_key": public,
                "path": path.display().to_string(),
            });
            println!("{}", crate::text::to_json_pretty(&v)?);
        }
        (Some(_), false) => println!("ed25519 {public}"),
    }
    Ok(ExitCode::SUCCESS)
}
