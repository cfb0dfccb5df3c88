//! Request lifecycle commands: request, approve, deny, cancel, list, show, user, policy, audit.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::api::{BrokerApi, Endpoint};
use crate::broker::{Broker, BrokerError, BrokerOptions};
use crate::cli::{ExitError, init_logging};
use crate::config::{GlobalOpts, Paths};
use crate::mfa;
use crate::policy::{self, Policy, PolicyError, Role};
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

/// The policy in force for these options without writing anything: the file if there is
/// one, else the documented default (what the first command that opens the data dir writes).
pub(crate) fn policy_or_default(g: &GlobalOpts, paths: &Paths) -> anyhow::Result<Policy> {
    let path = policy_path(g, paths)?;
    let text = if path.exists() {
        std::fs::read_to_string(&path).map_err(|source| {
            ExitError::usage(
                PolicyError::Read {
                    path: path.clone(),
                    source,
                }
                .to_string(),
            )
        })?
    } else {
        policy::DEFAULT_POLICY.to_owned()
    };
    Ok(Policy::parse(&text, &path).map_err(|e| ExitError::usage(e.to_string()))?)
}

/// The policy file for these options (env, then config file, then the data dir).
fn policy_path(g: &GlobalOpts, paths: &Paths) -> anyhow::Result<std::path::PathBuf> {
    policy::resolve_path(g.config.as_deref(), paths)
        .map_err(|e| ExitError::usage(e.to_string()).into())
}

/// Turns a broker error into the right exit status: 1 for rules, 2 for input.
pub(crate) fn fail(e: BrokerError) -> anyhow::Error {
    if e.is_refusal() {
        ExitError::refused(e.to_string()).into()
    } else if e.is_input() {
        ExitError::usage(e.to_string()).into()
    } else {
        anyhow::Error::new(e)
    }
}

/// The daemon to talk to: `--broker` / `SOMBRERO_BROKER`, else `broker` in the config file.
pub(crate) fn remote_endpoint(g: &GlobalOpts) -> anyhow::Result<Option<Endpoint>> {
    if let Some(e) = &g.broker {
        return Ok(Some(e.clone()));
    }
    let paths = Paths::resolve(g).map_err(|e| ExitError::usage(e.to_string()))?;
    let Some((text, file)) = crate::config::config_string(g.config.as_deref(), &paths, "broker")
        .map_err(|e| ExitError::usage(e.to_string()))?
    else {
        return Ok(None);
    };
    text.parse()
        .map(Some)
        .map_err(|e| ExitError::usage(format!("{}: broker: {e}", file.display())).into())
}

/// The broker the access commands and the TUI use: the daemon when one is configured, else
/// the data dir opened in this process.
pub(crate) fn connect(g: &GlobalOpts) -> anyhow::Result<Arc<dyn BrokerApi>> {
    match remote_endpoint(g)? {
        Some(endpoint) => {
            // A thin client may have no data dir of its own; logging is best effort there.
            if let Ok(paths) = Paths::resolve(g) {
                let _ = init_logging(&paths);
            }
            Ok(Arc::new(
                RemoteBroker::connect_with(&endpoint, g).map_err(fail)?,
            ))
        }
        None => Ok(Arc::new(open_local(g)?)),
    }
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
        println!("{}", crate::text::to_json_pretty(&me)?);
    } else {
        say(&format!("{} (from {})", me.user, me.external));
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the data dir in this process for commands that do not go through a daemon yet;
/// refused when one is configured, so they never act on a different store by surprise.
pub(crate) fn open(g: &GlobalOpts) -> anyhow::Result<Broker> {
    if let Some(e) = remote_endpoint(g)? {
        return Err(ExitError::usage(format!(
            "this command does not go through a broker daemon yet (--broker {e}): run it on the broker host without --broker"
        ))
        .into());
    }
    open_local(g)
}

/// Opens the broker on the data dir, with logging to its log file.
pub(crate) fn open_local(g: &GlobalOpts) -> anyhow::Result<Broker> {
    let paths = Paths::resolve(g).map_err(|e| ExitError::usage(e.to_string()))?;
    init_logging(&paths)?;
    let opts = BrokerOptions {
        policy_path: Some(policy_path(g, &paths)?),
        clock: None,
    };
    let spec = super::store::spec(g, &paths)?;
    let broker = Broker::open_store(&paths, opts, &spec).map_err(fail)?;
    if broker.policy_created() {
        eprintln!(
            "sombrero: wrote the default policy to {} (two approvals, any enrolled approver); review it with `sombrero policy check`",
            broker.policy_path().display()
        );
    }
    Ok(broker)
}

/// Who acts: the daemon's name for this connection (then `--as` is refused: identity comes
/// from the connection), else `--as`, else the OS user.
pub(crate) fn actor(api: &dyn BrokerApi, as_user: Option<String>) -> anyhow::Result<String> {
    match api.identity().map_err(fail)? {
        Some(me) => match as_user {
            Some(other) => Err(ExitError::usage(format!(
                "--as {other} cannot be used with a broker daemon: it knows you as {me} from your connection (your OS user or IAM identity)"
            ))
            .into()),
            None => Ok(me),
        },
        None => who(as_user),
    }
}

/// `--as`, else the OS user.
pub(crate) fn who(as_user: Option<String>) -> anyhow::Result<String> {
    as_user
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ExitError::usage("cannot tell who you are: pass --as NAME").into())
}

/// The TOTP code: `--code`, else a no-echo prompt on a terminal, else one line of stdin.
pub(crate) fn code(given: Option<String>, user: &str) -> anyhow::Result<String> {
    let code = match given {
        Some(c) => c,
        None if std::io::stdin().is_terminal() => {
            rpassword::prompt_password(format!("TOTP code for {user}: "))
                .context("reading the TOTP code")?
        }
        None => first_line_of_stdin().context("reading the TOTP code from stdin")?,
    };
    let code = code.trim().to_string();
    if code.is_empty() {
        return Err(ExitError::usage(format!(
            "no TOTP code given for {user}: pass --code CODE or type it when asked"
        ))
        .into());
    }
    Ok(code)
}

/// Prints one line of a table or prompt with everything in it made safe for a terminal
/// (stored, policy and AWS text may hold escape sequences or bidi overrides).
pub(crate) fn say(line: &str) {
    println!("{}", escape_for_terminal(line));
}

/// One line of stdin (at most 64 bytes), read byte by byte straight from fd 0, so nothing after
/// it is buffered away from a session that reads fd 0 next (`open` piping the shell's input).
fn first_line_of_stdin() -> std::io::Result<String> {
    use std::io::Read;
    use std::os::fd::AsFd;
    let mut fd0 = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 64 {
        match fd0.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

pub(crate) fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", crate::text::to_json_line(v)?)?;
    Ok(())
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
    let r = match a.emergency {
        true => super::emergency::create(g, new, &code)?,
        false => b.create_request(new, &code).map_err(fail)?,
    };
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
