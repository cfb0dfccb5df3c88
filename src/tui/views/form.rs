//! Forms and prompts: fields, masked codes, inline refusals.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use crate::tui::form::{Form, Purpose};
use crate::tui::theme::Theme;
use crate::tui::widgets::{self, badge};

/// Draws a form over `area`: the request form large, prompts small.
pub fn draw(frame: &mut Frame, area: Rect, form: &Form, theme: &Theme) {
    let mut lines = Vec::new();
    if let Purpose::NewRequest { .. } = form.purpose {
        if form.emergency {
            lines.push(Line::from(vec![
                badge("EMERGENCY DOOR ON", theme.badge_danger),
                Span::styled(
                    format!(
                        " Announced to every approver now; any of them may deny it for {}, then it opens without approvals. Incident required; reviewed afterwards.",
                        humantime::format_duration(form.limits.veto_window)
                    ),
                    theme.status_error,
                ),
            ]));
        } else {
            lines.push(Line::styled(
                format!(
                    "Needs {} approvals from other people. Opening taints the node; it is replaced after.",
                    form.limits.approvals_required
                ),
                theme.text_dim,
            ));
        }
        lines.push(Line::default());
    }
    for (label, value) in &form.context {
        lines.push(Line::from(vec![
            Span::styled(format!("  {label:<10} "), theme.text_dim),
            Span::styled(value.clone(), theme.text),
        ]));
    }
    if !form.context.is_empty() {
        lines.push(Line::default());
    }
    for (i, f) in form.fields.iter().enumerate() {
        let focused = i == form.focus;
        let shown = if f.masked {
            "•".repeat(f.value.chars().count())
        } else {
            f.value.clone()
        };
        let cursor = if focused { "▏" } else { "" };
        let marker = if focused { "▶ " } else { "  " };
        lines.push(Line::from(vec![
            Span::styled(marker, theme.key),
            Span::styled(format!("{:<10} ", f.label), theme.title),
            Span::styled(
                format!("{shown}{cursor}"),
                if focused {
                    theme.input_focused
                } else {
                    theme.input
                },
            ),
        ]));
        if focused {
            lines.push(Line::styled(
                format!("             {}", f.hint),
                theme.text_dim,
            ));
        }
    }
    lines.push(Line::default());
    if let Some(err) = &form.error {
        lines.push(Line::styled(format!("Refused: {err}"), theme.status_error));
    } else if form.busy {
        lines.push(Line::styled("Checking…", theme.text_dim));
    }
    let submit = if form.submits_on_enter() {
        "submit"
    } else {
        "next field"
    };
    let mut hints = vec![("Enter", submit), ("Tab", "next field"), ("Esc", "cancel")];
    if matches!(form.purpose, Purpose::NewRequest { .. }) && form.limits.emergency_allowed {
        hints.push((
            "C-e",
            if form.emergency {
                "ordinary request"
            } else {
                "EMERGENCY door"
            },
        ));
    }
    lines.push(widgets::hints_line(&hints, theme));
    let w = match form.purpose {
        Purpose::NewRequest { .. } => area.width.saturating_sub(4).max(40),
        _ if !form.context.is_empty() => area.width.saturating_sub(4).clamp(40, 100),
        _ => 64,
    };
    // Long reasons wrap: count the rows each line takes inside the border.
    let inner = usize::from(w.saturating_sub(2)).max(1);
    let rows: usize = lines.iter().map(|l| l.width().max(1).div_ceil(inner)).sum();
    let h = u16::try_from(rows).unwrap_or(u16::MAX).saturating_add(3);
    let popup = widgets::centered(area, w, h);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(widgets::panel(format!(" {} ", form.title()), theme)),
        popup,
    );
}
