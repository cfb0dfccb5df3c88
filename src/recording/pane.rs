//! The player's command pane: every command of the recording (the command index with its risk
//! flags), a selection the reviewer moves and jumps to, and next/previous flagged command.
//!
//! Pure state: the index is built once from the loaded [`Recording`], positions come from the
//! [`Player`]'s timeline (idle-compressed, the clock the status bar shows), so a jump lands on
//! the event holding the command's first keystroke.

use super::commands::{self, CommandKind};
use super::flags::{self, FlagRule, FlaggedCommand};
use super::player::{Player, Recording};

/// Seconds before the position within which "previous flag" skips a command, so repeated
/// presses walk back while playing (as the previous-marker key does).
const BACK_SLACK: f64 = 0.5;

/// One row of the pane.
#[derive(Debug, Clone)]
pub struct PaneEntry {
    /// The command with its flags, most severe first.
    pub command: FlaggedCommand,
    /// Index (in file order) of the event holding its first keystroke.
    pub event: usize,
    /// The command text made safe for a terminal (escaped once, when the pane is built).
    pub shown: String,
}

impl PaneEntry {
    /// Whether any rule flagged it.
    pub fn is_flagged(&self) -> bool {
        !self.command.flags.is_empty()
    }
}

/// The command list of one recording and what the reviewer selected in it.
#[derive(Debug, Default)]
pub struct CommandPane {
    entries: Vec<PaneEntry>,
    open: bool,
    selected: usize,
    /// First row shown (the widget moves it to keep the selection in view).
    offset: usize,
}

/// The file line of every event: events fill lines 2, 3, ... in order, except the lines the
/// loader skipped (cut by a crash, not UTF-8).
fn event_lines(rec: &Recording) -> Vec<u64> {
    let mut out = Vec::with_capacity(rec.events.len());
    let mut skipped = rec.skipped_lines.iter().copied().peekable();
    let mut line = 1u64;
    for _ in &rec.events {
        line += 1;
        while skipped.next_if_eq(&line).is_some() {
            line += 1;
        }
        out.push(line);
    }
    out
}

impl CommandPane {
    /// Indexes `rec` under `rules` (the defaults plus the policy's `[[review.flag]]`).
    pub fn build(rec: &Recording, rules: &[FlagRule]) -> Self {
        let lines = event_lines(rec);
        let found = commands::index(lines.iter().copied().zip(&rec.events));
        let entries = flags::apply(found, rules)
            .into_iter()
            .map(|command| {
                let event = lines
                    .partition_point(|l| *l < command.command.line)
                    .min(rec.events.len().saturating_sub(1));
                let mut shown = crate::text::escaped(&command.command.text);
                if command.command.edited {
                    shown.push_str(" (edited)");
                }
                if command.command.kind == CommandKind::FullScreen {
                    shown.push_str(" (full screen)");
                }
                PaneEntry {
                    command,
                    event,
                    shown,
                }
            })
            .collect();
        CommandPane {
            entries,
            open: false,
            selected: 0,
            offset: 0,
        }
    }

    /// The commands, in the order they were submitted.
    pub fn entries(&self) -> &[PaneEntry] {
        &self.entries
    }

    /// How many commands raised a flag.
    pub fn flagged_count(&self) -> usize {
        self.entries.iter().filter(|e| e.is_flagged()).count()
    }

    /// Whether the pane is shown.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Shows or hides the pane.
    pub fn toggle(&mut self) {
        self.open = !self.open;
    }

    /// The selected row, if there are commands.
    pub fn selected(&self) -> Option<usize> {
        (self.selected < self.entries.len()).then_some(self.selected)
    }

    /// The selected command.
    pub fn selected_entry(&self) -> Option<&PaneEntry> {
        self.selected().and_then(|i| self.entries.get(i))
    }

    /// Selects row `i` (clamped to the last).
    pub fn select(&mut self, i: usize) {
        self.selected = i.min(self.entries.len().saturating_sub(1));
    }

    /// Moves the selection by `delta` rows, stopping at either end.
    pub fn move_selection(&mut self, delta: isize) {
        if self.entries.is_empty() {
            return;
        }
        let last = self.entries.len() - 1;
        let at = self.selected().unwrap_or(0);
        self.selected = at.saturating_add_signed(delta).min(last);
    }

    /// The first row to show in `height` rows so the selection is visible (scrolls only
    /// when the selection leaves the window).
    pub fn scroll_for(&mut self, height: usize) -> usize {
        let height = height.max(1);
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + height {
            self.offset = self.selected + 1 - height;
        }
        self.offset = self.offset.min(self.entries.len().saturating_sub(height));
        self.offset
    }

    /// Where entry `i` sits on `player`'s timeline.
    pub fn time_of(&self, i: usize, player: &Player) -> Option<f64> {
        player.event_time(self.entries.get(i)?.event)
    }

    /// The last command started at or before `pos` (the one the screen is showing).
    pub fn current(&self, player: &Player, pos: f64) -> Option<usize> {
        let started = self
            .entries
            .partition_point(|e| player.event_time(e.event).is_some_and(|t| t <= pos));
        started.checked_sub(1)
    }

    /// Whether the selection is the command at the playback position (just jumped to it).
    fn selection_at(&self, player: &Player) -> Option<usize> {
        let i = self.selected()?;
        let t = self.time_of(i, player)?;
        ((t - player.position()).abs() < 1e-9).then_some(i)
    }

    /// The next flagged command after the position (after the selection when the position is
    /// the selected command's, so commands pasted together are visited one by one); selects it.
    pub fn next_flag(&mut self, player: &Player) -> Option<usize> {
        let from = match self.selection_at(player) {
            Some(i) => i + 1,
            None => {
                let pos = player.position();
                self.entries.partition_point(|e| {
                    player.event_time(e.event).is_some_and(|t| t <= pos + 1e-9)
                })
            }
        };
        let found = (from..self.entries.len()).find(|&i| self.entries[i].is_flagged())?;
        self.selected = found;
        Some(found)
    }

    /// The previous flagged command (one well before the position, or before the selection
    /// when the position is the selected command's); selects it.
    pub fn prev_flag(&mut self, player: &Player) -> Option<usize> {
        let until = match self.selection_at(player) {
            Some(i) => i,
            None => {
                let pos = player.position();
                self.entries.partition_point(|e| {
                    player
                        .event_time(e.event)
                        .is_some_and(|t| t < pos - BACK_SLACK)
                })
            }
        };
        let found = (0..until).rev().find(|&i| self.entries[i].is_flagged())?;
        self.selected = found;
        Some(found)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::time::Duration;

    use super::*;
    use crate::recording::player::PlayerConfig;

    /// A cast with a bad line (4) and a pasted pair of flagged commands.
    const CAST: &str = "{\"version\": 2, \"width\": 30, \"height\": 5}\n\
        [0.5, \"o\", \"$ \"]\n\
        not an event\n\
        [1.0, \"i\", \"ls\\r\"]\n\
        [2.0, \"i\", \"sudo -i\\r\"]\n\
        [3.0, \"o\", \"# \"]\n\
        [20.0, \"i\", \"rm -rf /x\\rhistory -c\\r\"]\n\
        [21.0, \"i\", \"id\\r\"]\n";

    fn setup() -> (CommandPane, Player) {
        let rec = Recording::parse(Cursor::new(CAST)).unwrap();
        let pane = CommandPane::build(&rec, &flags::default_rules());
        (pane, Player::new(rec, PlayerConfig::default()))
    }

    #[test]
    fn lines_skip_what_the_loader_skipped_and_entries_point_at_their_events() {
        let (pane, player) = setup();
        let got: Vec<(&str, u64, usize)> = pane
            .entries()
            .iter()
            .map(|e| (e.shown.as_str(), e.command.command.line, e.event))
            .collect();
        assert_eq!(
            got,
            vec![
                ("ls", 4, 1),
                ("sudo -i", 5, 2),
                ("rm -rf /x", 7, 4),
                ("history -c", 7, 4),
                ("id", 8, 5)
            ]
        );
        assert_eq!(pane.flagged_count(), 3);
        // Idle-compressed: the 17 s pause became 2 s.
        assert_eq!(pane.time_of(2, &player), Some(5.0));
    }

    #[test]
    fn selection_stops_at_the_ends() {
        let (mut pane, _) = setup();
        assert_eq!(pane.selected(), Some(0));
        pane.move_selection(-1);
        assert_eq!(pane.selected(), Some(0));
        pane.move_selection(10);
        assert_eq!(pane.selected(), Some(4));
        pane.move_selection(-2);
        assert_eq!(pane.selected(), Some(2));
        // Two rows tall: scrolled so the selection shows, and only when it leaves the window.
        assert_eq!(pane.scroll_for(2), 1);
        pane.move_selection(-1);
        assert_eq!(pane.scroll_for(2), 1);
        pane.move_selection(-1);
        assert_eq!(pane.scroll_for(2), 0);
    }

    #[test]
    fn next_and_previous_flag_visit_pasted_commands_one_by_one() {
        let (mut pane, mut player) = setup();
        let now = Duration::ZERO;
        let mut visit = |pane: &mut CommandPane, next: bool| {
            let found = if next {
                pane.next_flag(&player)
            } else {
                pane.prev_flag(&player)
            };
            if let Some(t) = found.and_then(|i| pane.time_of(i, &player)) {
                player.seek(t, now);
            }
            found
        };
        assert_eq!(visit(&mut pane, true), Some(1));
        assert_eq!(visit(&mut pane, true), Some(2));
        assert_eq!(visit(&mut pane, true), Some(3), "same moment, next row");
        assert_eq!(visit(&mut pane, true), None);
        assert_eq!(
            pane.selected(),
            Some(3),
            "nothing found keeps the selection"
        );
        assert_eq!(visit(&mut pane, false), Some(2));
        assert_eq!(visit(&mut pane, false), Some(1));
        assert_eq!(visit(&mut pane, false), None);
    }

    #[test]
    fn current_is_the_last_command_started() {
        let (pane, player) = setup();
        assert_eq!(pane.current(&player, 0.9), None);
        assert_eq!(pane.current(&player, 1.0), Some(0));
        assert_eq!(pane.current(&player, 4.9), Some(1));
        assert_eq!(pane.current(&player, 5.0), Some(3));
    }

    #[test]
    fn empty_recording_has_an_empty_pane() {
        let rec = Recording::parse(Cursor::new(
            "{\"version\": 2, \"width\": 3, \"height\": 1}\n",
        ))
        .unwrap();
        let mut pane = CommandPane::build(&rec, &flags::default_rules());
        let player = Player::new(rec, PlayerConfig::default());
        pane.move_selection(1);
        assert_eq!(pane.selected(), None);
        assert_eq!(pane.next_flag(&player), None);
        assert_eq!(pane.prev_flag(&player), None);
    }
}
