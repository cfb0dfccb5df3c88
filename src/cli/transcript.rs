//! Reviewer aids: `sombrero commands` (the command index with risk flags) and `sombrero
//! export` (a plain-text transcript, or the index as text).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::backend::Config;
use crate::cli::{ExitError, connection};
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

/// Runs `f` on the cast (downloaded from the broker when there is one) with the risk rules:
/// the defaults plus the policy's `[[review.flag]]` (the broker's policy through a broker).
fn with_cast<T>(
    g: &Config,
    file: &Path,
    f: impl FnOnce(&Path, &[FlagRule]) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let backend = connection::backend(g)?;
    let src = connection::wait(backend.cast(file.to_path_buf()))?;
    f(&src.cast, &src.rules)
}

/// The flagged command index of a cast, read as a stream.
fn index_file(path: &Path, rules: &[FlagRule]) -> anyhow::Result<Vec<FlaggedCommand>> {
    let unreadable =
        |e: std::io::Error| ExitError::usage(format!("cannot read {}: {e}", path.display()));
    let f = std::fs::File::open(path).map_err(unreadable)?;
    let commands = commands::index_reader(std::io::BufReader::with_capacity(1 << 20, f))
        .map_err(unreadable)?;
    Ok(flags::apply(commands, rules))
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

/// The flagged commands of `path` as a table for a reviewer about to sign off, with the
/// default rules plus `extra` (the policy's).
pub(crate) fn flagged_notice(path: &Path, extra: Vec<FlagRule>) -> anyhow::Result<String> {
    let mut rules = flags::default_rules();
    rules.extend(extra);
    let all = index_file(path, &rules)?;
    let flagged: Vec<&FlaggedCommand> = all.iter().filter(|c| !c.flags.is_empty()).collect();
    Ok(if flagged.is_empty() {
        format!(
            "no flagged commands among {} in this recording\n",
            all.len()
        )
    } else {
        format!(
            "{} of {} commands in this recording are flagged:\n{}",
            flagged.len(),
            all.len(),
            table(&flagged)
        )
    })
}

/// Runs `sombrero commands`.
pub fn commands(g: &Config, a: CommandsArgs) -> anyhow::Result<ExitCode> {
    let all = with_cast(g, &a.file, index_file)?;
    let shown: Vec<&FlaggedCommand> = all
        .iter()
        .filter(|c| !a.flagged || !c.flags.is_empty())
        .collect();
    if a.json {
        println!("{}", crate::text::to_json_pretty(&shown)?);
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
pub fn export(g: &Config, a: ExportArgs) -> anyhow::Result<ExitCode> {
    let out = with_cast(g, &a.file, |path, rules| {
        Ok(match a.format {
            ExportFormat::Commands => table(&index_file(path, rules)?.iter().collect::<Vec<_>>()),
            ExportFormat::Text => {
                let rec = Recording::load(path).map_err(|e| ExitError::usage(e.to_string()))?;
                let commands: Vec<commands::Command> = index_file(path, rules)?
                    .into_iter()
                    .map(|c| c.command)
                    .collect();
                let h = &rec.header;
                transcript::render_text(&rec.events, h.width, h.height, &commands)
            }
        })
    })?;
    print!("{out}");
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
}
