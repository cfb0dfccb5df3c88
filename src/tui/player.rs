//! The recording player, full-screen until `q`: the CLI's `replay` and the TUI's Enter on a
//! recording. Its verdict is the same as `sombrero verify`'s: the file held to the audit log.

use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyEventKind};
use ed25519_dalek::VerifyingKey;

use crate::backend::ReplaySource;
use crate::recording::audited::{Lookup, cross_check};
use crate::recording::flags::FlagRule;
use crate::recording::player::{Player, PlayerConfig, Recording};
use crate::recording::view::{KeyOutcome, PlayerState, PlayerWidget};
use crate::recording::{self, Integrity};

/// Why a recording could not be played.
#[derive(Debug, thiserror::Error)]
pub enum PlayError {
    /// The file is not a recording this player reads (the person's input).
    #[error("{0}")]
    Load(String),
    /// The terminal could not be set up or drawn to.
    #[error(transparent)]
    Terminal(#[from] std::io::Error),
}

/// Plays what a backend prepared for replay (the CLI's `replay` and the TUI's Enter).
pub fn play_source(src: &ReplaySource, speed: f64, idle_limit: f64) -> Result<(), PlayError> {
    let shown = Shown {
        key: src.key.as_ref(),
        audit: src.audit.as_ref(),
        rules: &src.source.rules,
    };
    play_file(&src.source.cast, shown, speed, idle_limit)
}

/// What the player shows of a recording besides its screens.
#[derive(Clone, Copy)]
pub struct Shown<'a> {
    /// The recorder key its verdict is checked with (none: shown as unverified).
    pub key: Option<&'a VerifyingKey>,
    /// What the audit log recorded of it; the verdict is held to it when given.
    pub audit: Option<&'a Lookup>,
    /// Risk rules for the command pane: the defaults plus the policy's `[[review.flag]]`.
    pub rules: &'a [FlagRule],
}

/// Plays one recording full-screen until `q` (the CLI's `replay` and the TUI's Enter).
pub fn play_file(
    file: &std::path::Path,
    shown: Shown<'_>,
    speed: f64,
    idle_limit: f64,
) -> Result<(), PlayError> {
    let Shown { key, audit, rules } = shown;
    let rec = Recording::load(file).map_err(|e| PlayError::Load(e.to_string()))?;
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

fn run_fullscreen(state: &mut PlayerState, start: Instant) -> Result<(), PlayError> {
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
