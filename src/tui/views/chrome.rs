//! The frame around every screen: header with tabs, status line, key hints, help, DEMO panel.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Row, Table};

use crate::request;
use crate::tui::action::Screen;
use crate::tui::app::{State, Status};
use crate::tui::keymap;
use crate::tui::model::DemoCode;
use crate::tui::theme::Theme;
use crate::tui::widgets::{self, badge};

/// Brand badge, tabs, acting user and connection state.
///
/// The acting user always shows in full. When every tab's name does not fit, the other tabs
/// show only their number (and their counters), the current one its full name; when even that
/// does not fit, the brand badge goes.
pub fn header(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let mut right = vec![Span::styled(format!(" as {} ", state.user), theme.text)];
    if state.connection_lost.is_some() {
        right.insert(0, badge("OFFLINE", theme.badge_danger));
    }
    let right = Line::from(right);
    let room = usize::from(area.width).saturating_sub(right.width());
    let brand = || vec![badge("PINK SOMBRERO", theme.badge_brand), Span::raw(" ")];
    let full = [brand(), tabs(state, theme, false)].concat();
    let compact = [brand(), tabs(state, theme, true)].concat();
    let spans = if Line::from(full.clone()).width() <= room {
        full
    } else if Line::from(compact.clone()).width() <= room {
        compact
    } else {
        tabs(state, theme, true)
    };
    let [tabs_area, who] = Layout::horizontal([
        Constraint::Min(1),
        Constraint::Length(u16::try_from(right.width()).unwrap_or(u16::MAX)),
    ])
    .areas(area);
    frame.render_widget(Line::from(spans), tabs_area);
    frame.render_widget(right.right_aligned(), who);
}

/// The emergency banner: one line over every screen while an emergency request is in its
/// veto window or its session is live. Returns the area left below it.
pub fn emergency_banner(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) -> Rect {
    let loud = state.loud_emergencies();
    let Some(r) = loud.first() else {
        return area;
    };
    let until = r
        .deadline
        .map_or_else(|| "?".to_string(), |t| t.format("%H:%M:%S").to_string());
    let head = format!(" EMERGENCY {} by {} on {}: ", r.id, r.requester, r.target);
    let (long, short) = if r.state == request::State::Emergency {
        ("approvers may deny until", "deny until")
    } else {
        ("session live until", "live until")
    };
    let more = match loud.len() {
        1 => String::new(),
        n => format!(" (+{} more: Requests, 2)", n - 1),
    };
    // The longest wording that fits; the ids and the deadline always show whole.
    let room = usize::from(area.width);
    let text = [
        format!("{head}{long} {until} UTC{more}"),
        format!("{head}{long} {until}{more}"),
        format!("{head}{short} {until}{more}"),
        format!("{head}{short} {until}"),
    ]
    .into_iter()
    .find(|t| t.chars().count() <= room)
    .unwrap_or_else(|| format!("{head}{short} {until}"));
    let [banner, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    frame.render_widget(Paragraph::new(text).style(theme.badge_danger), banner);
    rest
}

/// The tabs: ` 1 Fleet ` each, or (compact) ` 1 ` for all but the current one.
fn tabs(state: &State, theme: &Theme, compact: bool) -> Vec<Span<'static>> {
    let pending = state.broker.ready().map_or(0, |b| b.approvals.len());
    // The review queue's counter is for those who review (approvers and reviewers).
    let reviews = state
        .broker
        .ready()
        .filter(|b| b.reviewer)
        .map_or(0, |b| b.reviews.len());
    let live = state.session.as_ref().is_some_and(|p| p.is_live());
    Screen::ALL
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let current = *s == state.screen;
            let mut title = if compact && !current {
                format!(" {}", i + 1)
            } else {
                format!(" {} {}", i + 1, s.title())
            };
            if *s == Screen::Approvals && pending > 0 {
                title.push_str(&format!(" ({pending})"));
            }
            if *s == Screen::Recordings && reviews > 0 {
                title.push_str(&format!(" ({reviews})"));
            }
            if *s == Screen::Session && live {
                title.push_str(" ●");
            }
            title.push(' ');
            let style = if current { theme.tab_active } else { theme.tab };
            Span::styled(title, style)
        })
        .collect()
}

/// The status line: connection problems first, then the last message.
pub fn status_line(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let line = match (&state.connection_lost, &state.status) {
        (Some(msg), _) => Line::styled(
            format!("Connection lost: {msg} (retrying; what you see may be stale)"),
            theme.status_error,
        ),
        (None, Some(Status::Error(msg))) => Line::styled(msg.clone(), theme.status_error),
        (None, Some(Status::Info(msg))) => Line::styled(msg.clone(), theme.status_ok),
        (None, None) => Line::default(),
    };
    frame.render_widget(line, area);
}

/// What to press next, from the keymap.
///
/// While one of my requests is approved and not opened, `o` leads on every screen.
pub fn hints(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let ctx = keymap::context(state);
    let open = state
        .notice
        .as_ref()
        .filter(|_| matches!(ctx, keymap::Context::Screen(_)))
        .map(|n| format!("open {} (approved)", n.id));
    let mut hints: Vec<(&str, &str)> = open.as_deref().map(|o| ("o", o)).into_iter().collect();
    hints.extend(keymap::hints(ctx));
    // Whole hints only: the last ones give way on a narrow terminal (`?` lists them all).
    while hints.len() > 1 && widgets::hints_line(&hints, theme).width() > usize::from(area.width) {
        hints.pop();
    }
    frame.render_widget(widgets::hints_line(&hints, theme), area);
}

/// The keys of the current screen, generated from the keymap; the keys whose action asks for
/// the TOTP code are marked, and a note says why.
pub fn help(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let ctx = keymap::base_context(state);
    let at_open = state.broker.ready().is_none_or(|b| b.policy.code_at_open);
    let lines = keymap::help_lines(ctx, at_open);
    let any_code = lines.iter().any(|(_, _, code)| *code);
    let mut rows: Vec<Row> = lines
        .into_iter()
        .map(|(k, d, code)| {
            Row::new(vec![
                Span::styled(k, theme.key),
                Span::styled(d, theme.text),
                Span::styled(if code { "code" } else { "" }, theme.badge_warn),
            ])
        })
        .collect();
    if any_code {
        rows.push(Row::new(vec![Span::raw("")]));
        rows.push(Row::new(vec![
            Span::styled("code", theme.badge_warn),
            Span::styled("asks for your TOTP code (once each)", theme.text_dim),
        ]));
    }
    let h = u16::try_from(rows.len())
        .unwrap_or(u16::MAX)
        .saturating_add(2);
    let popup = widgets::centered(area, 64, h);
    let title = match ctx {
        keymap::Context::Screen(s) => format!(" Keys: {} ", s.title()),
        _ => " Keys ".to_string(),
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(12),
                Constraint::Min(10),
                Constraint::Length(4),
            ],
        )
        .block(widgets::panel(title, theme).title_bottom(" Esc closes ")),
        popup,
    );
}

/// The whole flow in a few lines, for someone who has never seen it. Each code works once and
/// codes only go forward, so an action right after a switch takes the next code.
const DEMO_WALKTHROUGH: &[&str] = &[
    "Try it:",
    "1 Fleet: b on a node,",
    "  reason, Enter Enter,",
    "  oncall's now code, Enter",
    "2 u alice + now code, then",
    "  3 a + next code, Enter",
    "3 u bob: the same",
    "4 u oncall + next code;",
    "  o + code once next is now",
    "5 exit: node gets replaced",
    "6 5 Recordings: Enter plays",
    "Codes go forward, once each",
    "D: this panel / one line",
];

/// The DEMO panel: every demo user's current and next code, and the walk-through.
pub fn demo_panel(frame: &mut Frame, area: Rect, codes: &[DemoCode], theme: &Theme) {
    let block = Block::bordered()
        .title(Span::styled(" DEMO ", theme.badge_warn))
        .border_style(theme.demo);
    let left = codes.first().map_or(0, |c| c.seconds_left);
    let mut lines = vec![
        Line::styled("Demo users' TOTP codes", theme.demo),
        Line::styled("(a real user reads the", theme.text_dim),
        Line::styled(" code from their phone)", theme.text_dim),
        Line::styled(format!("now changes in {left:>2}s"), theme.text_dim),
        Line::styled(format!("{:<8}{:<8}next", "", "now"), theme.text_dim),
    ];
    for c in codes {
        lines.push(Line::from(vec![
            Span::styled(format!("{:<8}", c.user), theme.text),
            Span::styled(c.code.clone(), theme.key),
            Span::styled("  ", theme.text_dim),
            Span::styled(c.next.clone(), theme.text),
        ]));
        lines.push(Line::styled(format!("  {}", c.role), theme.text_dim));
    }
    lines.push(Line::default());
    for step in DEMO_WALKTHROUGH {
        lines.push(Line::styled(*step, theme.text_dim));
    }
    let [inner] = Layout::vertical([Constraint::Min(1)]).areas(block.inner(area));
    frame.render_widget(block, area);
    frame.render_widget(Paragraph::new(lines), inner);
}

/// The DEMO strip: one line of codes, `user now/next`, or only the current ones when both do
/// not fit; `D` shows the whole panel.
pub fn demo_strip(frame: &mut Frame, area: Rect, codes: &[DemoCode], theme: &Theme) {
    let left = codes.first().map_or(0, |c| c.seconds_left);
    let line = |next: bool| {
        let mut spans = vec![
            badge("DEMO", theme.badge_warn),
            Span::styled(format!(" {left:>2}s "), theme.text_dim),
        ];
        for (i, c) in codes.iter().enumerate() {
            if i > 0 {
                spans.push(Span::styled(" · ", theme.text_dim));
            }
            spans.push(Span::styled(format!("{} ", c.user), theme.text));
            spans.push(Span::styled(c.code.clone(), theme.key));
            if next {
                spans.push(Span::styled(format!("/{}", c.next), theme.text));
            }
        }
        Line::from(spans)
    };
    let with_next = line(true);
    let shown = if with_next.width() <= usize::from(area.width) {
        with_next
    } else {
        line(false)
    };
    frame.render_widget(shown, area);
}
