//! Risk flags while a session runs: each command submitted is checked against the rules as
//! the recorder indexes it, and a flagged one becomes a `command_flagged` audit event and a
//! notice to the session's viewers and watchers. Bounded per session: a paste of a thousand
//! `sudo` lines costs [`MAX_LIVE_FLAGS`] events and one summary, not a thousand (the
//! recording keeps every command for the review).

use serde_json::{Value, json};

use super::commands::Command;
use super::flags::{FlagRule, apply};
use crate::text::bounded;

/// Flagged commands audited live per session; after that one `suppressed` event.
pub const MAX_LIVE_FLAGS: usize = 50;
/// Characters of a command kept in the audit event and the notice (escaped).
pub const MAX_FLAG_TEXT: usize = 200;

/// One flagged command, as audited and as told.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagNotice {
    /// The `command_flagged` event's data.
    pub data: Value,
    /// One line for people: severity, label, the command.
    pub summary: String,
}

/// The live flag check of one session.
#[derive(Debug)]
pub struct LiveFlags {
    rules: Vec<FlagRule>,
    told: usize,
}

impl LiveFlags {
    /// Checks with `rules` (the defaults plus the policy's).
    pub fn new(rules: Vec<FlagRule>) -> Self {
        LiveFlags { rules, told: 0 }
    }

    /// The notices for `commands` (just submitted), within the session's budget.
    pub fn check(&mut self, commands: Vec<Command>) -> Vec<FlagNotice> {
        let mut out = Vec::new();
        for c in apply(commands, &self.rules) {
            let Some(top) = c.flags.first() else { continue };
            self.told += 1;
            if self.told > MAX_LIVE_FLAGS + 1 {
                continue;
            }
            if self.told == MAX_LIVE_FLAGS + 1 {
                out.push(FlagNotice {
                    data: json!({"suppressed": true, "after": MAX_LIVE_FLAGS}),
                    summary: format!(
                        "more than {MAX_LIVE_FLAGS} flagged commands: the rest are in the recording (sombrero commands --flagged)"
                    ),
                });
                continue;
            }
            let text = bounded(&c.command.text, MAX_FLAG_TEXT);
            let labels: Vec<&str> = c.flags.iter().map(|f| f.label.as_str()).collect();
            out.push(FlagNotice {
                summary: format!("flagged ({}): {}: {text}", top.severity.as_str(), top.label),
                data: json!({
                    "text": text,
                    "line": c.command.line,
                    "severity": top.severity.as_str(),
                    "labels": labels,
                }),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::commands::index;
    use crate::recording::flags::default_rules;
    use crate::recording::{Event, EventKind};

    fn typed(lines: &[&str]) -> Vec<Command> {
        let events: Vec<Event> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| Event {
                time: i as f64,
                kind: EventKind::Input,
                data: format!("{l}\r"),
            })
            .collect();
        index(events.iter().enumerate().map(|(i, e)| (i as u64 + 2, e)))
    }

    #[test]
    fn flagged_commands_are_told_escaped_and_bounded() {
        let mut live = LiveFlags::new(default_rules());
        let long = format!("sudo {}", "x".repeat(1000));
        let told = live.check(typed(&["ls", "sudo id", "history -c", &long]));
        assert_eq!(told.len(), 3, "{told:?}");
        assert_eq!(told[0].data["text"], "sudo id");
        assert_eq!(told[0].data["severity"], "medium");
        assert_eq!(told[0].data["line"], 3);
        assert_eq!(told[1].data["labels"][0], "hiding tracks: history cleared");
        assert!(told[1].summary.starts_with("flagged (high): hiding tracks"));
        let cut = told[2].data["text"].as_str().unwrap();
        assert!(
            cut.len() < MAX_FLAG_TEXT + 40 && cut.contains("more bytes"),
            "{cut}"
        );
    }

    #[test]
    fn a_flood_of_flagged_commands_costs_the_budget_and_one_summary() {
        let mut live = LiveFlags::new(default_rules());
        let many: Vec<String> = (0..MAX_LIVE_FLAGS + 30)
            .map(|i| format!("sudo id {i}"))
            .collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let told = live.check(typed(&refs[..10]));
        assert_eq!(told.len(), 10);
        let told = live.check(typed(&refs[10..]));
        assert_eq!(told.len(), MAX_LIVE_FLAGS - 10 + 1);
        assert_eq!(told.last().unwrap().data["suppressed"], true);
        assert!(live.check(typed(&["sudo reboot"])).is_empty());
    }
}
