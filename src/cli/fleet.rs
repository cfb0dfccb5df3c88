//! Fleet commands: fleet, reap, rogue.

use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;

use std::collections::HashSet;

use serde_json::json;

use crate::audit::EventKind;
use crate::broker::Broker;
use crate::cli::{ExitError, access};
use crate::config::{GlobalOpts, Paths};
use crate::fleet::aws::AwsFleet;
use crate::fleet::{
    Fleet, Node, ReplaceOptions, ReplaceStrategy, ReplacementOutcome, RogueFinding, RogueReason,
    SessionInfo, SessionState, classify_sessions, tag, tainted_without_active_session,
};
use crate::request::{CloseReason, State};
use crate::session;
use std::sync::Arc;

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

/// One row of `sombrero fleet --json`.
#[derive(Debug, Serialize)]
struct NodeRow<'a> {
    #[serde(flatten)]
    node: &'a Node,
    tainted: bool,
    replacing: bool,
    rogue_touched: bool,
    age_seconds: Option<i64>,
}

/// A runtime for one command: the fleet calls are async, the CLI is not.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs `sombrero fleet`.
pub fn fleet(g: &GlobalOpts, a: FleetArgs) -> anyhow::Result<ExitCode> {
    let nodes = runtime()?.block_on(async {
        let fleet = AwsFleet::from_opts(g).await?;
        fleet.list_nodes().await
    })?;
    // Rogue findings live in the store; without one there are none to show (and listing the
    // fleet should not create a data dir).
    let paths = Paths::resolve(g).map_err(|e| ExitError::usage(e.to_string()))?;
    let rogue_touched = if paths.db().exists() {
        field_of(&rogue_events(&access::open(g)?)?, "target")
    } else {
        HashSet::new()
    };
    let now = Utc::now();
    if a.json {
        let rows: Vec<NodeRow> = nodes
            .iter()
            .map(|n| NodeRow {
                node: n,
                tainted: n.tainted(),
                replacing: n.replacing(),
                rogue_touched: rogue_touched.contains(&n.id),
                age_seconds: n.age(now).map(|d| d.num_seconds()),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", table(&nodes, &rogue_touched, now));
    }
    Ok(ExitCode::SUCCESS)
}

/// The human listing: one line per node, badges last.
fn table(nodes: &[Node], rogue_touched: &HashSet<String>, now: DateTime<Utc>) -> String {
    let header = [
        "ID", "NAME", "PLATFORM", "PING", "AGENT", "IP", "AGE", "STATE",
    ]
    .map(str::to_owned);
    let rows: Vec<[String; 8]> = nodes
        .iter()
        .map(|n| {
            let mut badges = Vec::new();
            if n.tainted() {
                badges.push("TAINTED");
            }
            if n.replacing() {
                badges.push("REPLACING");
            }
            if rogue_touched.contains(&n.id) {
                badges.push("ROGUE-TOUCHED");
            }
            [
                n.id.clone(),
                n.name.clone().unwrap_or_else(|| "-".into()),
                n.platform.clone(),
                n.ping.clone(),
                n.agent_version.clone().unwrap_or_else(|| "-".into()),
                n.ip.clone().unwrap_or_else(|| "-".into()),
                n.age(now).map_or_else(|| "-".into(), short_age),
                badges.join(" "),
            ]
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

/// Who the reaper and the rogue scan write audit events as.
const ACTOR: &str = crate::broker::SYSTEM_ACTOR;

/// What the reaper did, or would do, with one node.
#[derive(Debug, Serialize)]
struct Reaped {
    target: String,
    request: Option<String>,
    strategy: String,
    outcome: &'static str,
    new: Option<String>,
    detail: Option<String>,
    /// A stale `requested` mark was retried (the run that made it died).
    retry: bool,
}

/// Runs `sombrero reap`: ends sessions that outlived their request, then replaces tainted
/// nodes that have no active session.
///
/// Idempotent: a replaced node is gone; a requested one carries
/// `pink-sombrero:replacement=requested` and is skipped until the request is stale (older than
/// the replace timeout plus a margin, or without `pink-sombrero:replacement-at`: the run that
/// made it died), then tried again, audited as `ReplacementRetried`; a failed one is tried
/// again. Every replacement is audited before it starts.
pub fn reap(g: &GlobalOpts, a: ReapArgs) -> anyhow::Result<ExitCode> {
    let broker = Arc::new(access::open(g)?);
    let strategy = ReplaceStrategy::from(&broker.policy().map_err(access::fail)?.replacement);
    let opts = ReplaceOptions::default();
    let retry_after = opts.retry_requested_after(&strategy);
    let rt = runtime()?;
    let fleet = Arc::new(rt.block_on(AwsFleet::from_opts(g))?);
    let mut done = Vec::new();
    let live = end_orphan_sessions(&broker, &fleet, &rt, &strategy, a.dry_run, &mut done)?;
    let nodes = rt.block_on(fleet.list_nodes())?;
    for node in tainted_without_active_session(&nodes, &live, Utc::now(), retry_after) {
        // Only link the event to a request this store knows (the tag may come from elsewhere).
        let request = node
            .tags
            .get(tag::REQUEST)
            .filter(|r| broker.get(r).is_ok())
            .cloned();
        // Only a stale `requested` mark lets a replacing node through.
        let retry = node.replacing();
        let mut row = Reaped {
            target: node.id.clone(),
            request: request.clone(),
            strategy: strategy.to_string(),
            outcome: "would-replace",
            new: None,
            detail: None,
            retry,
        };
        if retry {
            let requested_at = node.replacement_marked_at();
            row.detail = Some(format!(
                "replacement requested {} never finished: trying again",
                requested_at.map_or_else(|| "at an unknown time".to_owned(), |t| format!("at {t}"))
            ));
            if !a.dry_run {
                broker
                    .record(
                        ACTOR,
                        EventKind::ReplacementRetried,
                        request.as_deref(),
                        json!({
                            "target": node.id,
                            "requested_at": requested_at,
                            "stale_after_secs": retry_after.map(|d| d.as_secs()),
                        }),
                    )
                    .map_err(access::fail)?;
            }
        }
        if a.dry_run {
            done.push(row);
            continue;
        }
        let quiet = a.json;
        let outcome = rt.block_on(session::replace_audited(
            &broker,
            &fleet,
            request.as_deref(),
            &node.id,
            &strategy,
            opts,
            "reap",
            |p| {
                if !quiet {
                    eprintln!("sombrero reap: {p}");
                }
            },
        ));
        match outcome {
            ReplacementOutcome::Completed { new, .. } => {
                row.outcome = "completed";
                row.new = Some(new);
            }
            ReplacementOutcome::Failed { why } => {
                row.outcome = "failed";
                row.detail = Some(why.to_string());
            }
            ReplacementOutcome::Requested { note } => {
                row.outcome = "requested";
                row.detail = Some(note);
            }
        }
        done.push(row);
    }
    let failed = done.iter().filter(|r| r.outcome == "failed").count();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
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
            println!(
                "{} {} ({}){retry}{new}{detail}",
                r.outcome, r.target, r.strategy
            );
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

/// Ends the SSM sessions the store says are over: their request is closed, or past its
/// approved end (the client crashed or was killed, so nobody terminated them). Returns the
/// active sessions that remain. An overdue request is closed as expired.
fn end_orphan_sessions(
    broker: &Broker,
    fleet: &AwsFleet,
    rt: &tokio::runtime::Runtime,
    strategy: &ReplaceStrategy,
    dry_run: bool,
    done: &mut Vec<Reaped>,
) -> anyhow::Result<Vec<SessionInfo>> {
    let now = broker.now();
    let requests = broker.list(None).map_err(access::fail)?;
    let over = |s: &SessionInfo| {
        requests.iter().find(|r| {
            r.session_id.as_deref() == Some(s.session_id.as_str())
                && (r.state != State::Active || r.is_due(now))
        })
    };
    let mut live = Vec::new();
    for s in rt.block_on(fleet.describe_sessions(SessionState::Active))? {
        let Some(r) = over(&s) else {
            live.push(s);
            continue;
        };
        let mut outcome = "would-end-session";
        if !dry_run {
            rt.block_on(fleet.terminate_session(&s.session_id))?;
            if r.state == State::Active {
                broker
                    .close_session(&r.id, CloseReason::Expired)
                    .map_err(access::fail)?;
            }
            outcome = "session-ended";
        }
        done.push(Reaped {
            target: s.target.clone(),
            request: Some(r.id.clone()),
            strategy: strategy.to_string(),
            outcome,
            new: None,
            detail: Some(format!("session {} outlived its request", s.session_id)),
            retry: false,
        });
    }
    Ok(live)
}

/// One line of `sombrero rogue`.
#[derive(Debug, Serialize)]
struct RogueRow<'a> {
    #[serde(flatten)]
    finding: &'a RogueFinding,
    /// First time this scan saw it (an audit event was written).
    new: bool,
}

/// Runs `sombrero rogue`: sessions (active and recent history) that bypassed the broker.
pub fn rogue(g: &GlobalOpts, a: RogueArgs) -> anyhow::Result<ExitCode> {
    let broker = access::open(g)?;
    let rt = runtime()?;
    let fleet = rt.block_on(AwsFleet::from_opts(g))?;
    let mut sessions = rt.block_on(fleet.describe_sessions(SessionState::Active))?;
    let mut seen: HashSet<String> = sessions.iter().map(|s| s.session_id.clone()).collect();
    for s in rt.block_on(fleet.describe_sessions(SessionState::History))? {
        if seen.insert(s.session_id.clone()) {
            sessions.push(s);
        }
    }
    let known: HashSet<String> = broker
        .list(None)
        .map_err(access::fail)?
        .into_iter()
        .filter_map(|r| r.session_id)
        .collect();
    let findings = classify_sessions(&sessions, |id| known.contains(id));
    let reported = field_of(&rogue_events(&broker)?, "session_id");
    let mut rows = Vec::new();
    for f in &findings {
        let new = !reported.contains(&f.session.session_id);
        if new {
            broker
                .record(
                    ACTOR,
                    EventKind::RogueSessionFound,
                    None,
                    json!({
                        "session_id": f.session.session_id,
                        "target": f.session.target,
                        "owner": f.session.owner,
                        "reason": f.session.reason,
                        "start": f.session.start,
                        "why": f.why,
                    }),
                )
                .map_err(access::fail)?;
        }
        rows.push(RogueRow { finding: f, new });
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!("no rogue sessions: every session went through pink-sombrero");
    } else {
        for r in &rows {
            let s = &r.finding.session;
            let why = match &r.finding.why {
                RogueReason::NotOurReason => "not opened through pink-sombrero".to_owned(),
                RogueReason::UnknownToStore { request } => {
                    format!("claims request {request} but the store has no such session")
                }
            };
            println!(
                "{}{} by {} on {} at {} ({}): {why}",
                if r.new { "NEW " } else { "" },
                s.session_id,
                s.owner.as_deref().unwrap_or("unknown"),
                s.target,
                s.start
                    .map_or_else(|| "unknown time".to_owned(), |t| t.to_rfc3339()),
                s.status,
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The data of every RogueSessionFound event in the audit log.
fn rogue_events(broker: &Broker) -> anyhow::Result<Vec<serde_json::Value>> {
    const PAGE: usize = 1000;
    let mut found = Vec::new();
    let mut after = 0;
    loop {
        let events = broker.audit_events(after, PAGE).map_err(access::fail)?;
        let Some(last) = events.last() else {
            return Ok(found);
        };
        after = last.seq;
        found.extend(
            events
                .into_iter()
                .filter(|e| e.kind == EventKind::RogueSessionFound)
                .map(|e| e.data),
        );
    }
}

/// One string field of each event.
fn field_of(events: &[serde_json::Value], key: &str) -> HashSet<String> {
    events
        .iter()
        .filter_map(|d| d.get(key)?.as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fleet::tag;

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
            tags: BTreeMap::from([
                (tag::TAINTED.to_owned(), "true".to_owned()),
                (tag::REPLACEMENT.to_owned(), "requested".to_owned()),
            ]),
        };
        let rogue = HashSet::from(["mi-0123456789abcdef0".to_owned()]);
        let t = table(&[node], &rogue, now);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID"));
        assert!(lines[1].contains("web-1"));
        assert!(lines[1].contains("2d2h"));
        assert!(lines[1].ends_with("TAINTED REPLACING ROGUE-TOUCHED"));
        assert!(table(&[], &HashSet::new(), now).contains("no nodes"));
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(short_age(chrono::Duration::minutes(7)), "7m");
        assert_eq!(short_age(chrono::Duration::minutes(312)), "5h12m");
        assert_eq!(short_age(chrono::Duration::hours(76)), "3d4h");
    }
}
