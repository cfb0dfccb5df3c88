//! `sombrero open`: the session of an approved request.

use std::process::ExitCode;

use clap::Args;

use crate::config::GlobalOpts;

/// `sombrero open`.
#[derive(Debug, Args)]
pub struct OpenArgs {
    /// Request id (must be Approved and yours).
    pub request: String,
    /// Who opens (default: the OS user); must be the requester.
    #[arg(long = "as", value_name = "NAME")]
    pub as_user: Option<String>,
}

/// Runs `sombrero open`.
pub fn open(_g: &GlobalOpts, _a: OpenArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is being built (issue #3)")
}
