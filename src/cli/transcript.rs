//! Reviewer aids: `sombrero commands` (the command index with risk flags) and `sombrero
//! export` (a plain-text transcript, or the index as text).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::api::BrokerApi;
use crate::cli::{ExitError, access, recordings};
use crate::config::{GlobalOpts, Paths};
use crate::policy::Policy;
use crate::recording::commands::{self, CommandKind};
use crate::recording::flags::{self, FlagRule, FlaggedCommand};
use crate::recording::player::Recording;
use crate::recording::transcript;

/// `sombrero commands`.
#[derive(Debug, Args)]
pub struct CommandsArgs {
    /// The `.cast` file (with --broker: its name, as `sombrero recordings` lists it).
    pub file: PathBuf,
    /// Only commands that raised a risk flag.
    #[arg(long)]
    pub flagged: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `sombrero export` writes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// What a person saw, as plain text, command lines stamped with their time.
    Text,
    /// The command index with flags, as `sombrero commands` prints it.
    Commands,
}

/// `sombrero export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The `.cast` file (with --broker: its name, as `sombrero recordings` lists it).
    pub file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ExportFormat,
}

/// A loaded recording with its flagged command index.
struct Indexed {
    rec: Recording,
    commands: Vec<FlaggedCommand>,
}

/// Loads `file` (downloaded from the broker when there is one) and indexes it with the
/// default rules plus the policy's `[[review.flag]]` (the broker's policy through a broker).
fn load(g: &GlobalOpts, file: &Path) -> anyhow::Result<Indexed> {
    let (rec, extra) = match recordings::remote(g)? {
        Some(remote) => {
            let fetched = remote
                .fetch(recordings::remote_name(file)?)
                .map_err(access::fail)?;
            let policy = remote.policy().map_err(access::fail)?;
            (read(&fetched.cast)?, policy.review_flags)
        }
        None => {
            if !file.is_file() {
                return Err(ExitError::usage(format!("{} is not a file", file.display())).into());
            }
            let path = Paths::resolve(g)?.policy();
            // No policy file yet: the defaults alone. A broken one fails the command.
            let extra = if path.exists() {
                Policy::load(&path)
                    .map_err(|e| ExitError::usage(e.to_string()))?
                    .review_flags
            } else {
                Vec::new()
            };
            (read(file)?, extra)
        }
    };
    let mut rules: Vec<FlagRule> = flags::default_rules();
    rules.extend(extra);
    let commands = flags::apply(commands::index(numbered(&rec)), &rules);
    Ok(Indexed { rec, commands })
}

fn read(path: &Path) -> anyhow::Result<Recording> {
    Recording::load(path).map_err(|e| ExitError::usage(e.to_string()).into())
}

/// Each event with its 1-based file line (lines the loader skipped are counted).
fn numbered(rec: &Recording) -> impl Iterator<Item = (u64, &crate::recording::Event)> {
    let mut skipped = rec.skipped_lines.iter().peekable();
    let mut line = 1u64;
    rec.events.iter().map(move |ev| {
        line += 1;
        while skipped.peek().is_some_and(|s| **s == line) {
            skipped.next();
            line += 1;
        }
        (line, ev)
    })
}

/// Text safe to print on a terminal: controls and bidirectional overrides escaped.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `HH:MM:SS` for seconds.
fn clock(t: f64) -> String {
    let s = t.max(0.0) as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The index as a text table, one command a line.
fn table(commands: &[&FlaggedCommand]) -> String {
    let mut out = format!(
        "{:>6}  {:8}  {:>8}  {:>9}  {:28}  COMMAND\n",
        "LINE", "TIME", "DURATION", "OUTPUT", "FLAGS"
    );
    for c in commands {
        let cmd = &c.command;
        let flags = c
            .flags
            .iter()
            .map(|f| format!("{}: {}", f.severity.as_str(), f.label))
            .collect::<Vec<_>>()
            .join(", ");
        let mut text = printable(&cmd.text);
        if cmd.edited {
            text.push_str("  (edited, see output)");
        }
        if cmd.kind == CommandKind::FullScreen {
            text.push_str("  (full screen)");
        }
        out.push_str(&format!(
            "{:>6}  {:8}  {:>7.1}s  {:>8}B  {:28}  {text}\n",
            cmd.line,
            clock(cmd.submitted),
            cmd.duration,
            cmd.output_bytes,
            if flags.is_empty() { "-" } else { &flags },
        ));
    }
    out
}

/// Runs `sombrero commands`.
pub fn commands(g: &GlobalOpts, a: CommandsArgs) -> anyhow::Result<ExitCode> {
    let ix = load(g, &a.file)?;
    let shown: Vec<&FlaggedCommand> = ix
        .commands
        .iter()
        .filter(|c| !a.flagged || !c.flags.is_empty())
        .collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&shown)?);
    } else if shown.is_empty() {
        println!(
            "{}",
            if a.flagged {
                "no flagged commands"
            } else {
                "no commands"
            }
        );
    } else {
        print!("{}", table(&shown));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `sombrero export`.
pub fn export(g: &GlobalOpts, a: ExportArgs) -> anyhow::Result<ExitCode> {
    let ix = load(g, &a.file)?;
    match a.format {
        ExportFormat::Commands => print!("{}", table(&ix.commands.iter().collect::<Vec<_>>())),
        ExportFormat::Text => {
            let plain: Vec<commands::Command> =
                ix.commands.iter().map(|c| c.command.clone()).collect();
            let h = &ix.rec.header;
            print!(
                "{}",
                transcript::render_text(&ix.rec.events, h.width, h.height, &plain)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_controls_and_bidi() {
        assert_eq!(printable("ls\u{1b}[2J"), "ls\\u{1b}[2J");
        assert_eq!(printable("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(printable("caf\u{e9}"), "caf\u{e9}");
    }

    #[test]
    fn numbered_counts_skipped_lines() {
        let rec = Recording::parse(
            "{\"version\":2,\"width\":80,\"height\":24}\n[0.1,\"i\",\"a\"]\nbroken\n[0.2,\"i\",\"b\"]\n"
                .as_bytes(),
        )
        .unwrap();
        let lines: Vec<u64> = numbered(&rec).map(|(l, _)| l).collect();
        assert_eq!(lines, vec![2, 4]);
    }
}
