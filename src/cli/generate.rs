//! `sombrero completions SHELL` and `sombrero man [--out DIR]`: files for packagers and
//! operators, generated from the same clap tree the binary parses with, so they never drift.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;

/// `sombrero completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for (printed on stdout).
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `sombrero man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command and subcommand here (sombrero.1, sombrero-user-add.1, ...)
    /// instead of printing the top-level page on stdout.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Prints the completion script for one shell.
pub fn completions(a: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(a.shell, &mut cmd, "sombrero", &mut out);
    out.flush().context("cannot write the completion script")?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the top-level page, or writes every page into `--out` and lists them.
pub fn man(a: ManArgs) -> anyhow::Result<ExitCode> {
    // Built so that subcommands know their full names (`sombrero-user-add`).
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    match a.out {
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .and_then(|()| out.flush())
                .context("cannot write the man page")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for path in write_pages(cmd, &dir)? {
                println!("{}", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the page of `cmd` and of each visible subcommand below it, depth first.
fn write_pages(cmd: clap::Command, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written.extend(write_pages(sub.clone(), dir)?);
    }
    let page = clap_mangen::Man::new(cmd);
    let path = page
        .generate_to(dir)
        .with_context(|| format!("cannot write {}", dir.join(page.get_filename()).display()))?;
    written.push(path);
    Ok(written)
}
