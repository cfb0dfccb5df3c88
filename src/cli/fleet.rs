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
    /// Older than the policy's `max_instance_age`.
    old: bool,
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
    // fleet should not create a data dir, nor a policy file).
    let paths = Paths::resolve(g).map_err(|e| ExitError::usage(e.to_string()))?;
    let rogue_touched = if paths.db().exists() {
        field_of(
            &events_of(&access::open(g)?, EventKind::RogueSessionFound)?,
            "target",
        )
    } else {
        HashSet::new()
    };
    let marks = Marks {
        rogue_touched,
        max_age: access::policy_or_default(g, &paths)?.max_instance_age,
        now: Utc::now(),
    };
    warn_unknown_ages(&nodes);
    if a.json {
        let rows: Vec<NodeRow> = nodes
            .iter()
            .map(|n| NodeRow {
                node: n,
                tainted: n.tainted(),
                replacing: n.replacing(),
                rogue_touched: marks.rogue_touched.contains(&n.id),
                age_seconds: n.age(marks.now).map(|d| d.num_seconds()),
                old: n.old(marks.now, marks.max_age),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", table(&nodes, &marks));
    }
    Ok(ExitCode::SUCCESS)
}

/// Says on stderr when EC2 instances have no known launch time, so an old-instance check that
/// could not run is never mistaken for a clean one.
fn warn_unknown_ages(nodes: &[Node]) {
    let unknown = nodes
        .iter()
        .filter(|n| n.id.starts_with("i-") && n.launched.is_none())
        .count();
    if unknown > 0 {
        eprintln!(
            "sombrero: launch time unknown for {unknown} EC2 instance(s) (DescribeInstances failed or is not allowed; see the log): they cannot be judged old"
        );
    }
}

/// What the listing marks besides the node's own tags.
struct Marks {
    /// Nodes a rogue session touched.
    rogue_touched: HashSet<String>,
    /// The policy's `max_instance_age` (`None`: off).
    max_age: Option<std::time::Duration>,
    /// The time ages are measured at.
    now: DateTime<Utc>,
}

/// The human listing: one line per node, badges last.
fn table(nodes: &[Node], marks: &Marks) -> String {
    let now = marks.now;
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
            if marks.rogue_touched.contains(&n.id) {
                badges.push("ROGUE-TOUCHED");
            }
            if n.old(now, marks.max_age) {
                badges.push("OLD");
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

/// One finding of `sombrero rogue`: a session around the broker, or an instance past the
/// policy's `max_instance_age`.
#[derive(Debug, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
enum Finding<'a> {
    /// A session that bypassed the broker.
    RogueSession {
        #[serde(flatten)]
        rogue: &'a RogueFinding,
        /// First time this scan saw it (an audit event was written).
        new: bool,
    },
    /// An instance older than the policy allows.
    OldInstance {
        #[serde(flatten)]
        old: OldInstance,
        /// First time this scan saw it (an audit event was written).
        new: bool,
    },
}

/// An instance past `max_instance_age`, as reported and audited.
#[derive(Debug, Serialize)]
struct OldInstance {
    instance: String,
    name: Option<String>,
    /// When its age counts from: launch for an EC2 instance, else registration.
    launched: DateTime<Utc>,
    age_secs: i64,
    max_age_secs: u64,
}

/// The nodes older than `max_age` at `now`.
fn old_instances(
    nodes: &[Node],
    now: DateTime<Utc>,
    max_age: std::time::Duration,
) -> Vec<OldInstance> {
    nodes
        .iter()
        .filter(|n| n.old(now, Some(max_age)))
        .filter_map(|n| {
            let launched = n.launched.or(n.registered)?;
            Some(OldInstance {
                instance: n.id.clone(),
                name: n.name.clone(),
                launched,
                age_secs: (now - launched).num_seconds(),
                max_age_secs: max_age.as_secs(),
            })
        })
        .collect()
}

/// Runs `sombrero rogue`: sessions (active and recent history) that bypassed the broker, and
/// instances older than the policy's `max_instance_age`. Each new finding is audited once
/// (`RogueSessionFound` per session, `OldInstanceFound` per instance).
pub fn rogue(g: &GlobalOpts, a: RogueArgs) -> anyhow::Result<ExitCode> {
    let broker = access::open(g)?;
    let max_age = broker.policy().map_err(access::fail)?.max_instance_age;
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
    let old = match max_age {
        Some(max) => {
            let nodes = rt.block_on(fleet.list_nodes())?;
            warn_unknown_ages(&nodes);
            old_instances(&nodes, Utc::now(), max)
        }
        None => Vec::new(),
    };
    let record = |kind, data| broker.record(ACTOR, kind, None, data).map_err(access::fail);
    let reported = field_of(
        &events_of(&broker, EventKind::RogueSessionFound)?,
        "session_id",
    );
    let mut rows = Vec::new();
    for f in &findings {
        let new = !reported.contains(&f.session.session_id);
        if new {
            record(
                EventKind::RogueSessionFound,
                json!({
                    "session_id": f.session.session_id,
                    "target": f.session.target,
                    "owner": f.session.owner,
                    "reason": f.session.reason,
                    "start": f.session.start,
                    "why": f.why,
                }),
            )?;
        }
        rows.push(Finding::RogueSession { rogue: f, new });
    }
    // An instance's launch never changes: one event per instance, ever.
    let reported = field_of(
        &events_of(&broker, EventKind::OldInstanceFound)?,
        "instance",
    );
    for o in old {
        let new = !reported.contains(&o.instance);
        if new {
            record(EventKind::OldInstanceFound, serde_json::to_value(&o)?)?;
        }
        rows.push(Finding::OldInstance { old: o, new });
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if findings.is_empty() {
        println!("no rogue sessions: every session went through pink-sombrero");
    }
    if let Some(max) = max_age
        && !rows
            .iter()
            .any(|r| matches!(r, Finding::OldInstance { .. }))
    {
        println!(
            "no old instances: none older than {}",
            humantime::format_duration(max)
        );
    }
    for r in &rows {
        println!("{}", finding_line(r));
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
    }
}

/// The data of every event of `kind` in the audit log.
fn events_of(broker: &Broker, kind: EventKind) -> anyhow::Result<Vec<serde_json::Value>> {
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
                .filter(|e| e.kind == kind)
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
            launched: None,
            tags: BTreeMap::from([
                (tag::TAINTED.to_owned(), "true".to_owned()),
                (tag::REPLACEMENT.to_owned(), "requested".to_owned()),
            ]),
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
        let marks = Marks {
            rogue_touched: HashSet::from(["mi-0123456789abcdef0".to_owned()]),
            max_age: Some(std::time::Duration::from_secs(48 * 3600)),
            now,
        };
        let t = table(&[node.clone(), young, unknown_age], &marks);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID"));
        assert!(lines[1].contains("web-1"));
        assert!(lines[1].contains("2d2h"));
        assert!(lines[1].ends_with("TAINTED REPLACING ROGUE-TOUCHED OLD"));
        // Launched 47h ago: its age shows, under the limit, no badge.
        assert!(lines[2].contains("1d23h"), "{}", lines[2]);
        assert!(!lines[2].contains("OLD"), "{}", lines[2]);
        assert!(!lines[3].contains("OLD"), "{}", lines[3]);
        // The check turned off: nothing is old.
        let off = Marks {
            max_age: None,
            ..marks
        };
        assert!(!table(&[node], &off).contains("OLD"));
        assert!(table(&[], &off).contains("no nodes"));
    }

    #[test]
    fn old_instances_are_those_past_the_limit() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let node = |id: &str, launched: Option<i64>, registered: Option<i64>| Node {
            id: id.into(),
            name: None,
            platform: "Linux".into(),
            ping: "Online".into(),
            agent_version: None,
            ip: None,
            registered: registered.map(|h| now - chrono::Duration::hours(h)),
            launched: launched.map(|h| now - chrono::Duration::hours(h)),
            tags: BTreeMap::new(),
        };
        let nodes = [
            node("i-00000001", Some(30), None),
            node("i-00000002", Some(10), Some(100)),
            node("mi-00000003", None, Some(25)),
            node("i-00000004", None, None),
        ];
        let old = old_instances(&nodes, now, std::time::Duration::from_secs(24 * 3600));
        let got: Vec<(&str, i64)> = old
            .iter()
            .map(|o| (o.instance.as_str(), o.age_secs / 3600))
            .collect();
        // Launch wins over registration; an unknown age is no finding.
        assert_eq!(got, vec![("i-00000001", 30), ("mi-00000003", 25)]);
        assert_eq!(old[0].max_age_secs, 24 * 3600);
        let line = finding_line(&Finding::OldInstance {
            old: old_instances(&nodes[..1], now, std::time::Duration::from_secs(86_400)).remove(0),
            new: true,
        });
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
