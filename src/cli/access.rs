//! Request lifecycle commands: request, approve, deny, cancel, list, show, user, policy, audit.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::GlobalOpts;

/// `sombrero request`.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// Instance or managed node id (`i-...` or `mi-...`).
    #[arg(long)]
    pub target: String,
    /// Why you need a shell (the policy sets a minimum length).
    #[arg(long)]
    pub reason: String,
    /// Incident reference (the policy may require a pattern).
    #[arg(long)]
    pub incident: Option<String>,
    /// Session duration, e.g. `30m` (at most the policy's maximum).
    #[arg(long, default_value = "30m")]
    pub duration: String,
    /// Who is asking (default: the OS user).
    #[arg(long = "as", value_name = "NAME")]
    pub as_user: Option<String>,
    /// TOTP code (else prompted on a terminal, else one line of stdin).
    #[arg(long)]
    pub code: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sombrero approve`.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// Request id.
    pub request: String,
    /// Who approves (default: the OS user).
    #[arg(long = "as", value_name = "NAME")]
    pub as_user: Option<String>,
    /// TOTP code (else prompted on a terminal, else one line of stdin).
    #[arg(long)]
    pub code: Option<String>,
    /// Optional comment.
    #[arg(long)]
    pub comment: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sombrero deny`.
#[derive(Debug, Args)]
pub struct DenyArgs {
    /// Request id.
    pub request: String,
    /// Who denies (default: the OS user).
    #[arg(long = "as", value_name = "NAME")]
    pub as_user: Option<String>,
    /// TOTP code (else prompted on a terminal, else one line of stdin).
    #[arg(long)]
    pub code: Option<String>,
    /// Why (required).
    #[arg(long)]
    pub comment: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sombrero cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// Request id.
    pub request: String,
    /// Who cancels (default: the OS user); only the requester may.
    #[arg(long = "as", value_name = "NAME")]
    pub as_user: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sombrero list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only requests in this state (pending, approved, denied, cancelled, expired, active, closed).
    #[arg(long)]
    pub state: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sombrero show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Request id.
    pub request: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sombrero user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Enrol a user: new TOTP secret, otpauth URI and QR code, then one code to confirm.
    Add {
        /// User name (as the policy names them).
        name: String,
        /// requester, approver, reviewer or both (requester and approver).
        #[arg(long, default_value = "requester")]
        role: String,
        /// Print `{"name","secret_base32","otpauth_uri"}` and skip the confirmation.
        #[arg(long)]
        json: bool,
    },
    /// List enrolled users.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `sombrero policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check the policy file and print what is in force.
    Check {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `sombrero audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain; non-zero exit names the first broken event.
    Verify {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print every event as JSON lines (for a SIEM).
    Export,
}

fn todo_area() -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is being built (issue #2)")
}

/// Runs `sombrero request`.
pub fn request(_g: &GlobalOpts, _a: RequestArgs) -> anyhow::Result<ExitCode> {
    todo_area()
}

/// Runs `sombrero approve`.
pub fn approve(_g: &GlobalOpts, _a: ApproveArgs) -> anyhow::Result<ExitCode> {
    todo_area()
}

/// Runs `sombrero deny`.
pub fn deny(_g: &GlobalOpts, _a: DenyArgs) -> anyhow::Result<ExitCode> {
    todo_area()
}

/// Runs `sombrero cancel`.
pub fn cancel(_g: &GlobalOpts, _a: CancelArgs) -> anyhow::Result<ExitCode> {
    todo_area()
}

/// Runs `sombrero list`.
pub fn list(_g: &GlobalOpts, _a: ListArgs) -> anyhow::Result<ExitCode> {
    todo_area()
}

/// Runs `sombrero show`.
pub fn show(_g: &GlobalOpts, _a: ShowArgs) -> anyhow::Result<ExitCode> {
    todo_area()
}

/// Runs `sombrero user ...`.
pub fn user(_g: &GlobalOpts, _c: UserCommand) -> anyhow::Result<ExitCode> {
    todo_area()
}

/// Runs `sombrero policy ...`.
pub fn policy(_g: &GlobalOpts, _c: PolicyCommand) -> anyhow::Result<ExitCode> {
    todo_area()
}

/// Runs `sombrero audit ...`.
pub fn audit(_g: &GlobalOpts, _c: AuditCommand) -> anyhow::Result<ExitCode> {
    todo_area()
}
