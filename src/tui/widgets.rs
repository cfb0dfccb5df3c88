//! Small drawing helpers shared by the views.

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table, TableState, Wrap};

use super::columns::Fitted;
use super::theme::Theme;

/// A badge: ` LABEL ` in a style.
pub fn badge(label: &str, style: Style) -> Span<'static> {
    Span::styled(format!(" {label} "), style)
}

/// Key hints: `key description · key description`.
pub fn hints_line(hints: &[(&str, &str)], theme: &Theme) -> Line<'static> {
    let mut spans = Vec::new();
    for (i, (key, what)) in hints.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" · ", theme.text_dim));
        }
        spans.push(Span::styled(key.to_string(), theme.key));
        spans.push(Span::styled(format!(" {what}"), theme.text));
    }
    Line::from(spans)
}

/// A rectangle of at most `w` x `h` centred in `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(h.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [c] = Layout::horizontal([Constraint::Length(w.min(area.width))])
        .flex(Flex::Center)
        .areas(v);
    c
}

/// A bordered block with a title, focused style.
pub fn panel<'a>(title: impl Into<Line<'a>>, theme: &Theme) -> Block<'a> {
    Block::bordered()
        .title(title)
        .title_style(theme.title)
        .border_style(theme.border_focused)
}

/// A paragraph of guidance lines centred in a panel (empty, loading and error states).
pub fn message(frame: &mut Frame, area: Rect, block: Block, lines: Vec<Line>) {
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let h = u16::try_from(lines.len()).unwrap_or(u16::MAX);
    let target = centered(inner, inner.width.saturating_sub(2), h.saturating_add(1));
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }).centered(),
        target,
    );
}

/// An empty screen's panel titled `title`: `(what is not there, a dimmer hint at what to do
/// about it)`.
pub fn empty<'a, 't>(
    frame: &mut Frame,
    area: Rect,
    title: impl Into<Line<'t>>,
    (headline, hint): (impl Into<std::borrow::Cow<'a, str>>, &'a str),
    theme: &Theme,
) {
    let lines = vec![
        Line::styled(headline, theme.text),
        Line::styled(hint, theme.text_dim),
    ];
    message(frame, area, panel(title, theme), lines);
}

/// A long list to draw a window of.
pub struct Listing<'a> {
    /// The surrounding block.
    pub block: Block<'a>,
    /// Column titles.
    pub header: Row<'a>,
    /// Column widths.
    pub widths: Vec<Constraint>,
    /// Selected row.
    pub selected: usize,
}

impl<'a> Listing<'a> {
    /// A table in `block` with the columns `fitted` chose, row `selected` selected.
    pub fn of(block: Block<'a>, fitted: &Fitted, selected: usize) -> Listing<'a> {
        Listing {
            block,
            header: fitted.header(),
            widths: fitted.widths(),
            selected,
        }
    }
}

/// Draws only the visible window of a long table, keeping the selection in view.
///
/// `row_of(item)` builds the row of each visible item on demand, so 10,000 items cost no more
/// than a screenful.
pub fn windowed_table<'a, T>(
    frame: &mut Frame,
    area: Rect,
    listing: Listing<'a>,
    items: &[T],
    theme: &Theme,
    row_of: impl Fn(&T) -> Row<'a>,
) {
    let Listing {
        block,
        header,
        widths,
        selected,
    } = listing;
    let len = items.len();
    let visible = usize::from(block.inner(area).height.saturating_sub(1)).max(1);
    let offset = selected.saturating_sub(visible - 1);
    let rows: Vec<Row> = items
        .iter()
        .skip(offset)
        .take(visible)
        .map(row_of)
        .collect();
    let table = Table::new(rows, widths)
        .header(header.style(theme.header))
        .block(block)
        .row_highlight_style(theme.selected)
        .highlight_symbol("▶ ");
    let mut state = TableState::default().with_selected((len > 0).then(|| selected - offset));
    frame.render_stateful_widget(table, area, &mut state);
}

/// `12m 03s`, `1h 05m`, or `ended` for a deadline.
pub fn time_left(now: DateTime<Utc>, deadline: Option<DateTime<Utc>>) -> String {
    let Some(d) = deadline else {
        return "—".to_string();
    };
    let secs = (d - now).num_seconds();
    if secs <= 0 {
        return "ended".to_string();
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m")
    } else {
        format!("{m}m {s:02}s")
    }
}

/// `45s`, `12m`, `5h`, `3d` since a moment.
pub fn age(now: DateTime<Utc>, since: DateTime<Utc>) -> String {
    let secs = (now - since).num_seconds().max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn durations_read_naturally() {
        let t0 = Utc.timestamp_opt(1_000_000, 0).unwrap();
        let later = |s| Some(t0 + chrono::Duration::seconds(s));
        assert_eq!(time_left(t0, later(723)), "12m 03s");
        assert_eq!(time_left(t0, later(3900)), "1h 05m");
        assert_eq!(time_left(t0, later(-1)), "ended");
        assert_eq!(age(t0 + chrono::Duration::seconds(7200), t0), "2h");
    }
}
