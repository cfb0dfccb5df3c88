//! Drawing the player: the terminal as it was, the status and progress lines, the help line
//! and the command pane beside or below.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, StatefulWidget, Widget};
use tui_term::widget::PseudoTerminal;

use super::{BINDINGS, Binding, INPUT_WINDOW, PlayerState, clock};
use crate::recording::flags::Severity;
use crate::recording::pane_view;

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
