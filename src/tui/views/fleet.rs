//! Fleet: the nodes, filterable, with badges.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Row;

use crate::tui::action::Screen;
use crate::tui::app::State;
use crate::tui::columns::{self, Column};
use crate::tui::model::{Badge, FleetRow, Loadable};
use crate::tui::theme::Theme;
use crate::tui::widgets::{self, Listing, badge};

/// Draws the Fleet screen.
pub fn draw(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let rows = match &state.fleet {
        Loadable::Loading => {
            let lines = vec![Line::styled("Listing the fleet…", theme.text_dim)];
            return widgets::message(frame, area, widgets::panel(" Fleet ", theme), lines);
        }
        Loadable::Failed(msg) => {
            let lines = vec![
                Line::styled("Cannot list the fleet.", theme.status_error),
                Line::styled(msg.clone(), theme.text),
                Line::styled(
                    "Check the lab or your AWS credentials and region; it retries by itself.",
                    theme.text_dim,
                ),
            ];
            return widgets::message(frame, area, widgets::panel(" Fleet ", theme), lines);
        }
        Loadable::Ready(rows) => rows,
    };
    let [filter, table] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    let f = &state.fleet_filter;
    let filter_line = if f.editing || !f.text.is_empty() {
        let cursor = if f.editing { "▏" } else { "" };
        Line::from(vec![
            Span::styled("/ ", theme.key),
            Span::styled(format!("{}{cursor}", f.text), theme.input_focused),
            Span::styled(
                format!("  {} of {} nodes", state.fleet_visible.len(), rows.len()),
                theme.text_dim,
            ),
        ])
    } else {
        Line::styled(
            format!(
                "{} nodes · select one and press b to ask for access",
                rows.len()
            ),
            theme.text_dim,
        )
    };
    frame.render_widget(filter_line, filter);
    if state.fleet_visible.is_empty() {
        let lines = if rows.is_empty() {
            vec![
                Line::styled("No nodes in the fleet.", theme.text),
                Line::styled(
                    "Start a lab (sombrero lab) or check --endpoint-url, region and profile.",
                    theme.text_dim,
                ),
            ]
        } else {
            vec![Line::styled(
                "No node matches the filter: Esc clears it.",
                theme.text,
            )]
        };
        return widgets::message(frame, table, widgets::panel(" Fleet ", theme), lines);
    }
    let columns = fleet_columns(state, rows, theme);
    let fitted = columns::fit(&columns, table.width.saturating_sub(2));
    let listing = Listing::of(
        widgets::panel(" Fleet ", theme),
        &fitted,
        state.cursor(Screen::Fleet),
    );
    widgets::windowed_table(frame, table, listing, &state.fleet_visible, theme, |&j| {
        let Some(r) = rows.get(j) else {
            return Row::default();
        };
        let badges = badge_line(state, r, theme);
        let ping_style = if r.ping == "Online" {
            theme.text
        } else {
            theme.status_error
        };
        fitted.row(vec![
            Line::styled(shown_name(r).to_string(), theme.text),
            Line::styled(r.id.clone(), theme.text_dim),
            Line::styled(r.ping.clone(), ping_style),
            Line::styled(r.platform.clone(), theme.text),
            Line::styled(
                r.since
                    .map_or("—".to_string(), |t| widgets::age(state.now, t)),
                theme.text_dim,
            ),
            badges,
        ])
    });
}

/// The node's name, or `—` when it has none but its id (the ID column shows that already).
fn shown_name(r: &FleetRow) -> &str {
    if r.name == r.id { "—" } else { &r.name }
}

/// A node's badges, in the styles of their meaning.
fn badge_line(state: &State, r: &FleetRow, theme: &Theme) -> Line<'static> {
    let spans: Vec<Span> = with_live_badges(state, r)
        .into_iter()
        .flat_map(|b| {
            let style = match b {
                Badge::Tainted
                | Badge::TaintedNotInSsm
                | Badge::TaintedAgentLost
                | Badge::Rogue => theme.badge_danger,
                Badge::Replacing | Badge::Old => theme.badge_warn,
                Badge::InSession => theme.badge_ok,
            };
            [badge(b.label(), style), Span::raw(" ")]
        })
        .collect();
    Line::from(spans)
}

/// The Fleet table's columns. The id, the agent's state and the badges (up to 24 columns of
/// them) never give way; when narrow, PLATFORM drops first, then AGE; NAME shrinks.
fn fleet_columns(state: &State, rows: &[FleetRow], theme: &Theme) -> [Column; 6] {
    let visible = || state.fleet_visible.iter().filter_map(|i| rows.get(*i));
    let badges = visible()
        .map(|r| badge_line(state, r, theme).width())
        .max()
        .map_or(0, |w| u16::try_from(w).unwrap_or(u16::MAX));
    [
        Column::flex("NAME", columns::widest(visible().map(shown_name)), 8, 0),
        Column::id("ID", columns::widest(visible().map(|r| r.id.as_str()))),
        // Whole like an id: `ConnectionLost` is what tells an approver the node is gone.
        Column::id("PING", columns::widest(visible().map(|r| r.ping.as_str()))),
        Column::flex(
            "PLATFORM",
            columns::widest(visible().map(|r| r.platform.as_str())),
            10,
            2,
        ),
        Column::flex("AGE", 4, 3, 1),
        Column::flex("", badges, badges.min(24), 0).filling(),
    ]
}

/// The node's own badges plus what the broker knows: an open session, a rogue one found.
fn with_live_badges(state: &State, r: &crate::tui::model::FleetRow) -> Vec<Badge> {
    let mut badges = r.badges.clone();
    if let Some(b) = state.broker.ready() {
        if b.rogue_targets.contains(&r.id) && !badges.contains(&Badge::Rogue) {
            badges.push(Badge::Rogue);
        }
        if b.active_targets.contains(&r.id) {
            badges.push(Badge::InSession);
        }
    }
    badges
}
