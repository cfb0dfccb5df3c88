//! `sombrero notify`: test the policy's notification targets, deliver what waits; and the
//! notification and review part of `policy check`.

use std::process::ExitCode;

use clap::Subcommand;

use crate::backend::Config;
use crate::notify::worker::{self, TestResult};

use super::ExitError;
use super::connection::{backend, fail, open_local, print_json, remote_endpoint, say, wait};

/// `sombrero notify ...`.
#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a test notification to every `[[notify]]` target and report each result (exit 1
    /// when any failed). With --broker, the broker sends them (approvers and reviewers).
    Test {
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Deliver the notifications waiting in the outbox now and exit (embedded mode: the daemon
    /// and an open TUI deliver by themselves).
    Flush,
}

/// Runs `sombrero notify`.
pub fn notify(g: &Config, c: NotifyCommand) -> anyhow::Result<ExitCode> {
    match c {
        NotifyCommand::Test { json } => test(g, json),
        NotifyCommand::Flush => flush(g),
    }
}

fn test(g: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let results = wait(backend(g)?.notify_test())?;
    if json {
        print_json(&results)?;
    } else {
        print_results(&results);
    }
    if results.iter().all(|r| r.delivered) {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(1))
    }
}

fn print_results(results: &[TestResult]) {
    if results.is_empty() {
        println!("no [[notify]] targets in the policy");
    }
    for r in results {
        let outcome = match (&r.status, &r.error) {
            (Some(s), _) => format!("delivered (HTTP {s})"),
            (None, Some(e)) => format!("FAILED: {e}"),
            (None, None) => "FAILED".to_string(),
        };
        say(&format!(
            "{:<20} {:<8} {:<40} {outcome}",
            r.target, r.kind, r.url
        ));
    }
}

fn flush(g: &Config) -> anyhow::Result<ExitCode> {
    if remote_endpoint(g)?.is_some() {
        return Err(ExitError::usage(
            "with --broker, the daemon delivers notifications itself; `notify flush` is for the embedded store",
        )
        .into());
    }
    let broker = open_local(g)?;
    let deliverer = crate::notify::deliver::Deliverer::new().map_err(anyhow::Error::msg)?;
    let delivered = super::connection::runtime(0)?.block_on(async {
        let mut total = 0;
        loop {
            let n = worker::pass(&broker, &deliverer).await;
            total += n;
            if n < worker::BATCH {
                return total;
            }
        }
    });
    let waiting = broker
        .outbox_due(crate::notify::outbox::MAX_OUTBOX)
        .map_err(fail)?;
    println!(
        "delivered {delivered}; {} due and not delivered (retried later, with backoff)",
        waiting.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// The notification and review part of `policy check` (URLs redacted, secrets by source only).
pub(crate) fn print_policy(p: &crate::policy::Policy) {
    let d = |x: std::time::Duration| humantime::format_duration(x).to_string();
    println!(
        "  escalate_after:       {}",
        p.escalate_after.map_or("(off)".to_owned(), d)
    );
    let required = serde_json::to_value(p.review_required)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    println!(
        "  review_required:      {required} (within {})",
        d(p.review_within)
    );
    let e = &p.emergency;
    if e.enabled {
        say(&format!(
            "  emergency:            ON for {}; veto window {}; {} per person a day; {} reviewer(s) within {}",
            e.requesters.join(", "),
            d(e.veto_window),
            e.max_per_day,
            e.reviewers_required,
            d(e.review_within)
        ));
    } else {
        println!("  emergency:            off");
    }
    for t in &p.notify {
        let events: Vec<&str> = t.events.iter().map(|e| e.as_str()).collect();
        let kind = match t.kind {
            crate::notify::NotifyKind::Webhook => "webhook",
            crate::notify::NotifyKind::Slack => "slack",
        };
        let mut line = format!(
            "  notify:               {} ({kind}) -> {}; events: {}",
            t.name,
            t.url_shown(),
            events.join(", ")
        );
        if let Some(secret) = t.secret_shown() {
            line.push_str(&format!("; signed with the secret in {secret}"));
        }
        if !t.users.is_empty() {
            line.push_str(&format!("; users: {}", t.users.join(", ")));
        }
        if !t.roles.is_empty() {
            let roles: Vec<&str> = t.roles.iter().map(|r| r.as_str()).collect();
            line.push_str(&format!("; roles: {}", roles.join(", ")));
        }
        say(&line);
    }
}
