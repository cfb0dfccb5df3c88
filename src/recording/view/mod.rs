//! The player view: a reusable ratatui widget ([`PlayerWidget`]) over a [`PlayerState`] that
//! turns keys into [`PlayerAction`]s. `sombrero replay` runs it full-screen; the TUI's
//! Recordings screen can embed it the same way (own a `PlayerState`, forward keys to
//! [`PlayerState::handle_key`], call [`PlayerState::tick`] on its timer, render the widget).

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::{Color, Modifier, Style};

use super::flags::{FlagRule, Severity};
use super::pane::CommandPane;
use super::player::Player;
use super::verify::Integrity;

/// Seconds moved by the seek keys.
pub const SEEK_STEP: f64 = 5.0;
/// Seconds of typing shown by the input overlay.
const INPUT_WINDOW: f64 = 5.0;
mod keys;
mod render;

pub use keys::{BINDINGS, Binding, KeyOutcome, PlayerAction};
pub use render::PlayerWidget;

/// Colours by role (the TUI can pass its theme's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayerStyles {
    /// Status and help text.
    pub text: Style,
    /// Key labels in the help line.
    pub key: Style,
    /// Played part of the progress bar.
    pub progress: Style,
    /// Marker ticks on the progress bar.
    pub marker: Style,
    /// Sealed and intact.
    pub badge_ok: Style,
    /// Unsealed or unverifiable.
    pub badge_warn: Style,
    /// Tampered.
    pub badge_danger: Style,
    /// Frame around the terminal.
    pub border: Style,
    /// The selected row of the command pane.
    pub selected: Style,
}

impl Default for PlayerStyles {
    fn default() -> Self {
        PlayerStyles {
            text: Style::default(),
            key: Style::default().add_modifier(Modifier::BOLD),
            progress: Style::default().fg(Color::Magenta),
            marker: Style::default().fg(Color::Yellow),
            badge_ok: Style::default().fg(Color::Black).bg(Color::Green),
            badge_warn: Style::default().fg(Color::Black).bg(Color::Yellow),
            badge_danger: Style::default()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD),
            border: Style::default().fg(Color::DarkGray),
            selected: Style::default().add_modifier(Modifier::REVERSED),
        }
    }
}

/// The player plus what the view adds: integrity verdict, command pane, input overlay, search
/// prompt, message.
#[derive(Debug)]
pub struct PlayerState {
    /// The replay model.
    pub player: Player,
    /// The recording's verdict, always shown.
    pub integrity: Integrity,
    /// Colours.
    pub styles: PlayerStyles,
    /// The recording's commands, indexed once when the player opened.
    pub commands: CommandPane,
    show_input: bool,
    prompt: Option<String>,
    message: Option<String>,
}

impl PlayerState {
    /// Wraps a player and its integrity verdict; indexes the recording's commands under
    /// `rules` (the defaults plus the policy's `[[review.flag]]`).
    pub fn new(player: Player, integrity: Integrity, rules: &[FlagRule]) -> Self {
        let commands = CommandPane::build(player.recording(), rules);
        PlayerState {
            player,
            integrity,
            styles: PlayerStyles::default(),
            commands,
            show_input: false,
            prompt: None,
            message: None,
        }
    }

    /// The status-line message, if any.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// Whether the typed-input overlay is on.
    pub fn input_shown(&self) -> bool {
        self.show_input
    }

    /// Advances playback (call on a timer while [`Player::is_playing`]).
    pub fn tick(&mut self, now: Duration) {
        self.player.tick(now);
    }

    /// Handles one key; while the search prompt is open it takes every key.
    pub fn handle_key(&mut self, key: KeyEvent, now: Duration) -> KeyOutcome {
        if let Some(query) = self.prompt.as_mut() {
            match key.code {
                KeyCode::Esc => self.prompt = None,
                KeyCode::Enter => {
                    let q = std::mem::take(query);
                    self.prompt = None;
                    let found = self.player.search(&q, now);
                    self.message = Some(match found {
                        Some(t) => format!("found {q:?} at {}", clock(t)),
                        None => format!("{q:?} not found"),
                    });
                }
                KeyCode::Backspace => {
                    query.pop();
                }
                KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => query.push(c),
                _ => {}
            }
            return KeyOutcome::Consumed;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return KeyOutcome::Quit;
        }
        // Esc closes the pane before it leaves the player.
        if key.code == KeyCode::Esc && self.commands.is_open() {
            self.commands.toggle();
            return KeyOutcome::Consumed;
        }
        match BINDINGS.iter().find(|b| b.key == key.code) {
            // Arrows and Enter belong to the embedding screen while the pane is closed.
            Some(b) if b.action.needs_pane() && !self.commands.is_open() => KeyOutcome::NotConsumed,
            Some(b) => self.apply(b.action, now),
            None => KeyOutcome::NotConsumed,
        }
    }

    /// Performs an action.
    pub fn apply(&mut self, action: PlayerAction, now: Duration) -> KeyOutcome {
        self.message = None;
        let p = &mut self.player;
        match action {
            PlayerAction::TogglePlay => p.toggle(now),
            PlayerAction::Faster => p.faster(now),
            PlayerAction::Slower => p.slower(now),
            PlayerAction::Back => p.seek_by(-SEEK_STEP, now),
            PlayerAction::Forward => p.seek_by(SEEK_STEP, now),
            PlayerAction::Start => p.seek(0.0, now),
            PlayerAction::End => p.seek(f64::INFINITY, now),
            PlayerAction::NextMarker | PlayerAction::PrevMarker => {
                let label = if action == PlayerAction::NextMarker {
                    p.next_marker(now)
                } else {
                    p.prev_marker(now)
                };
                self.message = Some(match label {
                    Some(l) => format!("marker: {l}"),
                    None => "no more markers".into(),
                });
            }
            PlayerAction::Search => self.prompt = Some(String::new()),
            PlayerAction::SearchNext => {
                self.message = Some(match (p.search_next(now), p.search_query()) {
                    (Some(t), Some(q)) => format!("found {q:?} at {}", clock(t)),
                    (None, Some(q)) => format!("{q:?} not found"),
                    _ => "no search yet: press /".into(),
                });
            }
            PlayerAction::ToggleInput => self.show_input = !self.show_input,
            PlayerAction::ToggleCommands => {
                self.commands.toggle();
                // Opened on the command the screen is showing.
                let pos = self.player.position();
                if let Some(i) = self.commands.current(&self.player, pos)
                    && self.commands.is_open()
                {
                    self.commands.select(i);
                }
            }
            PlayerAction::CommandUp => self.commands.move_selection(-1),
            PlayerAction::CommandDown => self.commands.move_selection(1),
            PlayerAction::JumpToCommand => {
                let sel = self.commands.selected();
                self.jump(sel, now, "no commands in this recording");
            }
            PlayerAction::NextFlag | PlayerAction::PrevFlag => {
                self.player.tick(now);
                let found = if action == PlayerAction::NextFlag {
                    self.commands.next_flag(&self.player)
                } else {
                    self.commands.prev_flag(&self.player)
                };
                let none = match self.commands.flagged_count() {
                    0 => "no flagged commands in this recording",
                    _ => "no more flagged commands",
                };
                self.jump(found, now, none);
            }
            PlayerAction::Quit => return KeyOutcome::Quit,
        }
        KeyOutcome::Consumed
    }

    /// Seeks to command `index` and says which it is (or `none` when there is none).
    fn jump(&mut self, index: Option<usize>, now: Duration, none: &str) {
        let found = index.and_then(|i| Some((self.commands.time_of(i, &self.player)?, i)));
        let Some((t, i)) = found else {
            self.message = Some(none.to_string());
            return;
        };
        self.player.seek(t, now);
        let e = &self.commands.entries()[i];
        let flag = e
            .command
            .flags
            .first()
            .map(|f| format!(" · {}: {}", f.severity.as_str(), f.label))
            .unwrap_or_default();
        self.message = Some(format!(
            "command {}/{} at line {}{flag}",
            i + 1,
            self.commands.entries().len(),
            e.command.command.line
        ));
    }

    /// How a flag of `severity` is drawn (pane marks and timeline).
    pub fn severity_style(&self, severity: Severity) -> Style {
        match severity {
            Severity::High => self.styles.badge_danger,
            Severity::Medium => self.styles.badge_warn,
            Severity::Low => self.styles.key,
        }
    }

    fn badge_style(&self) -> Style {
        match self.integrity {
            Integrity::Sealed { .. } => self.styles.badge_ok,
            Integrity::Unsealed { .. }
            | Integrity::Crashed { .. }
            | Integrity::ChainMissing { .. }
            | Integrity::Unverified { .. }
            | Integrity::Unreadable { .. } => self.styles.badge_warn,
            _ => self.styles.badge_danger,
        }
    }
}

/// `m:ss` or `h:mm:ss`.
pub fn clock(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}
