//! Plain-text transcripts: what a person saw, rendered through the vt100 terminal emulator.
//!
//! Output is fed in pieces of at most [`PIECE`] bytes; after each piece the lines that scrolled
//! off the top are taken from the emulator's scrollback, so the text is one line per screen
//! line in the order it scrolled, then the final screen. A full-screen program's last frame
//! is written when it leaves the alternate screen. The line on which a command was submitted
//! starts with its time (`[HH:MM:SS]`); other lines are indented to match. No escape codes:
//! only the emulator's cell text is written.

use std::collections::BTreeMap;

use tui_term::vt100;

use super::cast::{Event, EventKind};
use super::commands::Command;

/// Largest output piece fed at once: it can scroll at most this many lines.
const PIECE: usize = 1024;
/// Scrollback kept by the emulator; drained after every piece, rebuilt past half of it.
const SCROLLBACK: usize = 4 * PIECE;
/// Width of the time column, `[HH:MM:SS] `.
const STAMP_WIDTH: usize = 11;

/// Alternate-screen exits, where a full-screen program's last frame is taken.
const ALT_OFF: [&[u8]; 3] = [b"\x1b[?1049l", b"\x1b[?1047l", b"\x1b[?47l"];

struct Renderer {
    parser: vt100::Parser,
    /// Scrollback lines already written.
    seen: usize,
    /// Lines written so far (the absolute number of the next scrolled line).
    written: u64,
    /// Absolute line -> time of the command submitted on it.
    marks: BTreeMap<u64, f64>,
    /// The absolute line of the last command mark.
    last_mark: Option<u64>,
    /// Full-screen frames waiting for the line that launched them to be written.
    frames: Vec<(u64, Vec<String>)>,
    out: String,
}

/// `[HH:MM:SS] ` for a time in seconds.
fn stamp(t: f64) -> String {
    let s = t.max(0.0) as u64;
    format!("[{:02}:{:02}:{:02}] ", s / 3600, s / 60 % 60, s % 60)
}

impl Renderer {
    fn new(rows: u16, cols: u16) -> Self {
        Renderer {
            parser: vt100::Parser::new(rows, cols, SCROLLBACK),
            seen: 0,
            written: 0,
            marks: BTreeMap::new(),
            last_mark: None,
            frames: Vec::new(),
            out: String::new(),
        }
    }

    /// Writes a scrolled or final screen line, then any frame launched from it.
    fn line(&mut self, text: &str) {
        let abs = self.written;
        self.written += 1;
        let prefix = self.marks.remove(&abs).map(stamp);
        self.write(prefix, text);
        while self.frames.first().is_some_and(|(at, _)| *at <= abs) {
            let (_, rows) = self.frames.remove(0);
            self.write_frame(rows);
        }
    }

    fn write(&mut self, prefix: Option<String>, text: &str) {
        let prefix = prefix.unwrap_or_else(|| " ".repeat(STAMP_WIDTH));
        // The emulator holds only printable cells; drop anything else all the same.
        let text: String = text.chars().filter(|c| !c.is_control()).collect();
        self.out.push_str(format!("{prefix}{text}").trim_end());
        self.out.push('\n');
    }

    /// A full-screen program's frame, between rules.
    fn write_frame(&mut self, rows: Vec<String>) {
        self.write(None, "----- full-screen program, last frame -----");
        for r in rows {
            self.write(None, &r);
        }
        self.write(None, "----- end of frame -----");
    }

    /// Marks the cursor's line as where a command was submitted at `time`.
    fn mark(&mut self, time: f64) {
        let screen = self.parser.screen();
        if !screen.alternate_screen() {
            let abs = self.written + u64::from(screen.cursor_position().0);
            self.marks.entry(abs).or_insert(time);
            self.last_mark = Some(abs);
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            // Cut before the next alternate-screen exit so the program's last frame is seen.
            let exit = ALT_OFF
                .iter()
                .filter_map(|n| data.windows(n.len()).position(|w| w == *n))
                .filter(|&p| p > 0)
                .min();
            let mut n = data.len().min(PIECE);
            if let Some(p) = exit {
                n = n.min(p);
            }
            if self.parser.screen().alternate_screen()
                && ALT_OFF.iter().any(|s| data.starts_with(s))
            {
                self.frame();
            }
            self.parser.process(&data[..n]);
            self.drain();
            data = &data[n..];
        }
    }

    /// Writes the lines that scrolled off since the last call.
    fn drain(&mut self) {
        if self.parser.screen().alternate_screen() {
            return; // the alternate screen has no scrollback; the main one is frozen meanwhile
        }
        let (rows, cols) = self.parser.screen().size();
        let screen = self.parser.screen_mut();
        screen.set_scrollback(usize::MAX);
        let total = screen.scrollback();
        let mut lines = Vec::new();
        let mut at = self.seen.min(total);
        while at < total {
            let screen = self.parser.screen_mut();
            screen.set_scrollback(total - at);
            let take = (total - at).min(usize::from(rows));
            lines.extend(screen.rows(0, cols).take(take));
            at += take;
        }
        self.parser.screen_mut().set_scrollback(0);
        for l in lines {
            self.line(&l);
        }
        self.seen = total;
        if total > SCROLLBACK / 2 {
            // Start a fresh emulator holding the same screen, so scrollback never fills up
            // (a full one would drop lines before they were written).
            let state = self.parser.screen().state_formatted();
            self.parser = vt100::Parser::new(rows, cols, SCROLLBACK);
            self.parser.process(&state);
            self.seen = 0;
        }
    }

    /// Writes the current screen, trailing blank rows left out.
    fn screen_lines(&self) -> Vec<String> {
        let (_, cols) = self.parser.screen().size();
        let mut rows: Vec<String> = self.parser.screen().rows(0, cols).collect();
        while rows.last().is_some_and(|r| r.trim().is_empty()) {
            rows.pop();
        }
        rows
    }

    /// Keeps the full-screen program's current frame, to be written after the line that
    /// launched it (lines still on the main screen scroll out later).
    fn frame(&mut self) {
        let at = self.last_mark.unwrap_or(self.written);
        let rows = self.screen_lines();
        self.frames.push((at, rows));
    }

    fn finish(mut self) -> String {
        self.drain();
        if self.parser.screen().alternate_screen() {
            self.frame();
        } else {
            for r in self.screen_lines() {
                self.line(&r);
            }
        }
        for (_, rows) in std::mem::take(&mut self.frames) {
            self.write_frame(rows);
        }
        self.out
    }
}

/// The transcript of `events` on a `cols`x`rows` terminal, command lines stamped with the
/// times of `commands` (as [`super::commands::index`] returns them, in order).
pub fn render_text(events: &[Event], cols: u16, rows: u16, commands: &[Command]) -> String {
    let size = |c: u16, r: u16| (r.clamp(2, 500), c.clamp(2, 1000));
    let (r, c) = size(cols, rows);
    let mut t = Renderer::new(r, c);
    let mut next = 0;
    for ev in events {
        match ev.kind {
            EventKind::Input => {
                while next < commands.len() && commands[next].submitted <= ev.time {
                    t.mark(commands[next].submitted);
                    next += 1;
                }
            }
            EventKind::Output => t.feed(ev.data.as_bytes()),
            EventKind::Resize => {
                if let Some((c, r)) = ev.resize_size() {
                    let (r, c) = size(c, r);
                    t.parser.screen_mut().set_size(r, c);
                }
            }
            EventKind::Marker => {}
        }
    }
    t.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::commands::index;

    fn ev(time: f64, kind: EventKind, data: &str) -> Event {
        Event {
            time,
            kind,
            data: data.into(),
        }
    }

    fn render(events: &[Event], rows: u16) -> String {
        let cmds = index(events.iter().enumerate().map(|(i, e)| (i as u64 + 2, e)));
        render_text(events, 40, rows, &cmds)
    }

    #[test]
    fn colours_are_dropped_and_lines_scroll_in_order_with_stamps() {
        let mut evs = vec![
            ev(0.0, EventKind::Output, "$ "),
            ev(65.0, EventKind::Input, "ls\r"),
        ];
        evs.push(ev(65.1, EventKind::Output, "ls\r\n"));
        let listing: String = (0..10)
            .map(|i| format!("\x1b[01;34mdir{i}\x1b[0m\r\n"))
            .collect();
        evs.push(ev(65.2, EventKind::Output, &format!("{listing}$ ")));
        let text = render(&evs, 4);
        assert!(!text.contains('\u{1b}'), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "[00:01:05] $ ls");
        for i in 0..10 {
            assert_eq!(lines[i + 1], format!("           dir{i}"));
        }
        assert_eq!(lines[11], "           $");
        assert_eq!(lines.len(), 12);
    }

    #[test]
    fn full_screen_frame_is_written_when_it_leaves() {
        let evs = vec![
            ev(0.0, EventKind::Output, "$ "),
            ev(1.0, EventKind::Input, "top\r"),
            ev(
                1.1,
                EventKind::Output,
                "top\r\n\x1b[?1049h\x1b[H\x1b[2Jload average: 0.01",
            ),
            ev(2.0, EventKind::Output, "\x1b[?1049l$ "),
        ];
        let text = render(&evs, 5);
        assert!(!text.contains('\u{1b}'));
        let frame = text.find("load average: 0.01").expect("frame written");
        let prompt = text.find("[00:00:01] $ top").expect("command stamped");
        let back = text.rfind("$").unwrap();
        assert!(prompt < frame && frame < back, "in the order seen:\n{text}");
    }

    #[test]
    fn long_output_through_rebuilds_keeps_every_line() {
        let body: String = (0..(SCROLLBACK * 2)).map(|i| format!("l{i}\r\n")).collect();
        let text = render(&[ev(0.0, EventKind::Output, &body)], 3);
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        assert_eq!(lines.len(), SCROLLBACK * 2, "{text}");
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(*l, format!("l{i}"));
        }
    }
}
