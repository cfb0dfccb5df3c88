//! The recording player, full-screen until `q`: the CLI's `replay` and the TUI's Enter on a
//! recording. Its verdict is the same as `sombrero verify`'s: the file held to the audit log.

use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyEventKind};
use ed25519_dalek::VerifyingKey;

use crate::backend::ReplaySource;
use crate::recording::audited::{Lookup, cross_check};
use crate::recording::flags::FlagRule;
use crate::recording::player::{Player, PlayerConfig, Recording};
use crate::recording::view::{KeyOutcome, PlayerState, PlayerStyles, PlayerWidget};
use crate::recording::{self, Integrity};

use super::terminal::TerminalGuard;
use super::theme::Theme;

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

/// Plays what a backend prepared for replay (the CLI's `replay` and the TUI's Enter), in the
/// TUI's colours.
pub fn play_source(
    src: &ReplaySource,
    theme: &Theme,
    speed: f64,
    idle_limit: f64,
) -> Result<(), PlayError> {
    let shown = Shown {
        key: src.key.as_ref(),
        audit: src.audit.as_ref(),
        rules: &src.source.rules,
        theme,
    };
    play_file(&src.source.cast, shown, speed, idle_limit)
}

/// The player's styles in a TUI theme's roles, so a replay looks like the screen it came from.
pub fn player_styles(theme: &Theme) -> PlayerStyles {
    PlayerStyles {
        text: theme.text,
        key: theme.key,
        progress: theme.title,
        marker: theme.key,
        badge_ok: theme.badge_ok,
        badge_warn: theme.badge_warn,
        badge_danger: theme.badge_danger,
        border: theme.border,
        selected: theme.selected,
    }
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
    /// The colours.
    pub theme: &'a Theme,
}

/// Plays one recording full-screen until `q` (the CLI's `replay` and the TUI's Enter).
pub fn play_file(
    file: &std::path::Path,
    shown: Shown<'_>,
    speed: f64,
    idle_limit: f64,
) -> Result<(), PlayError> {
    let Shown {
        key,
        audit,
        rules,
        theme,
    } = shown;
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
    state.styles = player_styles(theme);
    run_fullscreen(&mut state, start)
}

/// Longest wait between redraws while playing (the clock in the status bar moves).
const FRAME: Duration = Duration::from_millis(100);
/// Wait between redraws while paused.
const IDLE_FRAME: Duration = Duration::from_secs(1);

fn run_fullscreen(state: &mut PlayerState, start: Instant) -> Result<(), PlayError> {
    // The TUI's own guard: restored on drop and, through its panic hook, on a panic.
    let mut guard = TerminalGuard::enter()?;
    loop {
        guard
            .terminal
            .draw(|f| f.render_stateful_widget(PlayerWidget, f.area(), state))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_player_wears_the_chosen_theme() {
        for name in ["default", "light", "high-contrast"] {
            let theme = Theme::load(name).unwrap();
            let styles = player_styles(&theme);
            assert_eq!(
                (
                    styles.text,
                    styles.badge_danger,
                    styles.selected,
                    styles.border
                ),
                (theme.text, theme.badge_danger, theme.selected, theme.border),
                "{name}"
            );
        }
        let plain = player_styles(&Theme::load("default").unwrap().without_colour());
        assert_eq!(plain.progress.fg, None);
    }
}
