//! What a watcher's terminal shows: the watched session's bytes go through the same terminal
//! emulator the TUI uses (vt100), and only the resulting screen is drawn, cell by cell, with
//! escape sequences written here (cursor moves, colours, erase). Nothing the session printed
//! reaches the watcher's terminal as is, so a hostile session cannot set the watcher's title,
//! clipboard (OSC 52), colours palette or send DCS/APC strings to it.

use tui_term::vt100;

use crate::text::is_forbidden;

/// Largest session screen the watcher emulates (a daemon's word is bounded too).
pub const MAX_COLS: u16 = 1000;
/// Largest session screen the watcher emulates.
pub const MAX_ROWS: u16 = 500;

/// The emulated session screen and what was last drawn of it.
pub struct WatchScreen {
    parser: vt100::Parser,
    /// Each row's last drawn bytes; `None` = draw it next time.
    drawn: Vec<Option<Vec<u8>>>,
    /// Clear the watcher's screen before the next draw.
    clear: bool,
    /// The watcher's own terminal (rows, cols), to clip to; `None` = the session's size.
    view: Option<(u16, u16)>,
}

fn clamp(rows: u16, cols: u16) -> (u16, u16) {
    (rows.clamp(1, MAX_ROWS), cols.clamp(1, MAX_COLS))
}

impl WatchScreen {
    /// A blank `rows` x `cols` screen (clamped), drawn clipped to `view` when given.
    pub fn new(rows: u16, cols: u16, view: Option<(u16, u16)>) -> WatchScreen {
        let (rows, cols) = clamp(rows, cols);
        WatchScreen {
            parser: vt100::Parser::new(rows, cols, 0),
            drawn: vec![None; usize::from(rows)],
            clear: true,
            view,
        }
    }

    /// Feeds the session's output to the emulator.
    pub fn process(&mut self, bytes: &[u8]) {
        self.parser.process(bytes);
    }

    /// The session's screen changed size: everything is drawn again.
    pub fn resize(&mut self, rows: u16, cols: u16) {
        let (rows, cols) = clamp(rows, cols);
        self.parser.screen_mut().set_size(rows, cols);
        self.drawn = vec![None; usize::from(rows)];
        self.clear = true;
    }

    /// Something else was written to the watcher's terminal (a notice): draw every row again.
    pub fn invalidate(&mut self) {
        self.drawn.iter_mut().for_each(|r| *r = None);
    }

    /// The emulated screen.
    pub fn screen(&self) -> &vt100::Screen {
        self.parser.screen()
    }

    fn visible(&self) -> (u16, u16) {
        let (rows, cols) = self.parser.screen().size();
        match self.view {
            Some((vr, vc)) => (rows.min(vr.max(1)), cols.min(vc.max(1))),
            None => (rows, cols),
        }
    }

    /// The bytes that bring the watcher's terminal up to date: changed rows, then the cursor.
    pub fn render(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if std::mem::take(&mut self.clear) {
            out.extend_from_slice(b"\x1b[0m\x1b[H\x1b[2J");
        }
        let (rows, cols) = self.visible();
        for row in 0..rows {
            let line = render_row(self.parser.screen(), row, cols);
            let slot = &mut self.drawn[usize::from(row)];
            if slot.as_ref() != Some(&line) {
                out.extend_from_slice(format!("\x1b[{};1H", row + 1).as_bytes());
                out.extend_from_slice(&line);
                *slot = Some(line);
            }
        }
        let screen = self.parser.screen();
        let (crow, ccol) = screen.cursor_position();
        out.extend_from_slice(
            format!(
                "\x1b[{};{}H",
                crow.min(rows - 1) + 1,
                ccol.min(cols - 1) + 1
            )
            .as_bytes(),
        );
        out.extend_from_slice(if screen.hide_cursor() {
            b"\x1b[?25l"
        } else {
            b"\x1b[?25h"
        });
        out
    }

    /// Leaves the watcher's terminal usable: attributes reset, cursor shown, below the screen.
    pub fn finish(&self) -> Vec<u8> {
        let (rows, _) = self.visible();
        format!("\x1b[0m\x1b[?25h\x1b[{rows};1H\r\n").into_bytes()
    }
}

/// The cell attributes a row is drawn with.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Style {
    fg: vt100::Color,
    bg: vt100::Color,
    bold: bool,
    dim: bool,
    italic: bool,
    underline: bool,
    inverse: bool,
}

impl Style {
    fn of(c: &vt100::Cell) -> Style {
        Style {
            fg: c.fgcolor(),
            bg: c.bgcolor(),
            bold: c.bold(),
            dim: c.dim(),
            italic: c.italic(),
            underline: c.underline(),
            inverse: c.inverse(),
        }
    }

    /// True when a blank cell in this style looks like the terminal's background.
    fn is_plain_blank(self) -> bool {
        self.bg == vt100::Color::Default && !self.inverse && !self.underline
    }

    /// One SGR sequence setting exactly this style.
    fn sgr(self) -> String {
        let mut s = String::from("\x1b[0");
        for (on, code) in [
            (self.bold, "1"),
            (self.dim, "2"),
            (self.italic, "3"),
            (self.underline, "4"),
            (self.inverse, "7"),
        ] {
            if on {
                s.push(';');
                s.push_str(code);
            }
        }
        color(&mut s, self.fg, 30, 90, 38);
        color(&mut s, self.bg, 40, 100, 48);
        s.push('m');
        s
    }
}

fn color(s: &mut String, c: vt100::Color, base: u8, bright: u8, extended: u8) {
    match c {
        vt100::Color::Default => {}
        vt100::Color::Idx(n) if n < 8 => s.push_str(&format!(";{}", base + n)),
        vt100::Color::Idx(n) if n < 16 => s.push_str(&format!(";{}", bright + n - 8)),
        vt100::Color::Idx(n) => s.push_str(&format!(";{extended};5;{n}")),
        vt100::Color::Rgb(r, g, b) => s.push_str(&format!(";{extended};2;{r};{g};{b}")),
    }
}

/// One row as printable text and SGR sequences, ending with attributes reset and the rest of
/// the line erased. A cell's text never holds a control or bidi character (dropped here too).
fn render_row(screen: &vt100::Screen, row: u16, cols: u16) -> Vec<u8> {
    // Trailing blanks in the default background are left to the erase.
    let last = (0..cols).rev().find(|&col| {
        screen
            .cell(row, col)
            .is_some_and(|c| c.has_contents() || !Style::of(c).is_plain_blank())
    });
    let mut out = String::new();
    let mut style: Option<Style> = None;
    if let Some(last) = last {
        for col in 0..=last {
            let Some(cell) = screen.cell(row, col) else {
                break;
            };
            if cell.is_wide_continuation() {
                continue;
            }
            let s = Style::of(cell);
            if style != Some(s) {
                out.push_str(&s.sgr());
                style = Some(s);
            }
            let text: String = cell
                .contents()
                .chars()
                .filter(|c| !is_forbidden(*c))
                .collect();
            // A wide character in the last visible column would wrap the watcher's line.
            if text.is_empty() || (cell.is_wide() && col + 1 >= cols) {
                out.push(' ');
            } else {
                out.push_str(&text);
            }
        }
    }
    out.push_str("\x1b[0m\x1b[K");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn hostile_sequences_never_pass() {
        let mut s = WatchScreen::new(5, 40, None);
        s.process(b"\x1b]0;owned title\x07\x1b]52;c;ZXZpbA==\x07\x1bPq#0;2;0;0;0\x1b\\");
        s.process("hello \u{202e}world\r\n\x1b[31mred\x1b[0m".as_bytes());
        let out = shown(&s.render());
        assert!(out.contains("hello world"), "{out:?}");
        assert!(out.contains("\x1b[0;31mred"), "{out:?}");
        for bad in ["\x1b]", "\x1bP", "\x07", "\u{202e}", "owned", "ZXZpbA"] {
            assert!(!out.contains(bad), "{bad:?} passed through: {out:?}");
        }
    }

    #[test]
    fn only_changed_rows_are_drawn_again() {
        let mut s = WatchScreen::new(3, 20, None);
        s.process(b"one\r\ntwo");
        let first = shown(&s.render());
        assert!(first.starts_with("\x1b[0m\x1b[H\x1b[2J"), "{first:?}");
        assert!(first.contains("one") && first.contains("two"));
        s.process(b"!");
        let second = shown(&s.render());
        assert!(
            second.contains("\x1b[2;1H") && second.contains("two!"),
            "{second:?}"
        );
        assert!(!second.contains("one"), "{second:?}");
        s.invalidate();
        assert!(shown(&s.render()).contains("one"));
    }

    #[test]
    fn sizes_are_clamped_and_clipped() {
        let mut s = WatchScreen::new(u16::MAX, u16::MAX, Some((2, 5)));
        assert_eq!(s.screen().size(), (MAX_ROWS, MAX_COLS));
        s.process(b"abcdefgh\r\nxy\r\nhidden");
        let out = shown(&s.render());
        assert!(out.contains("abcde") && !out.contains("abcdef"), "{out:?}");
        assert!(!out.contains("hidden"), "{out:?}");
        s.resize(0, 0);
        assert_eq!(s.screen().size(), (1, 1));
        assert!(shown(&s.render()).contains("\x1b[2J"));
    }
}
