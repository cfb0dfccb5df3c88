//! The command line: one clap tree, one file per area, each with its args and handlers.
//!
//! Exit codes: 0 success, 1 refused by a rule (the message says which), 2 usage or input error.

pub mod access;
pub mod admin;
mod audit_anchor;
pub mod connection;
pub mod decide;
pub mod emergency;
pub mod fleet;
pub mod generate;
pub mod lab;
pub mod notify;
pub mod options;
pub mod recordings;
pub mod review_queue;
pub mod serve;
pub mod session;
pub mod store;
pub mod transcript;
pub mod ui;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Paths;
pub use options::GlobalOpts;

pub use crate::backend::Config;

/// Break-glass access for immutable infrastructure.
#[derive(Debug, Parser)]
#[command(name = "sombrero", version = env!("SOMBRERO_VERSION"), about, long_about = None)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: GlobalOpts,
    /// What to do; with none, the terminal UI opens.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the terminal UI (the default).
    Tui(ui::TuiArgs),
    /// Start a local lab fleet, a fresh demo data dir with three users, and the TUI.
    Demo(ui::DemoArgs),
    /// Serve a local SSM-compatible lab fleet on loopback.
    Lab(lab::LabArgs),
    /// Ask for break-glass access to one instance.
    Request(access::RequestArgs),
    /// Approve a pending request (needs your TOTP code).
    Approve(access::ApproveArgs),
    /// Deny a pending request (needs your TOTP code and a comment).
    Deny(access::DenyArgs),
    /// Cancel your own request.
    Cancel(access::CancelArgs),
    /// List requests.
    List(access::ListArgs),
    /// Show one request with its approvals and history.
    Show(access::ShowArgs),
    /// Show who the broker daemon (--broker) knows you as.
    Whoami(access::WhoamiArgs),
    /// Enrol and list users.
    #[command(subcommand)]
    User(admin::UserCommand),
    /// Check or print the policy file.
    #[command(subcommand)]
    Policy(admin::PolicyCommand),
    /// Test the policy's notification targets, or deliver what waits in the outbox.
    #[command(subcommand)]
    Notify(notify::NotifyCommand),
    /// Verify or export the hash-chained audit log.
    #[command(subcommand)]
    Audit(admin::AuditCommand),
    /// Open the session of an approved request (taints the target first).
    ///
    /// Exit status: for a shell, 0 when the shell ended by itself, 1 when the session was
    /// killed, expired, lost or failed; the SSM agent does not report a shell's own status, so
    /// `exit 3` still ends with 0. With `-- CMD ARGS`, the command's own exit status.
    Open(session::OpenArgs),
    /// Watch a live session read-only (approvers and reviewers; needs --broker).
    Watch(session::WatchArgs),
    /// End a live session (approvers).
    Kill(session::KillArgs),
    /// List the nodes of the fleet.
    Fleet(fleet::FleetArgs),
    /// Replace tainted instances that have no active session.
    Reap(fleet::ReapArgs),
    /// List sessions that did not go through pink-sombrero.
    Rogue(fleet::RogueArgs),
    /// Verify a recording's integrity chain and seal.
    Verify(recordings::VerifyArgs),
    /// Replay a recording in the terminal.
    Replay(recordings::ReplayArgs),
    /// List recordings with integrity and review status.
    Recordings(recordings::RecordingsArgs),
    /// Sign off a recording as reviewed (needs your TOTP code), or list the review queue
    /// (--pending).
    Review(recordings::ReviewArgs),
    /// Show the recorder's public key.
    #[command(subcommand)]
    Keys(recordings::KeysCommand),
    /// Run the broker as a daemon that thin clients reach with --broker.
    Serve(serve::ServeArgs),
    /// Set up the team store (a DynamoDB table shared by several brokers).
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completions(generate::CompletionsArgs),
    /// Print the man page, or write one per subcommand with --out DIR.
    Man(generate::ManArgs),
    /// List the commands typed in a recording, with risk flags.
    Commands(transcript::CommandsArgs),
    /// Export a recording as a plain-text transcript or as its command list.
    Export(transcript::ExportArgs),
}

/// An error that carries the process exit status it should produce.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitError {
    /// 1: refused by a rule; 2: usage or input error.
    pub code: u8,
    /// What to tell the person.
    pub message: String,
}

impl ExitError {
    /// Refused by a rule (exit 1).
    pub fn refused(message: impl Into<String>) -> Self {
        ExitError {
            code: 1,
            message: message.into(),
        }
    }

    /// Usage or input error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        ExitError {
            code: 2,
            message: message.into(),
        }
    }
}

/// Exit status for an error: an [`ExitError`] anywhere in the chain decides, else 1.
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|e| e.downcast_ref::<ExitError>().map(|x| x.code))
        .unwrap_or(1)
}

/// Sends tracing to the data dir's log file ([`crate::config::init_logging`]).
pub fn init_logging(paths: &Paths) -> anyhow::Result<()> {
    Ok(crate::config::init_logging(paths)?)
}

/// Parses the command line, runs it, and turns the outcome into an exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Printing commands end quietly when their reader goes away (`sombrero show X | head`), as
    // other command-line tools do. Commands that hold a session, a fleet or a terminal keep
    // the default Rust behaviour so they always get to close, seal and restore.
    let holds_state = matches!(
        cli.command,
        None | Some(
            Command::Open(_)
                | Command::Tui(_)
                | Command::Demo(_)
                | Command::Lab(_)
                | Command::Serve(_)
        )
    );
    if !holds_state {
        // SAFETY: setting a signal disposition before any thread is started.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            // Errors may quote a daemon's message or stored text: never raw to the terminal.
            let message = format!("{err:#}");
            eprintln!("sombrero: {}", crate::text::escape_lines(&message));
            ExitCode::from(exit_code_for(&err))
        }
    }
}

/// Dispatches one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Resolved once; below this point no command sees clap's options.
    let g = connection::config(&cli.global);
    match cli.command {
        None => ui::tui(&g, ui::TuiArgs::default()),
        Some(Command::Tui(a)) => ui::tui(&g, a),
        Some(Command::Demo(a)) => ui::demo(&g, a),
        Some(Command::Lab(a)) => lab::run(&g, a),
        Some(Command::Request(a)) => access::request(&g, a),
        Some(Command::Approve(a)) => access::approve(&g, a),
        Some(Command::Deny(a)) => access::deny(&g, a),
        Some(Command::Cancel(a)) => access::cancel(&g, a),
        Some(Command::List(a)) => access::list(&g, a),
        Some(Command::Show(a)) => access::show(&g, a),
        Some(Command::Whoami(a)) => access::whoami(&g, a),
        Some(Command::User(c)) => admin::user(&g, c),
        Some(Command::Policy(c)) => admin::policy(&g, c),
        Some(Command::Audit(c)) => admin::audit(&g, c),
        Some(Command::Notify(c)) => notify::notify(&g, c),
        Some(Command::Open(a)) => session::open(&g, a),
        Some(Command::Watch(a)) => session::watch(&g, a),
        Some(Command::Kill(a)) => session::kill(&g, a),
        Some(Command::Fleet(a)) => fleet::fleet(&g, a),
        Some(Command::Reap(a)) => fleet::reap(&g, a),
        Some(Command::Rogue(a)) => fleet::rogue(&g, a),
        Some(Command::Verify(a)) => recordings::verify(&g, a),
        Some(Command::Replay(a)) => recordings::replay(&g, a),
        Some(Command::Recordings(a)) => recordings::recordings(&g, a),
        Some(Command::Review(a)) => recordings::review(&g, a),
        Some(Command::Keys(c)) => recordings::keys(&g, c),
        Some(Command::Serve(a)) => serve::serve(&g, a),
        Some(Command::Store(c)) => store::run(&g, c),
        Some(Command::Completions(a)) => generate::completions(a),
        Some(Command::Man(a)) => generate::man(a),
        Some(Command::Commands(a)) => transcript::commands(&g, a),
        Some(Command::Export(a)) => transcript::export(&g, a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exit_error_code_survives_context() {
        let e = anyhow::Error::new(ExitError::refused("no")).context("while approving");
        assert_eq!(exit_code_for(&e), 1);
        let e = anyhow::Error::new(ExitError::usage("bad"));
        assert_eq!(exit_code_for(&e), 2);
        assert_eq!(exit_code_for(&anyhow::anyhow!("other")), 1);
    }
}
