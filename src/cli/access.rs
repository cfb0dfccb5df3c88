//! Request lifecycle commands: request, approve, deny, cancel, list, show, whoami (user, policy
//! and audit are in [`super::admin`]).

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use crate::backend::Backend;
use crate::backend::Config;
use crate::cli::ExitError;
use crate::cli::connection::{actor, backend, code, fail, print_json, remote_endpoint, say, wait};
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
    /// Through the emergency door (when the policy's [emergency] allows you): announced to
    /// every approver and notify target at once, any approver may deny it within the veto
    /// window, then it opens without approvals; needs --incident; reviewed afterwards.
    #[arg(long)]
    pub emergency: bool,
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

/// Runs `sombrero whoami`: the user a broker daemon knows this client as, and from what.
pub fn whoami(g: &Config, a: WhoamiArgs) -> anyhow::Result<ExitCode> {
    let Some(endpoint) = remote_endpoint(g)? else {
        return Err(ExitError::usage(
            "whoami asks a broker daemon who you are: give --broker (without one, commands act as --as or your OS user)",
        )
        .into());
    };
    let me = RemoteBroker::connect_with(&endpoint, &g.aws)
        .map_err(fail)?
        .whoami()
        .map_err(fail)?;
    if a.json {
        println!("{}", crate::text::to_json_pretty(&me)?);
    } else {
        say(&format!("{} (from {})", me.user, me.external));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn time(t: chrono::DateTime<chrono::Utc>) -> String {
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
        State::Emergency => match &r.emergency {
            Some(e) => format!(
                "EMERGENCY: any approver may deny it until {}; then it opens",
                time(e.veto_ends_at)
            ),
            None => String::new(),
        },
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

fn report(b: &dyn Backend, r: &Request, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        print_json(r)?;
    } else {
        let required = wait(b.policy())?.approvals_required;
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
pub fn request(g: &Config, a: RequestArgs) -> anyhow::Result<ExitCode> {
    let duration = parse_duration(&a.duration)?;
    super::decide::check_fields(&[
        (Field::Target, Some(&a.target)),
        (Field::Reason, Some(a.reason.trim())),
        (Field::Incident, a.incident.as_deref()),
    ])?;
    let b = backend(g)?;
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
    let r = match a.emergency {
        true => super::emergency::create(&*b, new, code)?,
        false => wait(b.create_request(new, code))?,
    };
    report(&*b, &r, a.json)
}

/// Runs `sombrero approve`.
pub fn approve(g: &Config, a: ApproveArgs) -> anyhow::Result<ExitCode> {
    super::decide::check_fields(&[(Field::Comment, a.comment.as_deref())])?;
    let b = backend(g)?;
    let by = actor(&*b, a.as_user)?;
    if a.code.is_none() {
        super::decide::show_context(&*b, &a.request, "approve");
    }
    let code = code(a.code, &by)?;
    let r = wait(b.approve(a.request, by, code, a.comment))?;
    if !a.json {
        let required = wait(b.policy())?.approvals_required;
        say(&super::decide::outcome_line(&r, required));
    }
    report(&*b, &r, a.json)
}

/// Runs `sombrero deny`.
pub fn deny(g: &Config, a: DenyArgs) -> anyhow::Result<ExitCode> {
    if a.comment.trim().is_empty() {
        return Err(ExitError::usage("--comment must say why the request is denied").into());
    }
    super::decide::check_fields(&[(Field::Comment, Some(&a.comment))])?;
    let b = backend(g)?;
    let by = actor(&*b, a.as_user)?;
    if a.code.is_none() {
        super::decide::show_context(&*b, &a.request, "deny");
    }
    let code = code(a.code, &by)?;
    let r = wait(b.deny(a.request, by, code, Some(a.comment)))?;
    report(&*b, &r, a.json)
}

/// Runs `sombrero cancel`.
pub fn cancel(g: &Config, a: CancelArgs) -> anyhow::Result<ExitCode> {
    let b = backend(g)?;
    let by = actor(&*b, a.as_user)?;
    let r = wait(b.cancel(a.request, by))?;
    report(&*b, &r, a.json)
}

/// Runs `sombrero list`.
pub fn list(g: &Config, a: ListArgs) -> anyhow::Result<ExitCode> {
    let state = match a.state.as_deref() {
        None => None,
        Some(s) => Some(State::parse(s).ok_or_else(|| {
            let all: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
            ExitError::usage(format!("--state {s:?} is not one of {}", all.join(", ")))
        })?),
    };
    let b = backend(g)?;
    wait(b.expire_due())?;
    let rs = wait(b.list(state))?;
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
pub fn show(g: &Config, a: ShowArgs) -> anyhow::Result<ExitCode> {
    let b = backend(g)?;
    wait(b.expire_due())?;
    let r = wait(b.get(a.request))?;
    let events = wait(b.audit_for_request(r.id.clone()))?;
    if a.json {
        print_json(&json!({"request": r, "events": events}))?;
        return Ok(ExitCode::SUCCESS);
    }
    let required = wait(b.policy())?.approvals_required;
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
