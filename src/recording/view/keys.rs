//! The player's keys: every action, the bindings that reach it (one table for the keys and
//! the help line), and what became of a key.

use crossterm::event::KeyCode;

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
