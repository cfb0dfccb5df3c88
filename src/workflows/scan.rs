//! The fleet listing and the rogue scan as both the local commands and the broker daemon run
//! them: the fleet's view marked with what the audit log knows, new findings audited once.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use thiserror::Error;

use crate::audit::EventKind;
use crate::broker::{Broker, BrokerError};

use crate::fleet::{
    AgentLost, Fleet, FleetError, Node, RogueFinding, SessionState, classify_sessions,
};

/// Errors from a listing or a scan.
#[derive(Debug, Error)]
pub enum ScanError {
    /// The store could not be read or written.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The fleet could not be listed.
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// A finding could not be encoded for the audit log.
    #[error("cannot encode a finding for the audit log: {0}")]
    Encode(#[from] serde_json::Error),
}

/// One row of the fleet listing (`sombrero fleet --json`, `GET /v1/fleet`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRow {
    /// The node.
    #[serde(flatten)]
    pub node: Node,
    /// A session touched it.
    pub tainted: bool,
    /// Its replacement was requested.
    pub replacing: bool,
    /// A rogue session touched it (the audit log says so).
    pub rogue_touched: bool,
    /// Its age in seconds, when known.
    pub age_seconds: Option<i64>,
    /// Older than the policy's `max_instance_age`.
    pub old: bool,
    /// Tainted and out of Systems Manager's reach: why (`not_in_ssm`, `connection_lost`).
    #[serde(default)]
    pub agent_lost: Option<AgentLost>,
}

impl NodeRow {
    /// The taint badge: `TAINTED`, or why a tainted node is out of SSM's reach
    /// (`TAINTED · NOT IN SSM (stopped)`); `None` for an untainted node.
    pub fn taint_badge(&self) -> Option<String> {
        if !self.tainted {
            return None;
        }
        Some(match (self.agent_lost, &self.node.ec2_state) {
            (None, _) => "TAINTED".to_owned(),
            (Some(lost), Some(state)) => format!("{} ({state})", lost.badge()),
            (Some(lost), None) => lost.badge().to_owned(),
        })
    }
}

/// The listing rows for `nodes` at `now`.
pub fn node_rows(
    nodes: Vec<Node>,
    rogue_touched: &HashSet<String>,
    max_age: Option<Duration>,
    now: DateTime<Utc>,
) -> Vec<NodeRow> {
    nodes
        .into_iter()
        .map(|n| NodeRow {
            tainted: n.tainted(),
            replacing: n.replacing(),
            rogue_touched: rogue_touched.contains(&n.id),
            age_seconds: n.age(now).map(|d| d.num_seconds()),
            old: n.old(now, max_age),
            agent_lost: n.agent_lost(),
            node: n,
        })
        .collect()
}

/// The nodes a rogue session touched, as the audit log records them.
pub fn rogue_touched(broker: &Broker) -> Result<HashSet<String>, BrokerError> {
    Ok(field_of(
        &events_of(broker, EventKind::RogueSessionFound)?,
        "target",
    ))
}

/// How many EC2 instances have no known launch time (they cannot be judged old).
pub fn unknown_ages<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> usize {
    nodes
        .into_iter()
        .filter(|n| n.id.starts_with("i-") && n.launched.is_none())
        .count()
}

/// One finding of the rogue scan: a session around the broker, or an instance past the
/// policy's `max_instance_age`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// A session that bypassed the broker.
    RogueSession {
        /// The session and why it is rogue.
        #[serde(flatten)]
        rogue: RogueFinding,
        /// First time a scan saw it (an audit event was written).
        new: bool,
    },
    /// An instance older than the policy allows.
    OldInstance {
        /// The instance.
        #[serde(flatten)]
        old: OldInstance,
        /// First time a scan saw it (an audit event was written).
        new: bool,
    },
    /// A tainted node that dropped out of Systems Manager's reach (what a rogue user would
    /// try first: stop or deregister the agent); the reaper still replaces it.
    AgentLostWhileTainted {
        /// The node.
        #[serde(flatten)]
        lost: LostNode,
        /// First time a scan saw it (an audit event was written).
        new: bool,
    },
}

/// A tainted node out of Systems Manager's reach, as reported and audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostNode {
    /// The node id.
    pub instance: String,
    /// Its name, if any.
    pub name: Option<String>,
    /// Why it is out of reach.
    pub why: AgentLost,
    /// Its agent's last ping status (`-` when SSM does not list it).
    pub ping: String,
    /// Its EC2 state, when SSM does not list it and EC2 told.
    pub ec2_state: Option<String>,
    /// The request its taint tag names.
    pub request: Option<String>,
}

/// The tainted nodes out of Systems Manager's reach; terminated instances are gone, not lost.
pub fn lost_nodes(nodes: &[Node]) -> Vec<LostNode> {
    nodes
        .iter()
        .filter(|n| !n.terminated())
        .filter_map(|n| {
            Some(LostNode {
                why: n.agent_lost()?,
                instance: n.id.clone(),
                name: n.name.clone(),
                ping: n.ping.clone(),
                ec2_state: n.ec2_state.clone(),
                request: n.tags.get(crate::fleet::tag::REQUEST).cloned(),
            })
        })
        .collect()
}

/// An instance past `max_instance_age`, as reported and audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OldInstance {
    /// The instance id.
    pub instance: String,
    /// Its name, if any.
    pub name: Option<String>,
    /// When its age counts from: launch for an EC2 instance, else registration.
    pub launched: DateTime<Utc>,
    /// Its age in seconds.
    pub age_secs: i64,
    /// The policy's limit in seconds.
    pub max_age_secs: u64,
}

/// What one rogue scan found (`POST /v1/rogue`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RogueReport {
    /// Rogue sessions first, then old instances, then tainted nodes out of SSM's reach.
    pub findings: Vec<Finding>,
    /// The policy's `max_instance_age` in seconds (`None`: the check is off).
    pub max_age_secs: Option<u64>,
    /// EC2 instances whose launch time is unknown (not judged old).
    pub unknown_ages: usize,
}

/// The nodes older than `max_age` at `now`.
pub fn old_instances(nodes: &[Node], now: DateTime<Utc>, max_age: Duration) -> Vec<OldInstance> {
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

/// Scans for sessions (active and recent history) that bypassed the broker, instances older
/// than the policy's `max_instance_age`, and tainted nodes out of Systems Manager's reach. Each
/// new finding is audited once, as `actor` (`RogueSessionFound` per session, `OldInstanceFound`
/// and `AgentLostWhileTainted` per instance).
///
/// The broker calls block: on a daemon, run this on a blocking thread.
pub async fn rogue<F: Fleet>(
    broker: &Broker,
    fleet: &F,
    actor: &str,
) -> Result<RogueReport, ScanError> {
    let max_age = broker.policy()?.max_instance_age;
    let mut sessions = fleet.describe_sessions(SessionState::Active).await?;
    let mut seen: HashSet<String> = sessions.iter().map(|s| s.session_id.clone()).collect();
    for s in fleet.describe_sessions(SessionState::History).await? {
        if seen.insert(s.session_id.clone()) {
            sessions.push(s);
        }
    }
    let known: HashSet<String> = broker
        .list(None)?
        .into_iter()
        .filter_map(|r| r.session_id)
        .collect();
    let rogues = classify_sessions(&sessions, |id| known.contains(id));
    let nodes = fleet.list_nodes().await?;
    let (old, unknown) = match max_age {
        Some(max) => (old_instances(&nodes, Utc::now(), max), unknown_ages(&nodes)),
        None => (Vec::new(), 0),
    };
    let reported = field_of(
        &events_of(broker, EventKind::RogueSessionFound)?,
        "session_id",
    );
    let mut findings = Vec::new();
    for f in rogues {
        let new = !reported.contains(&f.session.session_id);
        if new {
            broker.record(
                actor,
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
            )?;
        }
        findings.push(Finding::RogueSession { rogue: f, new });
    }
    // An instance's launch never changes: one event per instance, ever.
    let reported = field_of(&events_of(broker, EventKind::OldInstanceFound)?, "instance");
    for o in old {
        let new = !reported.contains(&o.instance);
        if new {
            broker.record(
                actor,
                EventKind::OldInstanceFound,
                None,
                serde_json::to_value(&o)?,
            )?;
        }
        findings.push(Finding::OldInstance { old: o, new });
    }
    // Once per node: it stays lost until the reaper replaces it, and a new node has a new id.
    let reported = field_of(
        &events_of(broker, EventKind::AgentLostWhileTainted)?,
        "instance",
    );
    for l in lost_nodes(&nodes) {
        let new = !reported.contains(&l.instance);
        if new {
            broker.record(
                actor,
                EventKind::AgentLostWhileTainted,
                None,
                serde_json::to_value(&l)?,
            )?;
        }
        findings.push(Finding::AgentLostWhileTainted { lost: l, new });
    }
    Ok(RogueReport {
        findings,
        max_age_secs: max_age.map(|d| d.as_secs()),
        unknown_ages: unknown,
    })
}

/// The data of every event of `kind` in the audit log.
pub(crate) fn events_of(
    broker: &Broker,
    kind: EventKind,
) -> Result<Vec<serde_json::Value>, BrokerError> {
    const PAGE: usize = 1000;
    let mut found = Vec::new();
    let mut after = 0;
    loop {
        let events = broker.audit_events(after, PAGE)?;
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
pub(crate) fn field_of(events: &[serde_json::Value], key: &str) -> HashSet<String> {
    events
        .iter()
        .filter_map(|d| d.get(key)?.as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_instances_are_those_past_the_limit() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let node = |id: &str, launched: Option<i64>, registered: Option<i64>| Node {
            registered: registered.map(|h| now - chrono::Duration::hours(h)),
            launched: launched.map(|h| now - chrono::Duration::hours(h)),
            ..Node::online(id)
        };
        let nodes = [
            node("i-00000001", Some(30), None),
            node("i-00000002", Some(10), Some(100)),
            node("mi-00000003", None, Some(25)),
            node("i-00000004", None, None),
        ];
        let old = old_instances(&nodes, now, Duration::from_secs(24 * 3600));
        let got: Vec<(&str, i64)> = old
            .iter()
            .map(|o| (o.instance.as_str(), o.age_secs / 3600))
            .collect();
        // Launch wins over registration; an unknown age is no finding.
        assert_eq!(got, vec![("i-00000001", 30), ("mi-00000003", 25)]);
        assert_eq!(old[0].max_age_secs, 24 * 3600);
        assert_eq!(unknown_ages(&nodes), 1);
        // Rows and findings come back from the wire as they left.
        let rows = node_rows(nodes.to_vec(), &HashSet::new(), None, now);
        let back: Vec<NodeRow> =
            serde_json::from_str(&serde_json::to_string(&rows).unwrap()).unwrap();
        assert_eq!(back, rows);
        let f = vec![Finding::OldInstance {
            old: old[0].clone(),
            new: true,
        }];
        let back: Vec<Finding> = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
    }
}
