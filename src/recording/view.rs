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

use super::flags::{FlagRule, Severity};
use super::pane::CommandPane;
use super::pane_view;
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
    /// Show or hide the command pane.
    ToggleCommands,
    /// Select the command above (pane open).
    CommandUp,
    /// Select the command below (pane open).
    CommandDown,
    /// Jump playback to the selected command (pane open).
    JumpToCommand,
    /// To the next flagged command.
    NextFlag,
    /// To the previous flagged command.
    PrevFlag,
    /// Leave the player.
    Quit,
}

impl PlayerAction {
    /// Keys that only mean something while the command pane is open.
    pub fn needs_pane(self) -> bool {
        matches!(
            self,
            PlayerAction::CommandUp | PlayerAction::CommandDown | PlayerAction::JumpToCommand
        )
    }
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
    /// Help-line priority: when the line is too narrow the highest rank goes first.
    pub rank: u8,
}

/// The player's keys; the help line is generated from this table so it cannot drift (an
/// empty label is an alias the line leaves out).
pub const BINDINGS: &[Binding] = &[
    Binding {
        key: KeyCode::Char(' '),
        label: "␣",
        action: PlayerAction::TogglePlay,
        help: "play",
        rank: 1,
    },
    Binding {
        key: KeyCode::Up,
        label: "↑↓",
        action: PlayerAction::CommandUp,
        help: "select",
        rank: 1,
    },
    Binding {
        key: KeyCode::Down,
        label: "",
        action: PlayerAction::CommandDown,
        help: "",
        rank: 0,
    },
    Binding {
        key: KeyCode::Enter,
        label: "⏎",
        action: PlayerAction::JumpToCommand,
        help: "jump",
        rank: 1,
    },
    Binding {
        key: KeyCode::Char('c'),
        label: "c",
        action: PlayerAction::ToggleCommands,
        help: "commands",
        rank: 2,
    },
    Binding {
        key: KeyCode::Char('f'),
        label: "f",
        action: PlayerAction::NextFlag,
        help: "flag",
        rank: 2,
    },
    Binding {
        key: KeyCode::Char('F'),
        label: "F",
        action: PlayerAction::PrevFlag,
        help: "prev flag",
        rank: 3,
    },
    Binding {
        key: KeyCode::Left,
        label: "←",
        action: PlayerAction::Back,
        help: "-5s",
        rank: 4,
    },
    Binding {
        key: KeyCode::Right,
        label: "→",
        action: PlayerAction::Forward,
        help: "+5s",
        rank: 4,
    },
    Binding {
        key: KeyCode::Char('+'),
        label: "+",
        action: PlayerAction::Faster,
        help: "faster",
        rank: 6,
    },
    Binding {
        key: KeyCode::Char('='),
        label: "",
        action: PlayerAction::Faster,
        help: "",
        rank: 0,
    },
    Binding {
        key: KeyCode::Char('-'),
        label: "-",
        action: PlayerAction::Slower,
        help: "slower",
        rank: 6,
    },
    Binding {
        key: KeyCode::Char('g'),
        label: "g",
        action: PlayerAction::Start,
        help: "start",
        rank: 7,
    },
    Binding {
        key: KeyCode::Home,
        label: "",
        action: PlayerAction::Start,
        help: "",
        rank: 0,
    },
    Binding {
        key: KeyCode::Char('G'),
        label: "G",
        action: PlayerAction::End,
        help: "end",
        rank: 7,
    },
    Binding {
        key: KeyCode::End,
        label: "",
        action: PlayerAction::End,
        help: "",
        rank: 0,
    },
    Binding {
        key: KeyCode::Char(']'),
        label: "]",
        action: PlayerAction::NextMarker,
        help: "mark",
        rank: 5,
    },
    Binding {
        key: KeyCode::Char('['),
        label: "[",
        action: PlayerAction::PrevMarker,
        help: "mark",
        rank: 5,
    },
    Binding {
        key: KeyCode::Char('/'),
        label: "/",
        action: PlayerAction::Search,
        help: "search",
        rank: 4,
    },
    Binding {
        key: KeyCode::Char('n'),
        label: "n",
        action: PlayerAction::SearchNext,
        help: "next",
        rank: 5,
    },
    Binding {
        key: KeyCode::Char('i'),
        label: "i",
        action: PlayerAction::ToggleInput,
        help: "input",
        rank: 6,
    },
    Binding {
        key: KeyCode::Char('q'),
        label: "q",
        action: PlayerAction::Quit,
        help: "quit",
        rank: 1,
    },
    Binding {
        key: KeyCode::Esc,
        label: "",
        action: PlayerAction::Quit,
        help: "",
        rank: 0,
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
        let (term_area, pane_area) = split_for_pane(term_area, state);
        render_terminal(term_area, buf, state);
        if let Some(pane_area) = pane_area {
            render_pane(pane_area, buf, state);
        }
        render_status(status, buf, state);
        render_progress(progress, buf, state);
        render_help(help, buf, state);
    }
}

/// Narrowest command pane beside the terminal; narrower screens get it below.
const PANE_SIDE_MIN: u16 = 40;
/// Fewest rows of the command pane below the terminal (frame included).
const PANE_BELOW_MIN: u16 = 5;

/// The terminal's area and the command pane's, when it is open: beside the recorded terminal
/// when there is room, else below it (the terminal then shows the rows around its cursor).
fn split_for_pane(area: Rect, state: &PlayerState) -> (Rect, Option<Rect>) {
    if !state.commands.is_open() {
        return (area, None);
    }
    let term_w = state.player.screen().size().1.saturating_add(2);
    if area.width >= term_w.saturating_add(PANE_SIDE_MIN) {
        let [term, pane] =
            Layout::horizontal([Constraint::Length(term_w), Constraint::Min(0)]).areas(area);
        return (term, Some(pane));
    }
    let pane_h = (area.height / 2)
        .max(PANE_BELOW_MIN)
        .min(area.height.saturating_sub(3));
    let [term, pane] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(pane_h)]).areas(area);
    (term, Some(pane))
}

fn render_terminal(area: Rect, buf: &mut Buffer, state: &PlayerState) {
    let screen = state.player.screen();
    let (rows, cols) = screen.size();
    // The recorded size plus the frame, never more than the space we have.
    let w = (cols.saturating_add(2)).min(area.width);
    let full_h = rows.saturating_add(2);
    let h = full_h.min(area.height);
    let frame = Rect::new(area.x, area.y, w, h);
    let header = &state.player.recording().header;
    let title = header.title.clone().unwrap_or_default();
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(state.styles.border)
        .title(Span::styled(format!(" {title} "), state.styles.text));
    if h >= full_h || h < 3 {
        PseudoTerminal::new(screen).block(block).render(frame, buf);
    } else {
        // Too short for the recorded screen: draw it whole aside, show the rows around the
        // cursor (where the command being typed is) inside the frame.
        let mut whole = Buffer::empty(Rect::new(0, 0, w, full_h));
        PseudoTerminal::new(screen)
            .block(block)
            .render(whole.area, &mut whole);
        let inside = h - 2;
        let cursor = screen.cursor_position().0;
        let first = (cursor + 1).saturating_sub(inside).min(rows - inside);
        let rows_from = std::iter::once(0)
            .chain((0..inside).map(|r| first + 1 + r))
            .chain(std::iter::once(full_h - 1));
        for (y, from) in rows_from.enumerate() {
            for x in 0..w {
                buf[(frame.x + x, frame.y + y as u16)] = whole[(x, from)].clone();
            }
        }
    }
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
    // Flagged commands, the most severe drawn last so it wins a shared cell.
    let mut flagged: Vec<(Severity, f64)> = state
        .commands
        .entries()
        .iter()
        .enumerate()
        .filter_map(|(i, e)| Some((e.command.severity()?, state.commands.time_of(i, p)?)))
        .collect();
    flagged.sort_by_key(|(s, _)| *s);
    for (severity, t) in flagged {
        cells[col(t)] = Span::styled("▲", state.severity_style(severity));
    }
    Line::from(cells).render(area, buf);
}

fn render_help(area: Rect, buf: &mut Buffer, state: &PlayerState) {
    let line = match &state.prompt {
        Some(q) => Line::from(vec![
            Span::styled(format!("/{q}█"), state.styles.key),
            Span::styled("  enter search · esc cancel", state.styles.text),
        ]),
        None => help_line(area.width, state),
    };
    line.render(area, buf);
}

/// The key hints that fit in `width`: the lowest ranks first, shown in table order; the pane's
/// keys only while it is open.
fn help_line(width: u16, state: &PlayerState) -> Line<'static> {
    let open = state.commands.is_open();
    let shown: Vec<&Binding> = BINDINGS
        .iter()
        .filter(|b| !b.label.is_empty() && (open || !b.action.needs_pane()))
        .collect();
    let cost = |b: &Binding| Span::raw(b.label).width() + b.help.chars().count() + 2;
    let mut by_rank: Vec<usize> = (0..shown.len()).collect();
    by_rank.sort_by_key(|&i| shown[i].rank);
    let mut keep = vec![false; shown.len()];
    let mut used = 0;
    for i in by_rank {
        let c = cost(shown[i]);
        if used + c <= usize::from(width) {
            used += c;
            keep[i] = true;
        }
    }
    Line::from(
        shown
            .iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .flat_map(|(b, _)| {
                [
                    Span::styled(b.label, state.styles.key),
                    Span::styled(format!(" {} ", b.help), state.styles.text),
                ]
            })
            .collect::<Vec<_>>(),
    )
}
/// Draws the pane into `area`.
fn render_pane(area: Rect, buf: &mut Buffer, state: &mut PlayerState) {
    let styles = state.styles;
    let pane = &state.commands;
    let count = pane.entries().len();
    let title = format!(" Commands {count} · {} flagged ", pane.flagged_count());
    let detail = pane.selected_entry().map(|e| {
        let flags = if e.command.flags.is_empty() {
            "no flags".to_string()
        } else {
            e.command
                .flags
                .iter()
                .map(|f| format!("{}: {}", f.severity.as_str(), f.label))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(" line {} · {flags} ", e.command.command.line)
    });
    let mut block = Block::default()
        .borders(Borders::ALL)
        .border_style(styles.border)
        .title(Span::styled(title, styles.text));
    if let Some(d) = detail {
        block = block.title_bottom(Span::styled(d, styles.text));
    }
    let inner = block.inner(area);
    block.render(area, buf);
    if count == 0 {
        Paragraph::new(Span::styled(
            "no commands typed in this recording",
            styles.text,
        ))
        .render(inner, buf);
        return;
    }
    let height = usize::from(inner.height);
    let offset = state.commands.scroll_for(height);
    let pane = &state.commands;
    let player = &state.player;
    let time_width = pane_view::width(&clock(player.duration()));
    let cols = pane_view::fit(pane.entries(), time_width, usize::from(inner.width));
    let current = pane.current(player, player.position());
    let selected = pane.selected();
    for (row, i) in (offset..count.min(offset + height)).enumerate() {
        let e = &pane.entries()[i];
        let severity = e.command.severity();
        let mut spans = vec![
            Span::styled(if current == Some(i) { "›" } else { " " }, styles.marker),
            match severity {
                Some(s) => Span::styled(pane_view::letter(s), state.severity_style(s)),
                None => Span::raw(" "),
            },
            Span::raw(" "),
        ];
        if let Some(w) = cols.time {
            let t = pane.time_of(i, player).map(clock).unwrap_or_default();
            spans.push(Span::styled(format!("{t:>w$} "), styles.text));
        }
        let text = pane_view::cut(&e.shown, cols.text);
        match (cols.flag, e.command.flags.first()) {
            (Some(w), Some(f)) => {
                let pad = cols.text.saturating_sub(pane_view::width(&text));
                spans.push(Span::styled(format!("{text}{:pad$} ", ""), styles.text));
                spans.push(Span::styled(
                    pane_view::cut(&f.label, w),
                    state.severity_style(f.severity),
                ));
            }
            _ => spans.push(Span::styled(text, styles.text)),
        }
        let mut line = Line::from(spans);
        if selected == Some(i) {
            line = line.patch_style(styles.selected);
        }
        let y = inner.y + u16::try_from(row).unwrap_or(u16::MAX);
        line.render(Rect::new(inner.x, y, inner.width, 1), buf);
    }
}
