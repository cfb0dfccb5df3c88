//! Table columns that give way by priority instead of being cut.
//!
//! The rules, for every table of the TUI:
//!
//! 1. An identifier column (instance id, request id, user name, audit event name) is as wide
//!    as its widest value and is never narrowed, clipped or dropped. From 80 columns up every
//!    table's identifiers fit side by side.
//! 2. Other columns have a wanted width and a narrowest width. When the table is too narrow
//!    for every column at its narrowest, the column with the highest drop rank goes first,
//!    then the next (ranks are listed with each table's columns, in its view).
//! 3. Whatever width is left grows the remaining columns toward their wanted width, the
//!    lowest drop rank first; a column marked `fill` takes the rest.
//! 4. A shrunk cell ends with `…`, so a cut is never mistaken for a value.

use ratatui::layout::Constraint;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row};

/// Columns the table's highlight symbol (`▶ `) takes before the first column.
pub const HIGHLIGHT: u16 = 2;
/// Blank columns between two table columns (ratatui's default spacing).
pub const GAP: u16 = 1;

/// One column and how it gives way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Header text.
    pub title: &'static str,
    /// Width it would like.
    pub want: u16,
    /// Narrowest it may become (its `want` for identifiers).
    pub min: u16,
    /// Drop rank: the highest goes first when the table is too narrow; 0 never drops.
    pub drop: u8,
    /// Takes the width left over once every column has what it wants.
    pub fill: bool,
}

impl Column {
    /// An identifier: exactly as wide as its widest value (or its title), never cut or dropped.
    pub fn id(title: &'static str, widest: u16) -> Self {
        let w = widest.max(width(title));
        Column {
            title,
            want: w,
            min: w,
            drop: 0,
            fill: false,
        }
    }

    /// An identifier as wide as the widest `value` among `rows`.
    pub fn id_of<'a, T: 'a>(
        title: &'static str,
        rows: impl IntoIterator<Item = &'a T>,
        value: impl Fn(&'a T) -> &'a str,
    ) -> Self {
        Column::id(title, widest(rows.into_iter().map(value)))
    }

    /// A column that may shrink from `want` (at least its title) to `min`, and drop with rank
    /// `drop`.
    pub fn flex(title: &'static str, want: u16, min: u16, drop: u8) -> Self {
        let want = want.max(width(title));
        Column {
            title,
            want,
            min: min.min(want),
            drop,
            fill: false,
        }
    }

    /// The same column, taking the width left over.
    pub fn filling(self) -> Self {
        Column { fill: true, ..self }
    }
}

/// Display width of a text, in terminal columns.
pub fn width(text: &str) -> u16 {
    u16::try_from(Span::raw(text).width()).unwrap_or(u16::MAX)
}

/// The widest of some texts (0 for none).
pub fn widest<'a>(texts: impl IntoIterator<Item = &'a str>) -> u16 {
    texts.into_iter().map(width).max().unwrap_or(0)
}

/// The columns chosen for a width: which are shown, and how wide each is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fitted {
    /// (index into the table's columns, width), in table order.
    shown: Vec<(usize, u16)>,
    titles: Vec<&'static str>,
}

/// Fits `columns` into a table whose inside (within its border) is `inner` columns wide.
pub fn fit(columns: &[Column], inner: u16) -> Fitted {
    let mut kept: Vec<usize> = (0..columns.len()).collect();
    let space = |kept: &[usize]| {
        let gaps = GAP * u16::try_from(kept.len().saturating_sub(1)).unwrap_or(u16::MAX);
        inner.saturating_sub(HIGHLIGHT).saturating_sub(gaps)
    };
    let need = |kept: &[usize]| kept.iter().map(|&i| columns[i].min).sum::<u16>();
    while need(&kept) > space(&kept) {
        // The highest rank goes; among equals, the rightmost.
        let victim = kept
            .iter()
            .enumerate()
            .filter(|(_, i)| columns[**i].drop > 0)
            .max_by_key(|(pos, i)| (columns[**i].drop, *pos))
            .map(|(pos, _)| pos);
        match victim {
            Some(pos) => {
                kept.remove(pos);
            }
            None => break,
        }
    }
    let mut widths: Vec<u16> = kept.iter().map(|&i| columns[i].min).collect();
    let mut left = space(&kept).saturating_sub(need(&kept));
    // The most important (lowest rank) grow first.
    let mut order: Vec<usize> = (0..kept.len()).collect();
    order.sort_by_key(|&pos| columns[kept[pos]].drop);
    for pos in order {
        let grow = columns[kept[pos]]
            .want
            .saturating_sub(widths[pos])
            .min(left);
        widths[pos] += grow;
        left -= grow;
    }
    if let Some(pos) = kept.iter().position(|&i| columns[i].fill) {
        widths[pos] += left;
    }
    Fitted {
        shown: kept.into_iter().zip(widths).collect(),
        titles: columns.iter().map(|c| c.title).collect(),
    }
}

impl Fitted {
    /// Whether column `index` is shown.
    pub fn shows(&self, index: usize) -> bool {
        self.shown.iter().any(|(i, _)| *i == index)
    }

    /// The width column `index` got, if it is shown.
    pub fn width_of(&self, index: usize) -> Option<u16> {
        self.shown
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, w)| *w)
    }

    /// The shown columns' widths, for the table.
    pub fn widths(&self) -> Vec<Constraint> {
        self.shown
            .iter()
            .map(|(_, w)| Constraint::Length(*w))
            .collect()
    }

    /// The header row of the shown columns.
    pub fn header(&self) -> Row<'static> {
        Row::new(
            self.shown
                .iter()
                .map(|(i, w)| Cell::from(clip(Line::raw(self.titles[*i]), *w))),
        )
    }

    /// A row from one line per column (all of them, in table order): the shown ones, each
    /// clipped to its width with `…`.
    pub fn row<'a>(&self, mut cells: Vec<Line<'a>>) -> Row<'a> {
        let mut out = Vec::with_capacity(self.shown.len());
        for (i, w) in &self.shown {
            let line = cells.get_mut(*i).map(std::mem::take).unwrap_or_default();
            out.push(Cell::from(clip(line, *w)));
        }
        Row::new(out)
    }
}

/// `line` cut to `max` columns, ending with `…` when something was cut.
pub fn clip(line: Line<'_>, max: u16) -> Line<'_> {
    let max = usize::from(max);
    if line.width() <= max {
        return line;
    }
    let style = line.style;
    let mut spans: Vec<Span> = Vec::new();
    let mut used = 0;
    let room = max.saturating_sub(1);
    let mut last_style = Style::default();
    'outer: for span in line.spans {
        let mut text = String::new();
        for g in span.styled_graphemes(Style::default()) {
            let w = Span::raw(g.symbol).width();
            if used + w > room {
                if !text.is_empty() {
                    spans.push(Span::styled(text, span.style));
                }
                last_style = span.style;
                break 'outer;
            }
            used += w;
            text.push_str(g.symbol);
        }
        last_style = span.style;
        spans.push(Span::styled(text, span.style));
    }
    if max > 0 {
        spans.push(Span::styled("…", last_style));
    }
    Line::from(spans).style(style)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widths(f: &Fitted) -> Vec<(usize, u16)> {
        f.shown.clone()
    }

    #[test]
    fn identifiers_stay_whole_and_others_drop_by_rank() {
        let cols = [
            Column::id("ID", 19),
            Column::flex("PLATFORM", 15, 5, 2),
            Column::flex("PING", 14, 6, 1),
            Column::flex("REASON", 30, 6, 3).filling(),
        ];
        // Wide: everything, the filler takes the rest.
        let wide = fit(&cols, 100);
        assert_eq!(wide.shown.len(), 4);
        assert_eq!(widths(&wide)[0], (0, 19));
        // 2 + 19 + 5 + 6 + 6 + 3 gaps = 41 > 40: REASON (rank 3) goes first; the 6 columns
        // left grow PING (rank 1) before PLATFORM (rank 2).
        assert_eq!(widths(&fit(&cols, 40)), vec![(0, 19), (1, 5), (2, 12)]);
        // Too narrow for anything but the id: it still shows whole.
        assert_eq!(widths(&fit(&cols, 10)), vec![(0, 19)]);
    }

    #[test]
    fn clipped_cells_say_so() {
        let l = clip(
            Line::from(vec![Span::raw("Linux "), Span::raw("(Debian)")]),
            8,
        );
        assert_eq!(l.to_string(), "Linux (…");
        assert_eq!(clip(Line::raw("short"), 8).to_string(), "short");
        assert_eq!(clip(Line::raw("exactly8"), 8).to_string(), "exactly8");
    }
}
