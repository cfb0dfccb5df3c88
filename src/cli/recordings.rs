//! Recording commands: verify, replay, recordings, review, keys.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyEventKind};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use ed25519_dalek::VerifyingKey;

use crate::api::BrokerApi;
use crate::cli::{ExitError, connection};
use crate::config::{GlobalOpts, Paths};
use crate::recording::audited::{self, AuditLog, Lookup, cross_check};
use crate::recording::flags::{self, FlagRule};
use crate::recording::player::{Player, PlayerConfig, Recording};
use crate::recording::view::{KeyOutcome, PlayerState, PlayerWidget, clock};
use crate::recording::{self, Integrity, RecorderKey, keys, list};
use crate::remote::RemoteBroker;
use crate::remote::recordings::Fetched;
use crate::review::{self, ReviewError};
use crate::store::any::StoreSpec;

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

/// The trusted recorder key from the data dir (verification needs only its public half).
fn trusted_key(g: &GlobalOpts) -> anyhow::Result<VerifyingKey> {
    let paths = Paths::resolve(g)?;
    let key = RecorderKey::load(&paths.keys()).map_err(|e| ExitError::refused(e.to_string()))?;
    Ok(key.verifying_key())
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

/// Downloads `file` from the broker and the key to check it with: `--key`, else the broker's.
fn fetch(
    remote: &RemoteBroker,
    file: &std::path::Path,
    key: Option<&str>,
) -> anyhow::Result<(Fetched, VerifyingKey)> {
    let key = match given_key(key)? {
        Some(k) => k,
        None => remote.recorder_key().map_err(connection::fail)?,
    };
    let fetched = remote
        .fetch(connection::remote_name(file)?)
        .map_err(connection::fail)?;
    Ok((fetched, key))
}

/// Runs `sombrero verify`: exit 0 only for an intact, sealed recording. Through a broker the
/// recording is downloaded and verified here, not taken on the broker's word.
pub fn verify(g: &GlobalOpts, a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let (report, _fetched) = match connection::remote(g)? {
        Some(remote) => {
            let (fetched, key) = fetch(&remote, &a.file, a.key.as_deref())?;
            let name = connection::remote_name(&a.file)?;
            let mut report = recording::verify(&fetched.cast, &key);
            // The broker's audit facts, checked here against the bytes downloaded.
            let lookup = remote.recording_audit(name).map_err(connection::fail)?;
            report.integrity = cross_check(&fetched.cast, report.integrity, &lookup);
            report.path = name.to_string();
            (report, Some(fetched))
        }
        None => {
            if !a.file.is_file() {
                return Err(ExitError::usage(format!("{} is not a file", a.file.display())).into());
            }
            let key = match given_key(a.key.as_deref())? {
                Some(k) => k,
                None => trusted_key(g)?,
            };
            let mut report = recording::verify(&a.file, &key);
            match local_lookup(g, &a.file)? {
                Some(lookup) => report.integrity = cross_check(&a.file, report.integrity, &lookup),
                None => eprintln!("sombrero: {NO_AUDIT_LOG}"),
            }
            (report, None)
        }
    };
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

/// What the data dir's audit log says of `file`, when there is a log.
fn local_lookup(g: &GlobalOpts, file: &std::path::Path) -> anyhow::Result<Option<Lookup>> {
    Ok(local_audit_log(g)?.map(|log| log.lookup_file(file)))
}

/// The data dir's audit log, when it has a store (verifying must not create one).
fn local_audit_log(g: &GlobalOpts) -> anyhow::Result<Option<AuditLog>> {
    let paths = Paths::resolve(g)?;
    let spec = StoreSpec::resolve(g.store.as_deref(), g.config.as_deref(), &paths)
        .map_err(|e| ExitError::usage(e.to_string()))?;
    if spec == StoreSpec::Sqlite && !paths.db().exists() {
        return Ok(None);
    }
    Ok(Some(
        review::audit_log(&connection::open(g)?).map_err(connection::fail)?,
    ))
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
    // The status bar shows the same verdict as `verify`: the file held to the audit log.
    if let Some(remote) = connection::remote(g)? {
        let (fetched, key) = fetch(&remote, &a.file, a.key.as_deref())?;
        let lookup = remote
            .recording_audit(connection::remote_name(&a.file)?)
            .map_err(connection::fail)?;
        // The broker's risk rules, as `sombrero commands` applies them through it.
        let rules = flags::with_defaults(remote.policy().map_err(connection::fail)?.review_flags);
        let shown = Shown {
            key: Some(&key),
            audit: Some(&lookup),
            rules: &rules,
        };
        play_file(&fetched.cast, shown, a.speed, a.idle_limit)?;
        return Ok(ExitCode::SUCCESS);
    }
    let key = match given_key(a.key.as_deref())? {
        Some(k) => Some(k),
        None => optional_key(g)?,
    };
    let lookup = local_lookup(g, &a.file)?;
    if lookup.is_none() {
        eprintln!("sombrero: {NO_AUDIT_LOG}");
    }
    let rules = super::transcript::local_rules(g)?;
    let shown = Shown {
        key: key.as_ref(),
        audit: lookup.as_ref(),
        rules: &rules,
    };
    play_file(&a.file, shown, a.speed, a.idle_limit)?;
    Ok(ExitCode::SUCCESS)
}

/// What the player shows of a recording besides its screens.
#[derive(Clone, Copy)]
pub(crate) struct Shown<'a> {
    /// The recorder key its verdict is checked with (none: shown as unverified).
    pub key: Option<&'a VerifyingKey>,
    /// What the audit log recorded of it; the verdict is held to it when given.
    pub audit: Option<&'a Lookup>,
    /// Risk rules for the command pane: the defaults plus the policy's `[[review.flag]]`.
    pub rules: &'a [FlagRule],
}

/// Plays one recording full-screen until `q` (the CLI's `replay` and the TUI's Enter).
pub(crate) fn play_file(
    file: &std::path::Path,
    shown: Shown<'_>,
    speed: f64,
    idle_limit: f64,
) -> anyhow::Result<()> {
    let Shown { key, audit, rules } = shown;
    let rec = Recording::load(file).map_err(|e| ExitError::usage(e.to_string()))?;
    let integrity = match key {
        Some(k) => recording::verify(file, k).integrity,
        None => Integrity::Unverified {
            reason: "no recorder key in the data dir".into(),
        },
    };
    let integrity = match audit {
        Some(lookup) => cross_check(file, integrity, lookup),
        None => integrity,
    };
    let config = PlayerConfig {
        idle_limit: (idle_limit > 0.0).then_some(idle_limit),
        ..PlayerConfig::default()
    };
    let start = Instant::now();
    let mut player = Player::new(rec, config);
    player.set_speed(speed, start.elapsed());
    player.play(start.elapsed());
    // The command index is built once, here, before the first frame.
    let mut state = PlayerState::new(player, integrity, rules);
    run_fullscreen(&mut state, start)
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
    // The guard first: if try_init fails halfway (raw mode on, no alternate screen) it still undoes it.
    let _guard = TerminalGuard;
    let mut terminal = ratatui::try_init()?;
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

/// Runs `sombrero recordings`: through a broker, the recordings it keeps that this identity
/// may see, verified by the broker with its own key.
pub fn recordings(g: &GlobalOpts, a: RecordingsArgs) -> anyhow::Result<ExitCode> {
    let (mut all, place) = match connection::remote(g)? {
        Some(remote) => {
            let all = remote.recordings().map_err(connection::fail)?;
            (all, format!("the broker at {}", remote.endpoint()))
        }
        None => {
            let paths = Paths::resolve(g)?;
            let key = optional_key(g)?;
            let dir = recording::recordings_dir(g.config.as_deref(), &paths)
                .map_err(|e| ExitError::usage(e.to_string()))?;
            let mut all = list::list(&dir, key.as_ref())
                .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", dir.display()))?;
            if let Some(log) = local_audit_log(g)? {
                audited::check_listing(&mut all, &log);
            }
            review::attach(&mut all, reviews_by_digest(g)?);
            list::ListCache::default().attach_flags(&mut all, &super::transcript::local_rules(g)?);
            (all, dir.display().to_string())
        }
    };
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
pub fn review(g: &GlobalOpts, a: ReviewArgs) -> anyhow::Result<ExitCode> {
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
    let (event, shown) = match connection::remote(g)? {
        Some(remote) => {
            let who = connection::actor(&remote, a.as_user)?;
            let name = connection::remote_name(file)?;
            // The risky moments before the code, as on the broker host: the recording is
            // downloaded and indexed here under the broker's rules.
            let fetched = remote.fetch(name).map_err(connection::fail)?;
            let extra = remote.policy().map_err(connection::fail)?.review_flags;
            eprint!(
                "{}",
                super::transcript::flagged_notice(&fetched.cast, extra)?
            );
            let code = connection::code(a.code, &who)?;
            let event = remote.review(name, &code, note).map_err(connection::fail)?;
            (event, name.to_string())
        }
        None => {
            if !file.is_file() {
                return Err(ExitError::usage(format!("{} is not a file", file.display())).into());
            }
            let broker = connection::open(g)?;
            let who = connection::who(a.as_user)?;
            // Refusals (role, own session, tampered file) come before the code is asked for.
            let key = trusted_key(g)?;
            let checked = review::check(&broker, &who, file, &key).map_err(review_fail)?;
            // What the reviewer signs off on: the risky moments, before the code is asked for.
            let extra = broker.policy().map_err(connection::fail)?.review_flags;
            eprint!("{}", super::transcript::flagged_notice(file, extra)?);
            let code = connection::code(a.code, &who)?;
            let event =
                review::sign_off(&broker, &who, &checked, &code, note).map_err(review_fail)?;
            (event, file.display().to_string())
        }
    };
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

/// A refused sign-off exits 1, bad input 2.
fn review_fail(e: ReviewError) -> anyhow::Error {
    match e {
        ReviewError::Broker(e) => connection::fail(e),
        e if e.is_input() => ExitError::usage(e.to_string()).into(),
        e => ExitError::refused(e.to_string()).into(),
    }
}

/// Sign-offs from the audit log by recording digest; none when there is no store yet.
fn reviews_by_digest(g: &GlobalOpts) -> anyhow::Result<HashMap<String, Vec<list::Review>>> {
    let paths = Paths::resolve(g)?;
    // Listing must not create a store or policy as a side effect.
    if !paths.db().exists() {
        return Ok(HashMap::new());
    }
    review::by_digest(&connection::open(g)?).map_err(connection::fail)
}

/// Runs `sombrero keys ...`: prints the recorder's public key (creating the key on first use).
pub fn keys(g: &GlobalOpts, c: KeysCommand) -> anyhow::Result<ExitCode> {
    let KeysCommand::Show { json } = c;
    // Through a daemon the key that matters is the broker's (it seals); never make a local one.
    if let Some(remote) = connection::remote(g)? {
        let public = hex::encode(remote.recorder_key().map_err(connection::fail)?.to_bytes());
        if json {
            let v = serde_json::json!({"algorithm": "ed25519", "public_key": public, "source": "broker"});
            println!("{}", crate::text::to_json_pretty(&v)?);
        } else {
            println!("ed25519 {public}");
            eprintln!(
                "sombrero: as the broker reports it; for an independent check compare with `sombrero keys show` run on the broker host"
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let paths = Paths::resolve(g)?;
    let key = RecorderKey::load_or_create(&paths.keys())?;
    let path = paths.keys().join(keys::KEY_FILE);
    if json {
        let v = serde_json::json!({
            "algorithm": "ed25519",
            "public_key": key.public_hex(),
            "path": path.display().to_string(),
        });
        println!("{}", crate::text::to_json_pretty(&v)?);
    } else {
        println!("ed25519 {}", key.public_hex());
    }
    Ok(ExitCode::SUCCESS)
}
