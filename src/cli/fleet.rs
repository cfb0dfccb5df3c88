//! Fleet commands: fleet, reap, rogue.

use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;

use crate::config::GlobalOpts;
use crate::fleet::aws::AwsFleet;
use crate::fleet::{Fleet, Node};

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
    let now = Utc::now();
    if a.json {
        let rows: Vec<NodeRow> = nodes
            .iter()
            .map(|n| NodeRow {
                node: n,
                tainted: n.tainted(),
                replacing: n.replacing(),
                age_seconds: n.age(now).map(|d| d.num_seconds()),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", table(&nodes, now));
    }
    Ok(ExitCode::SUCCESS)
}

/// The human listing: one line per node, badges last.
fn table(nodes: &[Node], now: DateTime<Utc>) -> String {
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

/// Runs `sombrero reap`.
pub fn reap(_g: &GlobalOpts, _a: ReapArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is being built (issue #5)")
}

/// Runs `sombrero rogue`.
pub fn rogue(_g: &GlobalOpts, _a: RogueArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is being built (issue #5)")
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
        let t = table(&[node], now);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID"));
        assert!(lines[1].contains("web-1"));
        assert!(lines[1].contains("2d2h"));
        assert!(lines[1].ends_with("TAINTED REPLACING"));
        assert!(table(&[], now).contains("no nodes"));
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(short_age(chrono::Duration::minutes(7)), "7m");
        assert_eq!(short_age(chrono::Duration::minutes(312)), "5h12m");
        assert_eq!(short_age(chrono::Duration::hours(76)), "3d4h");
    }
}
