//! The session pane: a vt100 screen fed with the session's bytes, and the detach chord.
//!
//! Every key is passed through as bytes except the chord prefix Ctrl-] (the telnet escape,
//! which shells do not bind): Ctrl-] then `d` detaches, Ctrl-] then `x` ends the session,
//! Ctrl-] twice sends one literal Ctrl-].

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tui_term::vt100;

/// The chord prefix byte (Ctrl-]).
pub const PREFIX: u8 = 0x1d;
/// How the chord is shown on screen.
pub const CHORD_HELP: &str = "Ctrl-] d detach · Ctrl-] x end session · Ctrl-] Ctrl-] sends Ctrl-]";

/// The smallest pane vt100 is given, so tiny terminals can never make it misbehave.
const MIN_PANE: (u16, u16) = (2, 10);

/// Whether a session is still running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// Running.
    Live,
    /// Ended, with a sentence saying how.
    Ended(String),
}

/// The open (or last) session.
pub struct SessionPane {
    /// Request id.
    pub request: String,
    /// Target node.
    pub target: String,
    /// When the grant ends.
    pub ends_at: Option<DateTime<Utc>>,
    /// Whether it is being recorded.
    pub recording: bool,
    /// The terminal emulator.
    pub parser: vt100::Parser,
    /// Running or ended.
    pub liveness: Liveness,
    /// Set after the chord prefix was pressed.
    pub prefix_pending: bool,
    /// The last notice from the session path.
    pub notice: Option<String>,
    /// Set once the UI asked to end it (so the grant's end asks only once).
    pub end_requested: bool,
}

impl SessionPane {
    /// A pane of `rows` x `cols`.
    pub fn new(
        request: &str,
        target: &str,
        ends_at: Option<DateTime<Utc>>,
        recording: bool,
        (rows, cols): (u16, u16),
    ) -> Self {
        let (rows, cols) = clamp((rows, cols));
        SessionPane {
            request: request.to_string(),
            target: target.to_string(),
            ends_at,
            recording,
            parser: vt100::Parser::new(rows, cols, 0),
            liveness: Liveness::Live,
            prefix_pending: false,
            notice: None,
            end_requested: false,
        }
    }

    /// Whether the session still runs.
    pub fn is_live(&self) -> bool {
        self.liveness == Liveness::Live
    }

    /// Resizes the emulator; returns the clamped size actually used.
    pub fn resize(&mut self, size: (u16, u16)) -> (u16, u16) {
        let (rows, cols) = clamp(size);
        self.parser.screen_mut().set_size(rows, cols);
        (rows, cols)
    }
}

/// At least the smallest usable pane, at most what the broker accepts
/// ([`crate::wire::session::clamp_size`]).
fn clamp((rows, cols): (u16, u16)) -> (u16, u16) {
    let (cols, rows) = crate::wire::session::clamp_size(
        u32::from(cols.max(MIN_PANE.1)),
        u32::from(rows.max(MIN_PANE.0)),
    );
    (rows, cols)
}

/// The pane's size (rows, columns) in a terminal of `(columns, rows)`: one status row above,
/// one chord-help row below.
pub fn pane_size((cols, rows): (u16, u16)) -> (u16, u16) {
    clamp((rows.saturating_sub(2), cols))
}

/// What a key means while the session owns the keyboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chord {
    /// Send these bytes to the session.
    Send(Vec<u8>),
    /// The prefix was pressed: wait for the next key.
    Prefix,
    /// Leave the pane; the session keeps running.
    Detach,
    /// End the session.
    End,
    /// Nothing to do (release events, unknown keys, an unknown chord).
    Nothing,
}

/// Interprets a key given whether the prefix was pressed before it.
pub fn interpret(key: KeyEvent, prefix_pending: bool) -> Chord {
    if key.kind == KeyEventKind::Release {
        return Chord::Nothing;
    }
    let bytes = key_bytes(key);
    if prefix_pending {
        return match (key.code, bytes.as_slice()) {
            (KeyCode::Char('d'), _) => Chord::Detach,
            (KeyCode::Char('x'), _) => Chord::End,
            (_, [PREFIX]) => Chord::Send(vec![PREFIX]),
            _ => Chord::Nothing,
        };
    }
    match bytes.as_slice() {
        [PREFIX] => Chord::Prefix,
        [] => Chord::Nothing,
        _ => Chord::Send(bytes),
    }
}

/// The bytes a terminal sends for a key (xterm conventions).
pub fn key_bytes(key: KeyEvent) -> Vec<u8> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    let mut out = match key.code {
        KeyCode::Char(c) if ctrl => ctrl_byte(c).map(|b| vec![b]).unwrap_or_default(),
        KeyCode::Char(c) => c.to_string().into_bytes(),
        KeyCode::Enter => vec![b'\r'],
        KeyCode::Backspace => vec![0x7f],
        KeyCode::Tab => vec![b'\t'],
        KeyCode::BackTab => b"\x1b[Z".to_vec(),
        KeyCode::Esc => vec![0x1b],
        KeyCode::Up => b"\x1b[A".to_vec(),
        KeyCode::Down => b"\x1b[B".to_vec(),
        KeyCode::Right => b"\x1b[C".to_vec(),
        KeyCode::Left => b"\x1b[D".to_vec(),
        KeyCode::Home => b"\x1b[H".to_vec(),
        KeyCode::End => b"\x1b[F".to_vec(),
        KeyCode::PageUp => b"\x1b[5~".to_vec(),
        KeyCode::PageDown => b"\x1b[6~".to_vec(),
        KeyCode::Delete => b"\x1b[3~".to_vec(),
        KeyCode::Insert => b"\x1b[2~".to_vec(),
        KeyCode::F(n) => function_key(n),
        _ => Vec::new(),
    };
    if alt && !out.is_empty() {
        out.insert(0, 0x1b);
    }
    out
}

fn ctrl_byte(c: char) -> Option<u8> {
    match c {
        'a'..='z' => Some(c as u8 - b'a' + 1),
        'A'..='Z' => Some(c as u8 - b'A' + 1),
        '@' | ' ' => Some(0),
        '[' => Some(0x1b),
        '\\' => Some(0x1c),
        ']' => Some(0x1d),
        '^' => Some(0x1e),
        '_' => Some(0x1f),
        _ => None,
    }
}

fn function_key(n: u8) -> Vec<u8> {
    match n {
        1 => b"\x1bOP".to_vec(),
        2 => b"\x1bOQ".to_vec(),
        3 => b"\x1bOR".to_vec(),
        4 => b"\x1bOS".to_vec(),
        5..=12 => {
            let code = [15, 17, 18, 19, 20, 21, 23, 24][usize::from(n - 5)];
            format!("\x1b[{code}~").into_bytes()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, mods)
    }

    #[test]
    fn keys_become_terminal_bytes() {
        assert_eq!(
            key_bytes(key(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            vec![3]
        );
        assert_eq!(
            key_bytes(key(KeyCode::Char('é'), KeyModifiers::NONE)),
            "é".as_bytes()
        );
        assert_eq!(key_bytes(key(KeyCode::Up, KeyModifiers::NONE)), b"\x1b[A");
        assert_eq!(
            key_bytes(key(KeyCode::Char('b'), KeyModifiers::ALT)),
            b"\x1bb"
        );
        assert_eq!(
            key_bytes(key(KeyCode::F(5), KeyModifiers::NONE)),
            b"\x1b[15~"
        );
    }

    #[test]
    fn chord_detaches_ends_or_escapes_itself() {
        let prefix = key(KeyCode::Char(']'), KeyModifiers::CONTROL);
        assert_eq!(interpret(prefix, false), Chord::Prefix);
        assert_eq!(interpret(prefix, true), Chord::Send(vec![PREFIX]));
        assert_eq!(
            interpret(key(KeyCode::Char('d'), KeyModifiers::NONE), true),
            Chord::Detach
        );
        assert_eq!(
            interpret(key(KeyCode::Char('x'), KeyModifiers::NONE), true),
            Chord::End
        );
        assert_eq!(
            interpret(key(KeyCode::Char('d'), KeyModifiers::NONE), false),
            Chord::Send(b"d".to_vec())
        );
        // Ctrl-C, Ctrl-D and Esc belong to the shell.
        assert_eq!(
            interpret(key(KeyCode::Char('d'), KeyModifiers::CONTROL), false),
            Chord::Send(vec![4])
        );
        assert_eq!(
            interpret(key(KeyCode::Esc, KeyModifiers::NONE), false),
            Chord::Send(vec![0x1b])
        );
    }

    #[test]
    fn pane_never_gets_a_zero_size() {
        assert_eq!(pane_size((0, 0)), MIN_PANE);
        assert_eq!(pane_size((80, 24)), (22, 80));
    }
}
