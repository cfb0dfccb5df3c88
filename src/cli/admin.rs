//! `sombrero user`, `policy` and `audit`: enrolment, the policy file and the audit chain, as
//! the broker host administers them.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use super::access::time;
use crate::backend::{BackendError, Config};
use crate::broker::{Broker, BrokerError};
use crate::cli::ExitError;
use crate::cli::connection::{
    self, code, fail, open_local, print_json, remote_endpoint, say, wait,
};
use crate::mfa;
use crate::policy::Role;
use crate::text::escape_for_terminal;

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
        /// Print `{"name","secret_base32","otpauth_uri"}` and skip the confirmation (then
        /// `sombrero user confirm NAME`: until confirmed the user can do nothing).
        #[arg(long)]
        json: bool,
    },
    /// Confirm an enrolment (after `user add --json` or `user rotate --json`) with one code
    /// from the authenticator; until then the user can do nothing (on the broker host only).
    Confirm {
        /// User name.
        name: String,
        /// TOTP code (else prompted on a terminal, else one line of stdin).
        #[arg(long)]
        code: Option<String>,
    },
    /// Remove a user: no roles, no working codes, their approvals stop counting (audited;
    /// on the broker host only).
    Remove {
        /// User name.
        name: String,
    },
    /// Give a user a new TOTP secret, shown once; the old one stops working at once (audited;
    /// on the broker host only).
    Rotate {
        /// User name.
        name: String,
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
    /// Print the newest signed chain head (to anchor elsewhere: a ticket, chat, a WORM bucket).
    Checkpoint {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `sombrero user ...`.
pub fn user(g: &Config, c: UserCommand) -> anyhow::Result<ExitCode> {
    match c {
        UserCommand::Add { name, role, json } => {
            let roles = Role::parse_set(&role).ok_or_else(|| {
                ExitError::usage(format!(
                    "--role {role:?} is not one of requester, approver, reviewer, both"
                ))
            })?;
            local_only(
                g,
                &format!(
                    "enrolling {name} shows their new TOTP secret, which must not travel: run `sombrero user add`"
                ),
            )?;
            let b = open_local(g)?;
            let e = b.enrol_user(&name, roles).map_err(fail)?;
            show_and_confirm(&b, &name, &e, json, "Enrolled")
        }
        UserCommand::Confirm { name, code: given } => {
            local_only(
                g,
                &format!("confirming {name}'s enrolment: run `sombrero user confirm`"),
            )?;
            let b = open_local(g)?;
            let c = code(given, &name)?;
            b.confirm_enrolment(&name, &c).map_err(fail)?;
            println!("Confirmed: {name} can now use codes from that authenticator.");
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Remove { name } => {
            local_only(
                g,
                &format!("removing {name} changes who holds a secret: run `sombrero user remove`"),
            )?;
            open_local(g)?.remove_user(&name).map_err(fail)?;
            println!(
                "Removed {name}: no roles, no working codes; approvals they gave no longer count."
            );
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Rotate { name, json } => {
            local_only(
                g,
                &format!(
                    "rotating {name} shows their new TOTP secret, which must not travel: run `sombrero user rotate`"
                ),
            )?;
            let b = open_local(g)?;
            let e = b.rotate_user(&name).map_err(fail)?;
            show_and_confirm(&b, &name, &e, json, "New secret for")
        }
        UserCommand::List { json } => list_users(g, json),
    }
}

/// Refuses a user command through `--broker`: `what` says why it must run on the broker host.
fn local_only(g: &Config, what: &str) -> anyhow::Result<()> {
    match remote_endpoint(g)? {
        Some(e) => Err(ExitError::usage(format!(
            "{what} on the broker host, not through --broker {e}"
        ))
        .into()),
        None => Ok(()),
    }
}

/// Shows a new secret once (JSON, or a QR code and the URI), then asks for a code to confirm.
fn show_and_confirm(
    b: &Broker,
    name: &str,
    e: &mfa::Enrolment,
    json: bool,
    heading: &str,
) -> anyhow::Result<ExitCode> {
    if json {
        print_json(&e)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{heading} {name}. Add this to an authenticator app (scan or type it):\n");
    println!(
        "{}",
        mfa::qr_terminal(&e.otpauth_uri).map_err(|x| anyhow::anyhow!(x))?
    );
    println!("  {}", e.otpauth_uri);
    println!("  secret: {}\n", e.secret_base32);
    let tries = if std::io::stdin().is_terminal() { 3 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let c = code(None, name)?;
        match b.confirm_enrolment(name, &c) {
            Ok(()) => {
                println!("Confirmed: {name} can now use codes from that authenticator.");
                return Ok(ExitCode::SUCCESS);
            }
            Err(err) => {
                eprintln!("sombrero: {err}");
                last = Some(err);
            }
        }
    }
    let why = last.map(|e| e.to_string()).unwrap_or_default();
    Err(ExitError::refused(format!(
        "{name} is enrolled but the code was not confirmed ({why}); fix the authenticator entry before using it"
    ))
    .into())
}

/// `sombrero user list`.
fn list_users(g: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let users = wait(connection::backend(g)?.users())?;
    if json {
        print_json(&users)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<16} {:<28} {:<10} STATUS", "NAME", "ROLES", "CONFIRMED");
    for u in users {
        let roles: Vec<&str> = u.roles.iter().map(|r| r.as_str()).collect();
        let status = match u.locked_until {
            Some(t) => format!("locked until {}", time(t)),
            None => "ok".to_string(),
        };
        let confirmed = if u.confirmed_at.is_some() {
            "yes"
        } else {
            "no"
        };
        say(&format!(
            "{:<16} {:<28} {:<10} {status}",
            escape_for_terminal(&u.name),
            roles.join(","),
            confirmed
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `sombrero policy ...`.
pub fn policy(g: &Config, c: PolicyCommand) -> anyhow::Result<ExitCode> {
    let PolicyCommand::Check { json } = c;
    let (path, p) = wait(connection::backend(g)?.policy_source())?;
    if json {
        print_json(&json!({"path": path, "policy": p}))?;
        return Ok(ExitCode::SUCCESS);
    }
    let d = |x: std::time::Duration| humantime::format_duration(x).to_string();
    println!("policy {path} is valid:");
    say(&format!(
        "  requesters:           {}",
        p.requesters.join(", ")
    ));
    say(&format!(
        "  approvers:            {}",
        p.approvers.join(", ")
    ));
    say(&format!(
        "  reviewers:            {}",
        p.reviewers.join(", ")
    ));
    println!("  approvals_required:   {}", p.approvals_required);
    println!("  request_ttl:          {}", d(p.request_ttl));
    println!("  grant_window:         {}", d(p.grant_window));
    println!("  max_session_duration: {}", d(p.max_session_duration));
    println!("  reason_min_length:    {}", p.reason_min_length);
    // The pattern and document name come from the policy file (or, remote, the daemon).
    say(&format!(
        "  incident_pattern:     {}",
        p.incident_pattern.as_ref().map_or("(none)", |r| r.as_str())
    ));
    say(&format!("  replacement:          {}", p.replacement));
    println!(
        "  max_instance_age:     {}",
        p.max_instance_age.map_or("(off)".to_owned(), d)
    );
    println!(
        "  mfa:                  {} failures -> locked for {}",
        p.mfa.max_failures,
        d(p.mfa.lockout)
    );
    for (external, user) in &p.identities {
        say(&format!("  identity:             {external} -> {user}"));
    }
    super::notify::print_policy(&p);
    Ok(ExitCode::SUCCESS)
}

/// Runs `sombrero audit ...`.
pub fn audit(g: &Config, c: AuditCommand) -> anyhow::Result<ExitCode> {
    let b = connection::backend(g)?;
    match c {
        AuditCommand::Verify { json } => {
            let checked = wait(async { Ok(b.verify_audit().await) })?;
            let (events, broken, message) = match checked {
                Ok(c) => (c.events, c.broken.clone(), c.broken.map(|x| x.to_string())),
                // A row that no longer decodes was tampered with too; the message names it.
                Err(BackendError::Broker(BrokerError::Store(e))) => {
                    (0, None, Some(format!("audit log unreadable: {e}")))
                }
                Err(e) => return Err(fail(e)),
            };
            if json {
                print_json(&json!({
                    "ok": message.is_none(),
                    "events": events,
                    "broken": broken,
                    "message": message,
                }))?;
            }
            match message {
                None => {
                    if !json {
                        println!("audit chain holds: {events} events");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Some(m) => Err(ExitError::refused(m).into()),
            }
        }
        AuditCommand::Export => {
            let mut out = std::io::stdout().lock();
            let mut after = 0;
            loop {
                let page = wait(b.audit_events(after, 1000))?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for e in &page {
                    let line = crate::text::to_json_line(e)?;
                    match writeln!(out, "{line}") {
                        Ok(()) => {}
                        // The reader (e.g. `head`) has what it wanted.
                        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                            return Ok(ExitCode::SUCCESS);
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Checkpoint { json } => super::audit_anchor::print_checkpoint(g, json),
    }
}
