//! Draws the player's command pane: one row per command (a mark for the command on screen,
//! its severity letter, its time on the player's timeline, the command as typed and, when
//! there is room, its first flag); the selected command's line and flags in the bottom edge.
//!
//! Narrow panes drop the flag column, then the time; the command's first word is never cut.

use ratatui::text::Span;

use super::flags::Severity;
use super::pane::PaneEntry;

/// The command column keeps at least this many cells before the time column may show.
const MIN_TEXT: usize = 12;
/// ... and at least this many before the flag column may show.
const MIN_TEXT_WITH_FLAG: usize = 24;
/// Widest flag column.
const MAX_FLAG: usize = 28;
/// Gutter, severity letter and the space after it.
const FIXED: usize = 3;

/// Display width of a text.
pub(super) fn width(s: &str) -> usize {
    Span::raw(s).width()
}

/// `s` cut to `max` cells, ending with `…` when something was cut.
pub(super) fn cut(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    let mut b = [0u8; 4];
    for c in s.chars() {
        let w = width(c.encode_utf8(&mut b));
        if used + w + 1 > max {
            break;
        }
        used += w;
        out.push(c);
    }
    if max > 0 {
        out.push('…');
    }
    out
}

/// The pane's columns for one width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Columns {
    pub(super) time: Option<usize>,
    pub(super) flag: Option<usize>,
    pub(super) text: usize,
}

/// Fits the columns: the flag column goes first, then the time, so the command keeps at least
/// its first word (the widest first word among the commands).
pub(super) fn fit(entries: &[PaneEntry], time_width: usize, inner: usize) -> Columns {
    let room = inner.saturating_sub(FIXED);
    let first_word = entries
        .iter()
        .map(|e| width(e.shown.split(' ').next().unwrap_or("")))
        .max()
        .unwrap_or(0);
    let keep = first_word.max(MIN_TEXT).min(room);
    let time = (room > keep + time_width).then_some(time_width);
    let after_time = room - time.map_or(0, |w| w + 1);
    let flag_width = entries
        .iter()
        .filter_map(|e| e.command.flags.first())
        .map(|f| width(&f.label))
        .max()
        .map(|w| w.min(MAX_FLAG));
    let flag = flag_width.filter(|w| after_time > keep.max(MIN_TEXT_WITH_FLAG) + w);
    Columns {
        time,
        flag,
        text: after_time - flag.map_or(0, |w| w + 1),
    }
}

pub(super) fn letter(severity: Severity) -> &'static str {
    match severity {
        Severity::High => "H",
        Severity::Medium => "M",
        Severity::Low => "L",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_marks_the_cut_and_keeps_what_fits() {
        assert_eq!(cut("rm -rf /var", 20), "rm -rf /var");
        assert_eq!(cut("rm -rf /var", 6), "rm -r…");
        assert_eq!(cut("日本語", 4), "日…");
    }

    #[test]
    fn columns_drop_the_flag_then_the_time_never_the_first_word() {
        use std::io::Cursor;

        use crate::recording::flags::default_rules;
        use crate::recording::pane::CommandPane;
        use crate::recording::player::Recording;

        let cast = "{\"version\": 2, \"width\": 30, \"height\": 5}\n\
            [1.0, \"i\", \"a-very-long-program-name --x\\r\"]\n\
            [2.0, \"i\", \"sudo -i\\r\"]\n";
        let rec = Recording::parse(Cursor::new(cast)).unwrap();
        let pane = CommandPane::build(&rec, &default_rules());
        let e = pane.entries();
        // "privilege: sudo" is 15 wide; the first word 24.
        let wide = fit(e, 4, 80);
        assert_eq!((wide.time, wide.flag), (Some(4), Some(15)));
        assert_eq!(wide.text, 80 - 3 - 5 - 16);
        let mid = fit(e, 4, 40);
        assert_eq!((mid.time, mid.flag, mid.text), (Some(4), None, 32));
        let narrow = fit(e, 4, 30);
        assert_eq!((narrow.time, narrow.flag, narrow.text), (None, None, 27));
        assert!(narrow.text >= "a-very-long-program-name".len());
    }
}
