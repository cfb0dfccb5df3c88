//! Recording commands: verify, replay, recordings, review, keys.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyEventKind};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use ed25519_dalek::VerifyingKey;

use crate::audit::EventKind as AuditKind;
use crate::cli::{ExitError, access};
use crate::config::{GlobalOpts, Paths};
use crate::policy::Role;
use crate::recording::player::{Player, PlayerConfig, Recording};
use crate::recording::view::{KeyOutcome, PlayerState, PlayerWidget, clock};
use crate::recording::{self, Integrity, RecorderKey, keys, list};

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

/// The trusted key if one exists (listing and replay still work without one).
fn optional_key(g: &GlobalOpts) -> anyhow::Result<Option<VerifyingKey>> {
    let paths = Paths::resolve(g)?;
    match RecorderKey::load(&paths.keys()) {
        Ok(k) => Ok(Some(k.verifying_key())),
        Err(keys::KeyError::Missing(_)) => Ok(None),
        Err(e) => Err(ExitError::refused(e.to_string()).into()),
    }
}

/// Runs `sombrero replay`: the player full-screen until `q`.
pub fn replay(g: &GlobalOpts, a: ReplayArgs) -> anyhow::Result<ExitCode> {
    if !(0.25..=16.0).contains(&a.speed) {
        return Err(ExitError::usage("--speed must be between 0.25 and 16").into());
    }
    if !std::io::stdout().is_terminal() {
        return Err(
            ExitError::usage("replay needs a terminal; use `sombrero verify` in scripts").into(),
        );
    }
    let rec = Recording::load(&a.file).map_err(|e| ExitError::usage(e.to_string()))?;
    let integrity = match optional_key(g)? {
        Some(k) => recording::verify(&a.file, &k).integrity,
        None => Integrity::Unverified {
            reason: "no recorder key in the data dir".into(),
        },
    };
    let config = PlayerConfig {
        idle_limit: (a.idle_limit > 0.0).then_some(a.idle_limit),
        ..PlayerConfig::default()
    };
    let start = Instant::now();
    let mut player = Player::new(rec, config);
    player.set_speed(a.speed, start.elapsed());
    player.play(start.elapsed());
    let mut state = PlayerState::new(player, integrity);
    run_fullscreen(&mut state, start)?;
    Ok(ExitCode::SUCCESS)
}

/// Restores the terminal when dropped, on every exit path (ratatui's panic hook covers panics).
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Longest wait between redraws while playing (the clock in the status bar moves).
const FRAME: Duration = Duration::from_millis(100);
/// Wait between redraws while paused.
const IDLE_FRAME: Duration = Duration::from_secs(1);

fn run_fullscreen(state: &mut PlayerState, start: Instant) -> anyhow::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let _guard = TerminalGuard;
    loop {
        terminal.draw(|f| f.render_stateful_widget(PlayerWidget, f.area(), state))?;
        let wait = if state.player.is_playing() {
            state
                .player
                .time_to_next_event()
                .unwrap_or(FRAME)
                .min(FRAME)
        } else {
            IDLE_FRAME
        };
        if event::poll(wait)?
            && let Event::Key(key) = event::read()?
            && key.kind == KeyEventKind::Press
            && state.handle_key(key, start.elapsed()) == KeyOutcome::Quit
        {
            return Ok(());
        }
        state.tick(start.elapsed());
    }
}

/// Runs `sombrero recordings`.
pub fn recordings(g: &GlobalOpts, a: RecordingsArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::resolve(g)?;
    let key = optional_key(g)?;
    let dir = paths.recordings();
    let mut all = list::list(&dir, key.as_ref())
        .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", dir.display()))?;
    let mut reviews = reviews_by_digest(g)?;
    for r in &mut all {
        if let Some(d) = r.integrity.digest() {
            r.reviews = reviews.remove(d).unwrap_or_default();
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("no recordings in {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    for r in &all {
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
        println!(
            "{started}  {req}  {who}  {target}  {}  {}  {reviewed}  {}",
            clock(r.duration),
            r.integrity.badge(),
            r.path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `sombrero review`: a reviewer's TOTP-checked sign-off, audited with the recording's digest.
pub fn review(g: &GlobalOpts, a: ReviewArgs) -> anyhow::Result<ExitCode> {
    if !a.file.is_file() {
        return Err(ExitError::usage(format!("{} is not a file", a.file.display())).into());
    }
    let note = a.note.trim();
    if note.is_empty() {
        return Err(ExitError::usage("--note must say what the review concluded").into());
    }
    let broker = access::open(g)?;
    let who = access::who(a.as_user)?;
    if !broker.permits(&who, Role::Reviewer).map_err(access::fail)? {
        return Err(ExitError::refused(format!(
            "{who} may not review recordings: enrol them with `--role reviewer` and list them under reviewers in the policy"
        ))
        .into());
    }
    // Sign-off only binds to something provable: a tampered or unverifiable file is refused.
    let key = trusted_key(g)?;
    let report = recording::verify(&a.file, &key);
    let Some(digest) = report.integrity.digest().map(str::to_string) else {
        return Err(ExitError::refused(format!(
            "cannot sign off {}: {}",
            a.file.display(),
            report.integrity
        ))
        .into());
    };
    let code = access::code(a.code, &who)?;
    broker
        .verify_code(&who, &code, "review")
        .map_err(access::fail)?;
    let summary = list::summarize(&a.file, Some(&key));
    let request_id = summary.meta.as_ref().map(|m| m.request_id.clone());
    let event = broker
        .record(
            &who,
            AuditKind::Reviewed,
            request_id.as_deref(),
            serde_json::json!({
                "recording": a.file.file_name().map(|n| n.to_string_lossy().into_owned()),
                "digest": digest,
                "integrity": report.integrity.badge(),
                "note": note,
            }),
        )
        .map_err(access::fail)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&event)?);
    } else {
        println!(
            "reviewed by {who}: {} ({}), audit event {}",
            a.file.display(),
            report.integrity.badge(),
            event.seq
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Sign-offs from the audit log by recording digest; none when there is no store yet.
fn reviews_by_digest(g: &GlobalOpts) -> anyhow::Result<HashMap<String, Vec<list::Review>>> {
    let paths = Paths::resolve(g)?;
    let mut out: HashMap<String, Vec<list::Review>> = HashMap::new();
    // Listing must not create a store or policy as a side effect.
    if !paths.db().exists() {
        return Ok(out);
    }
    let broker = access::open(g)?;
    let events = broker.audit_events(0, usize::MAX).map_err(access::fail)?;
    for e in events.into_iter().filter(|e| e.kind == AuditKind::Reviewed) {
        let field = |k: &str| {
            e.data
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        out.entry(field("digest")).or_default().push(list::Review {
            reviewer: e.actor.clone(),
            at: e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            note: field("note"),
        });
    }
    Ok(out)
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
