//! `sombrero lab`: serve the local SSM-compatible lab fleet.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::GlobalOpts;

/// `sombrero lab`.
#[derive(Debug, Args)]
pub struct LabArgs {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Write the endpoint URL to this file once listening.
    #[arg(long, value_name = "FILE")]
    pub endpoint_file: Option<PathBuf>,
}

/// Runs `sombrero lab`.
pub fn run(_g: &GlobalOpts, _a: LabArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is being built (issue #3)")
}
