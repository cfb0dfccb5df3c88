//! A node's agent going away, as a rogue user (or a crash) would make it: the agent stops
//! answering (its sessions end at once, their data channels drop without a close frame, new
//! sessions are refused, DescribeInstanceInformation reports `ConnectionLost`), and then the
//! node may be deregistered (no longer listed at all; its tags go with it, as a managed node's
//! do). Reached by tests through [`super::Lab`] and by people through the lab's control routes
//! `POST /lab/nodes/{id}/stop-agent` and `POST /lab/nodes/{id}/deregister`.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::mailbox::AgentEvent;
use super::state::{LabState, SessionStatus};

impl LabState {
    /// Stops `node_id`'s agent; false if no such node is registered.
    pub(crate) fn stop_agent(&self, node_id: &str) -> bool {
        let mut inner = self.lock();
        let Some(node) = inner.nodes.iter_mut().find(|n| n.id == node_id) else {
            return false;
        };
        node.agent_lost.get_or_insert_with(SystemTime::now);
        for s in inner.sessions.iter_mut() {
            if s.target == node_id && s.status.is_active() {
                s.status = SessionStatus::Terminated;
                s.end = Some(SystemTime::now());
                s.token = None;
                let _ = s.agent.send(AgentEvent::AgentLost);
            }
        }
        tracing::info!(node = node_id, "agent stopped (lab control)");
        true
    }

    /// Stops `node_id`'s agent and deregisters the node; false if no such node is registered.
    pub(crate) fn deregister(&self, node_id: &str) -> bool {
        if !self.stop_agent(node_id) {
            return false;
        }
        let removed = {
            let mut inner = self.lock();
            let pos = inner.nodes.iter().position(|n| n.id == node_id);
            pos.map(|p| inner.nodes.remove(p))
        };
        if let Some(node) = removed
            && let Err(e) = std::fs::remove_dir_all(&node.dir)
        {
            tracing::warn!(error = %e, dir = %node.dir.display(), "cannot delete a deregistered node's directory");
        }
        tracing::info!(node = node_id, "node deregistered (lab control)");
        true
    }
}

/// `POST /lab/nodes/{id}/stop-agent`: 204, or 404 for an unknown node.
pub(crate) async fn stop_agent(
    State(state): State<Arc<LabState>>,
    Path(id): Path<String>,
) -> StatusCode {
    found(state.stop_agent(&id))
}

/// `POST /lab/nodes/{id}/deregister`: 204, or 404 for an unknown node.
pub(crate) async fn deregister(
    State(state): State<Arc<LabState>>,
    Path(id): Path<String>,
) -> StatusCode {
    found(state.deregister(&id))
}

fn found(done: bool) -> StatusCode {
    if done {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}
