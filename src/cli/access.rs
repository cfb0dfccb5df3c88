//! Request lifecycle commands: request, approve, deny, cancel, list, show, user, policy, audit.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use crate::api::BrokerApi;
use crate::broker::{Broker, BrokerError};
use crate::cli::ExitError;
use crate::cli::connection::{
    actor, code, connect, fail, open_local, policy_path, print_json, remote_endpoint, say,
};
use crate::config::{GlobalOpts, Paths};
use crate::mfa;
use crate::policy::{Policy, PolicyError, Role};
use crate::remote::RemoteBroker;
use crate::request::{NewRequest, Request, State};
use crate::text::{Field, escape_for_terminal};

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
    /// Ask for one command instead of a shell: approvers see it, and `sombrero open REQ -- CMD`
    /// may run only this command (its words compared as the SSM agent splits them).
    #[arg(long, value_name = "COMMAND")]
    pub command: Option<String>,
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

/// `sombrero whoami`.
#[derive(Debug, Args)]
pub struct WhoamiArgs {
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

/// Runs `sombrero whoami`: the user a broker daemon knows this client as, and from what.
pub fn whoami(g: &GlobalOpts, a: WhoamiArgs) -> anyhow::Result<ExitCode> {
    let Some(endpoint) = remote_endpoint(g)? else {
        return Err(ExitError::usage(
            "whoami asks a broker daemon who you are: give --broker (without one, commands act as --as or your OS user)",
        )
        .into());
    };
    let me = RemoteBroker::connect_with(&endpoint, g)
        .map_err(fail)?
        .whoami()
        .map_err(fail)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&me)?);
    } else {
        say(&format!("{} (from {})", me.user, me.external));
    }
    Ok(ExitCode::SUCCESS)
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// One line saying where a request stands and what happens next.
fn summary(r: &Request, required: u32) -> String {
    let next = match r.state {
        State::Pending => format!(
            "{} of {required} approvals; expires {}",
            r.approvals.len(),
            time(r.pending_expires_at)
        ),
        State::Approved => match r.grant_expires_at {
            Some(t) => format!("{} may open it until {}", r.requester, time(t)),
            None => String::new(),
        },
        State::Active => match r.session_ends_at {
            Some(t) => format!("session ends by {}", time(t)),
            None => String::new(),
        },
        State::Denied => match &r.denial {
            Some(d) => format!(
                "denied by {}{}",
                d.by,
                d.comment
                    .as_deref()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default()
            ),
            None => String::new(),
        },
        State::Closed => r
            .close_reason
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        State::Cancelled | State::Expired => String::new(),
    };
    format!(
        "{} {} ({} on {}) {next}",
        r.id, r.state, r.requester, r.target
    )
    .trim_end()
    .to_string()
}

fn report(b: &dyn BrokerApi, r: &Request, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        print_json(r)?;
    } else {
        let required = b.policy().map_err(fail)?.approvals_required;
        say(&summary(r, required));
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_duration(s: &str) -> anyhow::Result<std::time::Duration> {
    humantime::parse_duration(s).map_err(|e| {
        ExitError::usage(format!(
            "--duration {s:?} is not a duration ({e}); write e.g. 30m or 1h"
        ))
        .into()
    })
}

/// Runs `sombrero request`.
pub fn request(g: &GlobalOpts, a: RequestArgs) -> anyhow::Result<ExitCode> {
    let duration = parse_duration(&a.duration)?;
    super::decide::check_fields(&[
        (Field::Target, Some(&a.target)),
        (Field::Reason, Some(a.reason.trim())),
        (Field::Incident, a.incident.as_deref()),
    ])?;
    let b = connect(g)?;
    let requester = actor(&*b, a.as_user)?;
    let code = code(a.code, &requester)?;
    let new = NewRequest {
        requester,
        target: a.target,
        reason: a.reason,
        incident: a.incident,
        duration,
        command: a.command,
    };
    let r = b.create_request(new, &code).map_err(fail)?;
    report(&*b, &r, a.json)
}

/// Runs `sombrero approve`.
pub fn approve(g: &GlobalOpts, a: ApproveArgs) -> anyhow::Result<ExitCode> {
    super::decide::check_fields(&[(Field::Comment, a.comment.as_deref())])?;
    let b = connect(g)?;
    let by = actor(&*b, a.as_user)?;
    if a.code.is_none() {
        super::decide::show_context(g, &*b, &a.request, "approve");
    }
    let code = code(a.code, &by)?;
    let r = b
        .approve(&a.request, &by, &code, a.comment.as_deref())
        .map_err(fail)?;
    if !a.json {
        let required = b.policy().map_err(fail)?.approvals_required;
        say(&super::decide::outcome_line(&r, required));
    }
    report(&*b, &r, a.json)
}

/// Runs `sombrero deny`.
pub fn deny(g: &GlobalOpts, a: DenyArgs) -> anyhow::Result<ExitCode> {
    if a.comment.trim().is_empty() {
        return Err(ExitError::usage("--comment must say why the request is denied").into());
    }
    super::decide::check_fields(&[(Field::Comment, Some(&a.comment))])?;
    let b = connect(g)?;
    let by = actor(&*b, a.as_user)?;
    if a.code.is_none() {
        super::decide::show_context(g, &*b, &a.request, "deny");
    }
    let code = code(a.code, &by)?;
    let r = b
        .deny(&a.request, &by, &code, Some(&a.comment))
        .map_err(fail)?;
    report(&*b, &r, a.json)
}

/// Runs `sombrero cancel`.
pub fn cancel(g: &GlobalOpts, a: CancelArgs) -> anyhow::Result<ExitCode> {
    let b = connect(g)?;
    let by = actor(&*b, a.as_user)?;
    let r = b.cancel(&a.request, &by).map_err(fail)?;
    report(&*b, &r, a.json)
}

/// Runs `sombrero list`.
pub fn list(g: &GlobalOpts, a: ListArgs) -> anyhow::Result<ExitCode> {
    let state = match a.state.as_deref() {
        None => None,
        Some(s) => Some(State::parse(s).ok_or_else(|| {
            let all: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
            ExitError::usage(format!("--state {s:?} is not one of {}", all.join(", ")))
        })?),
    };
    let b = connect(g)?;
    b.expire_due().map_err(fail)?;
    let rs = b.list(state).map_err(fail)?;
    if a.json {
        print_json(&rs)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rs.is_empty() {
        println!("no requests");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<12} {:<9} {:<12} {:<20} {:<9} {:<23} REASON",
        "ID", "STATE", "REQUESTER", "TARGET", "APPROVALS", "CREATED"
    );
    for r in rs {
        // Each cell escaped before padding, so columns line up with what is shown.
        say(&format!(
            "{:<12} {:<9} {:<12} {:<20} {:<9} {:<23} {}",
            escape_for_terminal(&r.id),
            r.state.as_str(),
            escape_for_terminal(&r.requester),
            escape_for_terminal(&r.target),
            r.approvals.len(),
            time(r.created_at),
            r.reason
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `sombrero show`.
pub fn show(g: &GlobalOpts, a: ShowArgs) -> anyhow::Result<ExitCode> {
    let b = connect(g)?;
    b.expire_due().map_err(fail)?;
    let r = b.get(&a.request).map_err(fail)?;
    let events = b.audit_for_request(&r.id).map_err(fail)?;
    if a.json {
        print_json(&json!({"request": r, "events": events}))?;
        return Ok(ExitCode::SUCCESS);
    }
    let required = b.policy().map_err(fail)?.approvals_required;
    say(&summary(&r, required));
    say(&format!("  reason:    {}", r.reason));
    if let Some(c) = &r.command {
        say(&format!("  command:   {}", escape_for_terminal(c)));
    }
    if let Some(i) = &r.incident {
        say(&format!("  incident:  {i}"));
    }
    println!("  duration:  {}", humantime::format_duration(r.duration()));
    let decision = |label: &str, d: &crate::request::Decision| {
        let comment = d.comment.as_deref().map(|c| format!(" ({c})"));
        say(&format!(
            "  {label:<10} {} at {}{}",
            d.by,
            time(d.at),
            comment.unwrap_or_default()
        ));
    };
    for d in &r.approvals {
        decision("approved:", d);
    }
    if let Some(d) = &r.denial {
        decision("denied:", d);
    }
    if let Some(s) = &r.session_id {
        say(&format!("  session:   {s}"));
    }
    println!("  history:");
    for e in events {
        say(&format!(
            "    #{:<5} {} {:<10} {}",
            e.seq,
            time(e.at),
            escape_for_terminal(&e.actor),
            e.kind
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `sombrero user ...`.
pub fn user(g: &GlobalOpts, c: UserCommand) -> anyhow::Result<ExitCode> {
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
fn local_only(g: &GlobalOpts, what: &str) -> anyhow::Result<()> {
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
fn list_users(g: &GlobalOpts, json: bool) -> anyhow::Result<ExitCode> {
    let b = connect(g)?;
    let users = b.users().map_err(fail)?;
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
pub fn policy(g: &GlobalOpts, c: PolicyCommand) -> anyhow::Result<ExitCode> {
    let PolicyCommand::Check { json } = c;
    let (path, p) = match remote_endpoint(g)? {
        Some(e) => {
            let b = RemoteBroker::connect_with(&e, g).map_err(fail)?;
            (format!("of the broker at {e}"), b.policy().map_err(fail)?)
        }
        None => {
            let paths = Paths::resolve(g).map_err(|e| ExitError::usage(e.to_string()))?;
            let path = policy_path(g, &paths)?;
            let p = Policy::load(&path).map_err(|e| match e {
                PolicyError::Read { .. } => ExitError::usage(format!(
                    "{e}; the first `sombrero user add` writes a documented default there"
                )),
                other => ExitError::usage(other.to_string()),
            })?;
            (path.display().to_string(), p)
        }
    };
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
    println!(
        "  incident_pattern:     {}",
        p.incident_pattern.as_ref().map_or("(none)", |r| r.as_str())
    );
    println!("  replacement:          {}", p.replacement);
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
    Ok(ExitCode::SUCCESS)
}

/// Runs `sombrero audit ...`.
pub fn audit(g: &GlobalOpts, c: AuditCommand) -> anyhow::Result<ExitCode> {
    let b = connect(g)?;
    match c {
        AuditCommand::Verify { json } => {
            let (events, broken, message) = match b.verify_audit() {
                Ok(c) => (c.events, c.broken.clone(), c.broken.map(|x| x.to_string())),
                // A row that no longer decodes was tampered with too; the message names it.
                Err(BrokerError::Store(e)) => (0, None, Some(format!("audit log unreadable: {e}"))),
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
                let page = b.audit_events(after, 1000).map_err(fail)?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for e in &page {
                    let line = serde_json::to_string(e)?;
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
