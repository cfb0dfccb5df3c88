//! Fleet commands: fleet, reap, rogue.

use std::process::ExitCode;

use std::sync::Arc;

use clap::Args;

use crate::backend::{Config, Progress};
use crate::cli::{ExitError, connection};
use crate::fleet::{AgentLost, RogueReason};
use crate::workflows::scan::{self, Finding, NodeRow};

/// `sombrero fleet`.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sombrero reap`.
#[derive(Debug, Args)]
pub struct ReapArgs {
    /// Say what would be replaced, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sombrero rogue`.
#[derive(Debug, Args)]
pub struct RogueArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `sombrero fleet`: through the broker daemon when one is configured (it lists with
/// its own fleet credentials), else with this host's.
pub fn fleet(g: &Config, a: FleetArgs) -> anyhow::Result<ExitCode> {
    let rows = connection::wait(connection::backend(g)?.fleet())?;
    warn_unknown_ages(scan::unknown_ages(rows.iter().map(|r| &r.node)));
    if a.json {
        println!("{}", crate::text::to_json_pretty(&rows)?);
    } else {
        print!("{}", table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// Says on stderr when EC2 instances have no known launch time, so an old-instance check that
/// could not run is never mistaken for a clean one.
fn warn_unknown_ages(unknown: usize) {
    if unknown > 0 {
        eprintln!(
            "sombrero: launch time unknown for {unknown} EC2 instance(s) (DescribeInstances failed or is not allowed; see the log): they cannot be judged old"
        );
    }
}

/// The human listing: one line per node, badges last.
fn table(nodes: &[NodeRow]) -> String {
    let header = [
        "ID", "NAME", "PLATFORM", "PING", "AGENT", "IP", "AGE", "STATE",
    ]
    .map(str::to_owned);
    let rows: Vec<[String; 8]> = nodes
        .iter()
        .map(|row| {
            let n = &row.node;
            let badges: Vec<String> = row
                .taint_badge()
                .into_iter()
                .chain(
                    [
                        (row.replacing, "REPLACING"),
                        (row.rogue_touched, "ROGUE-TOUCHED"),
                        (row.old, "OLD"),
                    ]
                    .into_iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, badge)| badge.to_owned()),
                )
                .collect();
            [
                n.id.clone(),
                n.name.clone().unwrap_or_else(|| "-".into()),
                n.platform.clone(),
                n.ping.clone(),
                n.agent_version.clone().unwrap_or_else(|| "-".into()),
                n.ip.clone().unwrap_or_else(|| "-".into()),
                row.age_seconds
                    .map_or_else(|| "-".into(), |s| short_age(chrono::Duration::seconds(s))),
                badges.join(" "),
            ]
            // AWS strings (names, versions) may hold escape sequences: shown, never obeyed.
            .map(|cell| crate::text::escape_for_terminal(&cell).into_owned())
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if nodes.is_empty() {
        out.push_str("(no nodes registered with Systems Manager in this account and region)\n");
    }
    out
}

/// `3d4h`, `5h12m`, `7m`: enough to spot an old instance.
fn short_age(d: chrono::Duration) -> String {
    let m = d.num_minutes().max(0);
    let (days, hours, mins) = (m / 1440, (m / 60) % 24, m % 60);
    if days > 0 {
        format!("{days}d{hours}h")
    } else if hours > 0 {
        format!("{hours}h{mins}m")
    } else {
        format!("{mins}m")
    }
}

/// Runs `sombrero reap`: ends sessions that outlived their request, then replaces tainted
/// nodes that have no active session ([`crate::workflows::reaper::reap`]). Through a broker
/// daemon the daemon reaps with its own fleet (approvers and reviewers only).
pub fn reap(g: &Config, a: ReapArgs) -> anyhow::Result<ExitCode> {
    let backend = connection::backend(g)?;
    let quiet = a.json;
    let progress: Progress = Arc::new(move |p| {
        if !quiet {
            eprintln!("sombrero reap: {p}");
        }
    });
    let done = connection::wait(backend.reap(a.dry_run, progress))?;
    let failed = done.iter().filter(|r| r.outcome == "failed").count();
    if a.json {
        println!("{}", crate::text::to_json_pretty(&done)?);
    } else if done.is_empty() {
        println!("nothing to reap: no tainted node without an active session");
    } else {
        for r in &done {
            let new = r
                .new
                .as_deref()
                .map(|n| format!(" -> {n}"))
                .unwrap_or_default();
            let detail = r
                .detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            let retry = if r.retry { " [retry]" } else { "" };
            connection::say(&format!(
                "{} {} ({}){retry}{new}{detail}",
                r.outcome, r.target, r.strategy
            ));
        }
    }
    if failed > 0 {
        return Err(ExitError::refused(format!(
            "{failed} replacement(s) failed; they stay tainted and the next `sombrero reap` tries again"
        ))
        .into());
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `sombrero rogue`: sessions (active and recent history) that bypassed the broker,
/// instances older than the policy's `max_instance_age`, and tainted nodes out of Systems
/// Manager's reach; through the broker daemon when one
/// is configured (it scans with its own fleet and audits there). Each new finding is audited
/// once (`RogueSessionFound` per session, `OldInstanceFound` and `AgentLostWhileTainted` per
/// instance).
pub fn rogue(g: &Config, a: RogueArgs) -> anyhow::Result<ExitCode> {
    let report = connection::wait(connection::backend(g)?.rogue())?;
    warn_unknown_ages(report.unknown_ages);
    let rows = &report.findings;
    if a.json {
        println!("{}", crate::text::to_json_pretty(rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if !rows
        .iter()
        .any(|r| matches!(r, Finding::RogueSession { .. }))
    {
        println!("no rogue sessions: every session went through pink-sombrero");
    }
    if let Some(max) = report.max_age_secs
        && !rows
            .iter()
            .any(|r| matches!(r, Finding::OldInstance { .. }))
    {
        println!(
            "no old instances: none older than {}",
            humantime::format_duration(std::time::Duration::from_secs(max))
        );
    }
    if !rows
        .iter()
        .any(|r| matches!(r, Finding::AgentLostWhileTainted { .. }))
    {
        println!("no tainted node out of Systems Manager's reach");
    }
    for r in rows {
        connection::say(&finding_line(r));
    }
    Ok(ExitCode::SUCCESS)
}

/// One finding in words.
fn finding_line(r: &Finding) -> String {
    let new = |n: bool| if n { "NEW " } else { "" };
    match r {
        Finding::RogueSession { rogue, new: n } => {
            let s = &rogue.session;
            let why = match &rogue.why {
                RogueReason::NotOurReason => "not opened through pink-sombrero".to_owned(),
                RogueReason::UnknownToStore { request } => {
                    format!("claims request {request} but the store has no such session")
                }
            };
            format!(
                "{}{} by {} on {} at {} ({}): {why}",
                new(*n),
                s.session_id,
                s.owner.as_deref().unwrap_or("unknown"),
                s.target,
                s.start
                    .map_or_else(|| "unknown time".to_owned(), |t| t.to_rfc3339()),
                s.status,
            )
        }
        Finding::OldInstance { old, new: n } => format!(
            "{}{}{} is {} old (since {}), past the policy's max_instance_age of {}: replace it",
            new(*n),
            old.instance,
            old.name
                .as_deref()
                .filter(|n| *n != old.instance)
                .map(|n| format!(" ({n})"))
                .unwrap_or_default(),
            short_age(chrono::Duration::seconds(old.age_secs)),
            old.launched
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            humantime::format_duration(std::time::Duration::from_secs(old.max_age_secs)),
        ),
        Finding::AgentLostWhileTainted { lost, new: n } => format!(
            "{}{} is tainted{} and {}: `sombrero reap` replaces it all the same",
            new(*n),
            lost.instance,
            lost.request
                .as_deref()
                .map(|r| format!(" (request {r})"))
                .unwrap_or_default(),
            match (lost.why, &lost.ec2_state) {
                (AgentLost::NotInSsm, Some(state)) =>
                    format!("Systems Manager no longer lists it (EC2: {state})"),
                (AgentLost::NotInSsm, None) => "Systems Manager no longer lists it".to_owned(),
                (AgentLost::ConnectionLost, _) =>
                    format!("its SSM agent is lost (ping {})", lost.ping),
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::DateTime;

    use std::collections::HashSet;

    use super::*;
    use crate::fleet::{Node, tag};

    #[test]
    fn table_shows_badges_and_age() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let node = Node {
            id: "mi-0123456789abcdef0".into(),
            name: Some("web-1".into()),
            platform: "Linux (Ubuntu)".into(),
            ping: "Online".into(),
            agent_version: Some("3.3.0.0".into()),
            ip: Some("10.0.0.5".into()),
            registered: Some(now - chrono::Duration::hours(50)),
            launched: None,
            tags: BTreeMap::from([
                (tag::TAINTED.to_owned(), "true".to_owned()),
                (tag::REPLACEMENT.to_owned(), "requested".to_owned()),
            ]),
            not_in_ssm: false,
            ec2_state: None,
        };
        let young = Node {
            id: "i-0123456789abcdef1".into(),
            registered: None,
            launched: Some(now - chrono::Duration::hours(47)),
            tags: BTreeMap::new(),
            ..node.clone()
        };
        let unknown_age = Node {
            id: "i-0123456789abcdef2".into(),
            registered: None,
            ..young.clone()
        };
        let unlisted = Node {
            id: "i-0123456789abcdef3".into(),
            not_in_ssm: true,
            ec2_state: Some("stopped".into()),
            tags: BTreeMap::from([(tag::TAINTED.to_owned(), "true".to_owned())]),
            ..young.clone()
        };
        let touched = HashSet::from(["mi-0123456789abcdef0".to_owned()]);
        let max_age = Some(std::time::Duration::from_secs(48 * 3600));
        let rows =
            |nodes: &[Node], max_age| scan::node_rows(nodes.to_vec(), &touched, max_age, now);
        let t = table(&rows(
            &[node.clone(), young, unknown_age, unlisted],
            max_age,
        ));
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID"));
        assert!(lines[1].contains("web-1"));
        assert!(lines[1].contains("2d2h"));
        assert!(lines[1].ends_with("TAINTED REPLACING ROGUE-TOUCHED OLD"));
        // Launched 47h ago: its age shows, under the limit, no badge.
        assert!(lines[2].contains("1d23h"), "{}", lines[2]);
        assert!(!lines[2].contains("OLD"), "{}", lines[2]);
        assert!(!lines[3].contains("OLD"), "{}", lines[3]);
        assert!(
            lines[4].ends_with("TAINTED · NOT IN SSM (stopped)"),
            "{}",
            lines[4]
        );
        // The check turned off: nothing is old.
        assert!(!table(&rows(&[node], None)).contains("OLD"));
        assert!(table(&[]).contains("no nodes"));
    }

    #[test]
    fn old_instance_line_says_how_old() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let old = scan::OldInstance {
            instance: "i-00000001".into(),
            name: None,
            launched: now - chrono::Duration::hours(30),
            age_secs: 30 * 3600,
            max_age_secs: 86_400,
        };
        let line = finding_line(&Finding::OldInstance { old, new: true });
        assert!(
            line.starts_with("NEW i-00000001 is 1d6h old (since 2023-11-13T16:13:20Z)"),
            "{line}"
        );
        assert!(line.contains("max_instance_age of 1day"), "{line}");
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(short_age(chrono::Duration::minutes(7)), "7m");
        assert_eq!(short_age(chrono::Duration::minutes(312)), "5h12m");
        assert_eq!(short_age(chrono::Duration::hours(76)), "3d4h");
    }
}
