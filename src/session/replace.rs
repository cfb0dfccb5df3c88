//! Replacing a tainted instance, audited: at a session's end and by the reaper.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::mpsc;

use super::audit;
use crate::audit::EventKind;
use crate::broker::Broker;
use crate::fleet::{
    Fleet, ReplaceFailure, ReplaceOptions, ReplaceProgress, ReplaceStrategy, ReplacementOutcome,
};

/// One replacement to run: what, how, and who asked.
pub struct ReplaceJob<'a, F> {
    /// Where the audit events go.
    pub broker: &'a Arc<Broker>,
    /// The fleet the target lives in.
    pub fleet: &'a Arc<F>,
    /// The request the taint came from, when known.
    pub request_id: Option<&'a str>,
    /// The instance to replace.
    pub target: &'a str,
    /// The policy's strategy.
    pub strategy: &'a ReplaceStrategy,
    /// Timeouts and polling.
    pub opts: ReplaceOptions,
    /// Who asked: `session` (its end) or `reap`.
    pub via: &'a str,
}

/// Replaces the job's target with its strategy, reporting progress, and audits the request
/// and the outcome.
pub async fn replace_audited<F: Fleet + Send + Sync + 'static>(
    job: ReplaceJob<'_, F>,
    mut progress: impl FnMut(String),
) -> ReplacementOutcome {
    let ReplaceJob {
        broker,
        fleet,
        request_id,
        target,
        strategy,
        opts,
        via,
    } = job;
    audit(
        broker,
        EventKind::ReplacementRequested,
        request_id,
        json!({"target": target, "strategy": strategy.to_string(), "via": via}),
    )
    .await;
    progress(format!("replacing {target} ({strategy})"));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let fleet = fleet.clone();
    let (t, s) = (target.to_string(), strategy.clone());
    let work = tokio::spawn(async move {
        fleet
            .replace(&t, &s, &opts, move |p: ReplaceProgress| {
                let _ = tx.send(p.to_string());
            })
            .await
    });
    while let Some(note) = rx.recv().await {
        progress(note);
    }
    let outcome = match work.await {
        Ok(o) => o,
        Err(e) => ReplacementOutcome::Failed {
            why: ReplaceFailure::Api(format!("replacement task failed: {e}")),
        },
    };
    let (kind, data) = match &outcome {
        ReplacementOutcome::Completed { old, new } => (
            EventKind::ReplacementCompleted,
            json!({"old": old, "new": new}),
        ),
        ReplacementOutcome::Failed { why } => (
            EventKind::ReplacementFailed,
            json!({"target": target, "why": why.to_string()}),
        ),
        ReplacementOutcome::Requested { note } => (
            EventKind::ReplacementRequested,
            json!({"target": target, "note": note, "outcome": "requested"}),
        ),
    };
    audit(broker, kind, request_id, data).await;
    outcome
}
