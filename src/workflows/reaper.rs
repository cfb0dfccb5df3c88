//! The reaper, as `sombrero reap` and the broker daemon run it: ends sessions that outlived
//! their request, closes the taint of tainted instances already terminated, then replaces
//! tainted nodes that have no active session, whether or not Systems Manager still lists them
//! (the candidates come from [`Fleet::list_nodes`], which starts from the taint tag).

use std::sync::Arc;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::EventKind;
use crate::broker::Broker;
use crate::request::{CloseReason, State};
use crate::session;

use super::scan::{ScanError, events_of, field_of};
use crate::fleet::{
    Fleet, Node, ReplaceOptions, ReplaceStrategy, ReplacementOutcome, SessionInfo, SessionState,
    tag, tainted_without_active_session,
};

/// How the taint of an instance found terminated is closed (the audit's `closed_as`, the
/// reaper's outcome).
pub const CLOSED_BY_TERMINATION: &str = "replaced-by-termination";

/// What the reaper did, or would do, with one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaped {
    /// The node.
    pub target: String,
    /// The request that tainted it, when this store knows it.
    pub request: Option<String>,
    /// How it is replaced.
    pub strategy: String,
    /// `would-replace`, `completed`, `failed`, `requested`, `would-end-session`,
    /// `session-ended`, `would-close`, `replaced-by-termination` (a tainted instance found
    /// terminated, recorded once).
    pub outcome: String,
    /// The node that replaced it.
    pub new: Option<String>,
    /// Why, in words.
    pub detail: Option<String>,
    /// A stale `requested` mark was retried (the run that made it died).
    pub retry: bool,
}

/// Reaps once, auditing as `actor`; `dry_run` changes nothing; `progress` hears each step of
/// a replacement.
///
/// Idempotent: a replaced node is gone; a requested one carries
/// `pink-sombrero:replacement=requested` and is skipped until the request is stale (older than
/// the replace timeout plus a margin, or without `pink-sombrero:replacement-at`: the run that
/// made it died), then tried again, audited as `ReplacementRetried`; a failed one is tried
/// again. Every replacement is audited before it starts. The broker calls block: on a daemon,
/// run this on a blocking thread.
pub async fn reap<F: Fleet + Send + Sync + 'static>(
    broker: &Arc<Broker>,
    fleet: &Arc<F>,
    actor: &str,
    dry_run: bool,
    mut progress: impl FnMut(String),
) -> Result<Vec<Reaped>, ScanError> {
    let strategy = ReplaceStrategy::from(&broker.policy()?.replacement);
    let opts = ReplaceOptions::default();
    let retry_after = opts.retry_requested_after(&strategy);
    let mut done = Vec::new();
    let live = end_orphan_sessions(broker, fleet.as_ref(), &strategy, dry_run, &mut done).await?;
    let nodes = fleet.list_nodes().await?;
    close_terminated(broker, &nodes, actor, &strategy, dry_run, &mut done)?;
    for node in tainted_without_active_session(&nodes, &live, Utc::now(), retry_after) {
        // The listing's sessions are a moment old, and a node SSM does not list may still have
        // one: ask for this target's own, right before touching it.
        if !fleet.active_sessions_on(&node.id).await?.is_empty() {
            continue;
        }
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
            outcome: "would-replace".into(),
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
            if !dry_run {
                broker.record(
                    actor,
                    EventKind::ReplacementRetried,
                    request.as_deref(),
                    json!({
                        "target": node.id,
                        "requested_at": requested_at,
                        "stale_after_secs": retry_after.map(|d| d.as_secs()),
                    }),
                )?;
            }
        }
        if dry_run {
            done.push(row);
            continue;
        }
        let job = session::ReplaceJob {
            broker,
            fleet,
            request_id: request.as_deref(),
            target: &node.id,
            strategy: &strategy,
            opts,
            via: "reap",
        };
        let outcome = session::replace_audited(job, &mut progress).await;
        match outcome {
            ReplacementOutcome::Completed { new, .. } => {
                row.outcome = "completed".into();
                row.new = Some(new);
            }
            ReplacementOutcome::Failed { why } => {
                row.outcome = "failed".into();
                row.detail = Some(why.to_string());
            }
            ReplacementOutcome::Requested { note } => {
                row.outcome = "requested".into();
                row.detail = Some(note);
            }
        }
        done.push(row);
    }
    Ok(done)
}

/// Records, once per instance, the taint of a tainted instance EC2 reports terminated as
/// closed (`TaintClosed`, `replaced-by-termination`): it is gone, nothing is left to replace.
/// An instance whose replacement this store saw complete is closed already.
fn close_terminated(
    broker: &Broker,
    nodes: &[Node],
    actor: &str,
    strategy: &ReplaceStrategy,
    dry_run: bool,
    done: &mut Vec<Reaped>,
) -> Result<(), ScanError> {
    // Closed already: recorded here before, or replaced by a replacement that completed (the
    // old instance lingers, terminated, in the tagging API and EC2 for a while).
    let mut closed = field_of(&events_of(broker, EventKind::TaintClosed)?, "target");
    closed.extend(field_of(
        &events_of(broker, EventKind::ReplacementCompleted)?,
        "old",
    ));
    for node in nodes
        .iter()
        .filter(|n| n.tainted() && n.terminated() && !closed.contains(&n.id))
    {
        let request = node
            .tags
            .get(tag::REQUEST)
            .filter(|r| broker.get(r).is_ok())
            .cloned();
        let mut outcome = "would-close";
        if !dry_run {
            broker.record(
                actor,
                EventKind::TaintClosed,
                request.as_deref(),
                json!({
                    "target": node.id,
                    "closed_as": CLOSED_BY_TERMINATION,
                    "ec2_state": node.ec2_state,
                }),
            )?;
            outcome = CLOSED_BY_TERMINATION;
        }
        done.push(Reaped {
            target: node.id.clone(),
            request,
            strategy: strategy.to_string(),
            outcome: outcome.into(),
            new: None,
            detail: Some(format!(
                "EC2 reports it {}: the taint is closed, nothing to replace",
                node.ec2_state.as_deref().unwrap_or("terminated")
            )),
            retry: false,
        });
    }
    Ok(())
}

/// Ends the SSM sessions the store says are over: their request is closed, or past its
/// approved end (the client crashed or was killed, so nobody terminated them). Returns the
/// active sessions that remain. An overdue request is closed as expired.
async fn end_orphan_sessions<F: Fleet>(
    broker: &Broker,
    fleet: &F,
    strategy: &ReplaceStrategy,
    dry_run: bool,
    done: &mut Vec<Reaped>,
) -> Result<Vec<SessionInfo>, ScanError> {
    let now = broker.now();
    let requests = broker.list(None)?;
    let over = |s: &SessionInfo| {
        requests.iter().find(|r| {
            r.session_id.as_deref() == Some(s.session_id.as_str())
                && (r.state != State::Active || r.is_due(now))
        })
    };
    let mut live = Vec::new();
    for s in fleet.describe_sessions(SessionState::Active).await? {
        let Some(r) = over(&s) else {
            live.push(s);
            continue;
        };
        let mut outcome = "would-end-session";
        if !dry_run {
            fleet.terminate_session(&s.session_id).await?;
            if r.state == State::Active {
                broker.close_session(&r.id, CloseReason::Expired)?;
            }
            outcome = "session-ended";
        }
        done.push(Reaped {
            target: s.target.clone(),
            request: Some(r.id.clone()),
            strategy: strategy.to_string(),
            outcome: outcome.into(),
            new: None,
            detail: Some(format!("session {} outlived its request", s.session_id)),
            retry: false,
        });
    }
    Ok(live)
}
