//! The player view: a reusable ratatui widget ([`PlayerWidget`]) over a [`PlayerState`] that
//! turns keys into [`PlayerAction`]s. `sombrero replay` runs it full-screen; the TUI's
//! Recordings screen can embed it the same way (own a `PlayerState`, forward keys to
//! [`PlayerState::handle_key`], call [`PlayerState::tick`] on its timer, render the widget).

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, StatefulWidget, Widget};
use tui_term::widget::PseudoTerminal;

use super::player::Player;
use super::verify::Integrity;

/// Seconds moved by the seek keys.
pub const SEEK_STEP: f64 = 5.0;
/// Seconds of typing shown by the input overlay.
const INPUT_WINDOW: f64 = 5.0;

/// Everything the player can be asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayerAction {
    /// Play or pause.
    TogglePlay,
    /// Next speed up.
    Faster,
    /// Next speed down.
    Slower,
    /// Back [`SEEK_STEP`] seconds.
    Back,
    /// Forward [`SEEK_STEP`] seconds.
    Forward,
    /// To the start.
    Start,
    /// To the end.
    End,
    /// To the next marker.
    NextMarker,
    /// To the previous marker.
    PrevMarker,
    /// Open the search prompt.
    Search,
    /// Repeat the last search.
    SearchNext,
    /// Show or hide typed input.
    ToggleInput,
    /// Leave the player.
    Quit,
}

/// A key binding: the key, its label in the help line, the action and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    /// The key.
    pub key: KeyCode,
    /// How the help line shows it.
    pub label: &'static str,
    /// What it triggers.
    pub action: PlayerAction,
    /// Short description.
    pub help: &'static str,
}

/// The player's keys; the help line is generated from this table so it cannot drift.
pub const BINDINGS: &[Binding] = &[
    Binding {
        key: KeyCode::Char(' '),
        label: "␣",
        action: PlayerAction::TogglePlay,
        help: "play",
    },
    Binding {
        key: KeyCode::Left,
        label: "←",
        action: PlayerAction::Back,
        help: "-5s",
    },
    Binding {
        key: KeyCode::Right,
        label: "→",
        action: PlayerAction::Forward,
        help: "+5s",
    },
    Binding {
        key: KeyCode::Char('+'),
        label: "+",
        action: PlayerAction::Faster,
        help: "faster",
    },
    Binding {
        key: KeyCode::Char('='),
        label: "",
        action: PlayerAction::Faster,
        help: "",
    },
    Binding {
        key: KeyCode::Char('-'),
        label: "-",
        action: PlayerAction::Slower,
        help: "slower",
    },
    Binding {
        key: KeyCode::Char('g'),
        label: "g",
        action: PlayerAction::Start,
        help: "start",
    },
    Binding {
        key: KeyCode::Home,
        label: "",
        action: PlayerAction::Start,
        help: "",
    },
    Binding {
        key: KeyCode::Char('G'),
        label: "G",
        action: PlayerAction::End,
        help: "end",
    },
    Binding {
        key: KeyCode::End,
        label: "",
        action: PlayerAction::End,
        help: "",
    },
    Binding {
        key: KeyCode::Char(']'),
        label: "]",
        action: PlayerAction::NextMarker,
        help: "mark",
    },
    Binding {
        key: KeyCode::Char('['),
        label: "[",
        action: PlayerAction::PrevMarker,
        help: "mark",
    },
    Binding {
        key: KeyCode::Char('/'),
        label: "/",
        action: PlayerAction::Search,
        help: "search",
    },
    Binding {
        key: KeyCode::Char('n'),
        label: "n",
        action: PlayerAction::SearchNext,
        help: "next",
    },
    Binding {
        key: KeyCode::Char('i'),
        label: "i",
        action: PlayerAction::ToggleInput,
        help: "input",
    },
    Binding {
        key: KeyCode::Char('q'),
        label: "q",
        action: PlayerAction::Quit,
        help: "quit",
    },
    Binding {
        key: KeyCode::Esc,
        label: "",
        action: PlayerAction::Quit,
        help: "",
    },
];

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOutcome {
    /// The player used it.
    Consumed,
    /// Not a player key: the embedding screen may use it.
    NotConsumed,
    /// The person asked to leave the player.
    Quit,
}

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
        }
    }
}

/// The player plus what the view adds: integrity verdict, input overlay, search prompt, message.
#[derive(Debug)]
pub struct PlayerState {
    /// The replay model.
    pub player: Player,
    /// The recording's verdict, always shown.
    pub integrity: Integrity,
    /// Colours.
    pub styles: PlayerStyles,
    show_input: bool,
    prompt: Option<String>,
    message: Option<String>,
}

impl PlayerState {
    /// Wraps a player and its integrity verdict.
    pub fn new(player: Player, integrity: Integrity) -> Self {
        PlayerState {
            player,
            integrity,
            styles: PlayerStyles::default(),
            show_input: false,
            prompt: None,
            message: None,
        }
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
        match BINDINGS.iter().find(|b| b.key == key.code) {
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
            PlayerAction::Quit => return KeyOutcome::Quit,
        }
        KeyOutcome::Consumed
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

/// Draws a [`PlayerState`]: the terminal at its recorded size, status, progress and help.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlayerWidget;

impl StatefulWidget for PlayerWidget {
    type State = PlayerState;

    fn render(self, area: Rect, buf: &mut Buffer, state: &mut PlayerState) {
        let [term_area, status, progress, help] = Layout::vertical([
            Constraint::Min(3),
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(area);
        render_terminal(term_area, buf, state);
        render_status(status, buf, state);
        render_progress(progress, buf, state);
        render_help(help, buf, state);
    }
}

fn render_terminal(area: Rect, buf: &mut Buffer, state: &PlayerState) {
    let screen = state.player.screen();
    let (rows, cols) = screen.size();
    // The recorded size plus the frame, never more than the space we have.
    let w = (cols.saturating_add(2)).min(area.width);
    let h = (rows.saturating_add(2)).min(area.height);
    let frame = Rect::new(area.x, area.y, w, h);
    let header = &state.player.recording().header;
    let title = header.title.clone().unwrap_or_default();
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(state.styles.border)
        .title(Span::styled(format!(" {title} "), state.styles.text));
    PseudoTerminal::new(screen).block(block).render(frame, buf);
    if state.show_input {
        let keys = state.player.recent_input(INPUT_WINDOW);
        let text = format!(" typed: {keys} ");
        let width = (text.chars().count() as u16).min(frame.width.saturating_sub(2));
        if width > 0 && frame.height > 2 {
            let r = Rect::new(frame.x + 1, frame.y + frame.height - 2, width, 1);
            Clear.render(r, buf);
            Paragraph::new(Span::styled(text, state.styles.badge_warn)).render(r, buf);
        }
    }
}

fn render_status(area: Rect, buf: &mut Buffer, state: &PlayerState) {
    let p = &state.player;
    let icon = if p.is_playing() { "▶" } else { "⏸" };
    let mut spans = vec![
        Span::styled(
            format!(" {} ", state.integrity.badge()),
            state.badge_style(),
        ),
        Span::styled(
            format!(
                " {icon} {} / {}  {}x",
                clock(p.position()),
                clock(p.duration()),
                p.speed()
            ),
            state.styles.text,
        ),
    ];
    if let Some(m) = p.current_marker() {
        spans.push(Span::styled(format!("  [{m}]"), state.styles.marker));
    }
    if let Some(msg) = &state.message {
        spans.push(Span::styled(format!("  {msg}"), state.styles.text));
    }
    Line::from(spans).render(area, buf);
}

fn render_progress(area: Rect, buf: &mut Buffer, state: &PlayerState) {
    let p = &state.player;
    let width = area.width as usize;
    if width == 0 {
        return;
    }
    let dur = p.duration();
    let frac = |t: f64| {
        if dur > 0.0 {
            (t / dur).clamp(0.0, 1.0)
        } else {
            1.0
        }
    };
    let col =
        |t: f64| ((frac(t) * (width.saturating_sub(1)) as f64).round() as usize).min(width - 1);
    let played = if dur > 0.0 {
        col(p.position()) + 1
    } else {
        width
    };
    let mut cells: Vec<Span> = (0..width)
        .map(|i| {
            if i < played {
                Span::styled("━", state.styles.progress)
            } else {
                Span::styled("─", state.styles.border)
            }
        })
        .collect();
    for (t, _) in p.markers() {
        cells[col(t)] = Span::styled("◆", state.styles.marker);
    }
    Line::from(cells).render(area, buf);
}

fn render_help(area: Rect, buf: &mut Buffer, state: &PlayerState) {
    let line = match &state.prompt {
        Some(q) => Line::from(vec![
            Span::styled(format!("/{q}█"), state.styles.key),
            Span::styled("  enter search · esc cancel", state.styles.text),
        ]),
        None => Line::from(
            BINDINGS
                .iter()
                .filter(|b| !b.label.is_empty())
                .flat_map(|b| {
                    [
                        Span::styled(b.label, state.styles.key),
                        Span::styled(format!(" {} ", b.help), state.styles.text),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    };
    line.render(area, buf);
}
