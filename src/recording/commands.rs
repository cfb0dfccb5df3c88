//! The command index: what the shell was asked to run, rebuilt from a recording's keystrokes.
//!
//! Pure (no I/O): feed events in file order with [`Indexer::push`], then [`Indexer::finish`].
//! Typed input goes through a model of the shell's line editor: printable text appends,
//! backspace/DEL delete a character, Ctrl-U the line, Ctrl-W a word, Ctrl-C abandons the line,
//! Enter submits it. Keys the model cannot follow (arrows, Tab completion, history recall and
//! search, other escape sequences) mark the command `edited`: its text is what was typed, and
//! the recording's output at that moment shows what actually ran. A paste with several lines
//! gives one command per line. A program that switches to the alternate screen (vim, less,
//! top) is one `full_screen` entry lasting until it switches back; keys typed inside it are
//! the program's, not commands.
//!
//! Known limit: input the shell does not echo (a `sudo` password prompt) looks like typing
//! and becomes a command; its text is already in the recording's `i` events.

use serde::Serialize;

use super::cast::{Event, EventKind};
use super::plain_output::plain_output;

/// Longest command text kept (characters); the rest is cut so a runaway paste stays bounded.
pub const MAX_COMMAND_CHARS: usize = 4096;

/// What kind of entry a command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// A line submitted to the shell.
    Shell,
    /// The command started a full-screen program; the entry lasts until it left.
    FullScreen,
}

/// One command of a session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Command {
    /// The line as typed (after line editing).
    pub text: String,
    /// 1-based line of the recording holding its first keystroke (the header is line 1).
    pub line: u64,
    /// Seconds since the start of its first keystroke.
    pub start: f64,
    /// Seconds since the start when Enter was pressed.
    pub submitted: f64,
    /// Seconds from Enter to its last output before the next keystroke (or to the
    /// alternate screen's exit for a full-screen program).
    pub duration: f64,
    /// Output bytes from Enter to the next command's Enter.
    pub output_bytes: u64,
    /// Keys the line model cannot follow were used: see the output for what ran.
    pub edited: bool,
    /// Shell line or full-screen program.
    pub kind: CommandKind,
}

/// Escape-sequence state of the input parser (sequences may span events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    /// After ESC.
    Start,
    /// Inside `ESC [` parameters (bytes collected in `csi`).
    Csi,
    /// After `ESC O` (SS3: application-mode arrows).
    Ss3,
}

/// Builds the command list from events pushed in order.
#[derive(Debug)]
pub struct Indexer {
    commands: Vec<Command>,
    line: String,
    line_start: Option<(u64, f64)>,
    edited: bool,
    esc: Esc,
    csi: String,
    alternate: bool,
    out_tail: Vec<u8>,
    /// Index of the command whose output is arriving (the last submitted).
    current: Option<usize>,
    /// Time of the last output byte since the current command was submitted.
    last_output: Option<f64>,
}

impl Default for Indexer {
    fn default() -> Self {
        Self::new()
    }
}

/// Output sequences that enter / leave the alternate screen.
const ALT_ON: [&[u8]; 3] = [b"\x1b[?1049h", b"\x1b[?1047h", b"\x1b[?47h"];
const ALT_OFF: [&[u8]; 3] = [b"\x1b[?1049l", b"\x1b[?1047l", b"\x1b[?47l"];

impl Indexer {
    /// An empty index.
    pub fn new() -> Self {
        Indexer {
            commands: Vec::new(),
            line: String::new(),
            line_start: None,
            edited: false,
            esc: Esc::None,
            csi: String::new(),
            alternate: false,
            out_tail: Vec::new(),
            current: None,
            last_output: None,
        }
    }

    /// Feeds one event; `line` is its 1-based line in the file.
    pub fn push(&mut self, line: u64, ev: &Event) {
        self.push_text(line, ev.time, ev.kind, &ev.data);
    }

    /// Feeds one event given by its parts (a recorder indexing as it writes).
    pub fn push_text(&mut self, line: u64, time: f64, kind: EventKind, data: &str) {
        match kind {
            EventKind::Input if !self.alternate => {
                for c in data.chars() {
                    self.key(c, line, time);
                }
            }
            EventKind::Output => self.output(time, data),
            _ => {}
        }
    }

    /// Takes the commands submitted so far, keeping the line being typed. For a live
    /// session, where only what was submitted matters and memory must not grow with its
    /// length: the durations and output counts of what was taken are no longer followed.
    pub fn take_submitted(&mut self) -> Vec<Command> {
        self.current = None;
        self.last_output = None;
        std::mem::take(&mut self.commands)
    }

    /// The commands, in the order they were submitted.
    pub fn finish(mut self) -> Vec<Command> {
        self.close_current();
        self.commands
    }

    fn begin(&mut self, line: u64, time: f64) {
        if self.line_start.is_none() {
            self.line_start = Some((line, time));
        }
    }

    fn key(&mut self, c: char, line: u64, time: f64) {
        match self.esc {
            Esc::Start => {
                self.esc = match c {
                    '[' => {
                        self.csi.clear();
                        Esc::Csi
                    }
                    'O' => Esc::Ss3,
                    _ => {
                        // Alt-key chords (word motion, Alt-. last argument): not followed.
                        self.mark_edited(line, time);
                        Esc::None
                    }
                };
                return;
            }
            Esc::Csi => {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    self.esc = Esc::None;
                    match (self.csi.as_str(), c) {
                        // Bracketed paste markers: the pasted text is typed text.
                        ("200", '~') | ("201", '~') => {}
                        _ => self.mark_edited(line, time),
                    }
                } else if self.csi.len() < 32 {
                    self.csi.push(c);
                }
                return;
            }
            Esc::Ss3 => {
                self.esc = Esc::None;
                self.mark_edited(line, time);
                return;
            }
            Esc::None => {}
        }
        match c {
            '\r' | '\n' => self.submit(time),
            '\u{1b}' => self.esc = Esc::Start,
            '\u{7f}' | '\u{8}' => {
                self.line.pop();
            }
            '\u{15}' => self.line.clear(),
            '\u{17}' => {
                let kept = self.line.trim_end().len();
                self.line.truncate(kept);
                let cut = self.line.rfind(char::is_whitespace).map_or(0, |i| i + 1);
                self.line.truncate(cut);
            }
            '\u{3}' => self.abandon(),
            // Tab completion, history (Ctrl-P/N), reverse search (Ctrl-R), cursor motion
            // (Ctrl-A/E/B/F), kill and yank (Ctrl-K/Y), transpose (Ctrl-T): the shell's
            // result shows only in the output.
            '\t' | '\u{1}' | '\u{2}' | '\u{5}' | '\u{6}' | '\u{b}' | '\u{e}' | '\u{10}'
            | '\u{12}' | '\u{14}' | '\u{19}' => self.mark_edited(line, time),
            c if c.is_control() => {}
            c => {
                self.begin(line, time);
                if self.line.chars().count() < MAX_COMMAND_CHARS {
                    self.line.push(c);
                }
            }
        }
    }

    fn mark_edited(&mut self, line: u64, time: f64) {
        self.begin(line, time);
        self.edited = true;
    }

    fn abandon(&mut self) {
        self.line.clear();
        self.line_start = None;
        self.edited = false;
    }

    fn submit(&mut self, time: f64) {
        let Some((line, start)) = self.line_start else {
            return;
        };
        let text = std::mem::take(&mut self.line);
        let edited = std::mem::take(&mut self.edited);
        self.line_start = None;
        if text.trim().is_empty() && !edited {
            return;
        }
        self.close_current();
        self.commands.push(Command {
            text,
            line,
            start,
            submitted: time,
            duration: 0.0,
            output_bytes: 0,
            edited,
            kind: CommandKind::Shell,
        });
        self.current = Some(self.commands.len() - 1);
        self.last_output = None;
    }

    /// Settles the running command's duration from its last output.
    fn close_current(&mut self) {
        if let Some(i) = self.current.take()
            && self.commands[i].kind == CommandKind::Shell
            && let Some(t) = self.last_output.take()
        {
            let c = &mut self.commands[i];
            c.duration = (t - c.submitted).max(0.0);
        }
    }

    fn output(&mut self, time: f64, data: &str) {
        if let Some(i) = self.current {
            let c = &mut self.commands[i];
            c.output_bytes += data.len() as u64;
            if c.kind == CommandKind::Shell {
                self.last_output = Some(time);
            }
        }
        // Look for the alternate-screen switches in the tail of the last event plus this one,
        // so a sequence cut between two events is still seen.
        let seen = switches(&self.out_tail, data);
        let was = self.alternate;
        let now = seen.last_on.unwrap_or(was);
        if !was && (now || seen.on) {
            self.enter_full_screen();
        }
        if (was || seen.on) && (!now || seen.off) {
            self.leave_full_screen(time);
        }
        self.alternate = now;
        let bytes = data.as_bytes();
        let keep = (self.out_tail.len() + bytes.len()).min(TAIL);
        let from_data = keep.min(bytes.len());
        let from_tail = keep - from_data;
        self.out_tail.drain(..self.out_tail.len() - from_tail);
        self.out_tail
            .extend_from_slice(&bytes[bytes.len() - from_data..]);
    }

    /// Feeds an output event known to hold no alternate-screen switch and to end with no
    /// ESC (see [`super::plain_output`]); only its length and time matter. Returns `false`
    /// (and does nothing) when the bytes before it could still complete a switch: the caller
    /// then feeds the decoded event.
    pub fn push_plain_output(&mut self, time: f64, len: u64) -> bool {
        if self.out_tail.contains(&0x1b) {
            return false;
        }
        if let Some(i) = self.current {
            let c = &mut self.commands[i];
            c.output_bytes += len;
            if c.kind == CommandKind::Shell {
                self.last_output = Some(time);
            }
        }
        // Its last TAIL bytes hold no ESC, so no switch can start in them: an empty tail
        // finds exactly the switches theirs would.
        self.out_tail.clear();
        true
    }

    fn enter_full_screen(&mut self) {
        if let Some(i) = self.current {
            self.commands[i].kind = CommandKind::FullScreen;
        }
        // Whatever was half-typed belonged to the shell before the program took the screen.
        self.abandon();
    }

    fn leave_full_screen(&mut self, time: f64) {
        if let Some(i) = self.current
            && self.commands[i].kind == CommandKind::FullScreen
        {
            let c = &mut self.commands[i];
            c.duration = (time - c.submitted).max(c.duration);
        }
        self.esc = Esc::None;
        self.abandon();
    }
}

/// Bytes of output kept to find a switch cut between two events (the longest switch less one).
pub const TAIL: usize = 7;

/// The alternate-screen switches of one output event.
#[derive(Debug, Default, PartialEq, Eq)]
struct Switches {
    /// A switch on was seen.
    on: bool,
    /// A switch off was seen.
    off: bool,
    /// The last switch seen: on (`true`) or off.
    last_on: Option<bool>,
}

impl Switches {
    fn see(&mut self, at: &[u8]) {
        if ALT_ON.iter().any(|n| at.starts_with(n)) {
            self.on = true;
            self.last_on = Some(true);
        } else if ALT_OFF.iter().any(|n| at.starts_with(n)) {
            self.off = true;
            self.last_on = Some(false);
        }
    }
}

/// The switches in `data` read as the continuation of `tail` (the end of the previous output):
/// first those starting in the tail, then those in `data`, found by searching for their
/// common prefix (a fast substring search: this runs over every output byte).
fn switches(tail: &[u8], data: &str) -> Switches {
    let mut seen = Switches::default();
    if !tail.is_empty() {
        let bytes = data.as_bytes();
        let mut edge = tail.to_vec();
        edge.extend_from_slice(&bytes[..bytes.len().min(TAIL)]);
        for i in 0..tail.len() {
            seen.see(&edge[i..]);
        }
    }
    for (i, _) in data.match_indices("\x1b[?") {
        seen.see(&data.as_bytes()[i..]);
    }
    seen
}

/// Indexes a whole event list whose `i`-th event sits on file line `lines[i]`.
pub fn index<'a>(events: impl IntoIterator<Item = (u64, &'a Event)>) -> Vec<Command> {
    let mut ix = Indexer::new();
    for (line, ev) in events {
        ix.push(line, ev);
    }
    ix.finish()
}

/// One event line's parts, borrowed from the line where it can be.
#[derive(serde::Deserialize)]
struct RawEvent<'a>(
    f64,
    #[serde(borrow)] std::borrow::Cow<'a, str>,
    #[serde(borrow)] std::borrow::Cow<'a, str>,
);

/// Indexes a cast read line by line, without holding it in memory; lines that are not events
/// (the header, a line cut by a crash, bytes that are not UTF-8) are skipped, as the player does.
pub fn index_reader(mut reader: impl std::io::BufRead) -> std::io::Result<Vec<Command>> {
    let mut ix = Indexer::new();
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        line += 1;
        if line == 1 {
            continue;
        }
        // Parsed from the bytes as borrowed parts: no separate UTF-8 pass over the line, no
        // copy of the code, and the data copied only when it holds escapes. A line that is not
        // an event (as `cast::parse_event` reads one) is skipped.
        let end = buf
            .iter()
            .rposition(|b| !matches!(b, b'\n' | b'\r'))
            .map_or(0, |i| i + 1);
        // Most lines are output the index only counts: read without decoding when that is
        // certain to give the same index.
        if let Some(out) = plain_output(&buf[..end], TAIL)
            && ix.push_plain_output(out.time, out.len)
        {
            continue;
        }
        if let Ok(RawEvent(time, code, data)) = serde_json::from_slice::<RawEvent>(&buf[..end])
            && time.is_finite()
            && time >= 0.0
            && let Some(kind) = EventKind::from_code(&code)
        {
            ix.push_text(line, time, kind, &data);
        }
    }
    Ok(ix.finish())
}

#[cfg(test)]
#[path = "commands_tests.rs"]
mod tests;
