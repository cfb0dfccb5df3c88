//! The broker's audit log as others see it: reading events, appending the kinds other parts
//! write, and checking the chain against its signed checkpoints.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Broker, BrokerError, Result};
use crate::audit::{self, ChainBreak, Event, EventKind, NewEvent};
use crate::store::Store;

/// The outcome of checking the audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCheck {
    /// Events that hold, from the start.
    pub events: u64,
    /// The first break, if any.
    pub broken: Option<ChainBreak>,
}

impl Broker {
    /// Audit events after `after_seq` (0 for all), at most `limit`.
    pub fn audit_events(&self, after_seq: u64, limit: usize) -> Result<Vec<Event>> {
        Ok(self.store.audit_events(after_seq, limit)?)
    }

    /// The audit events of one request.
    pub fn audit_for_request(&self, id: &str) -> Result<Vec<Event>> {
        Ok(self.store.audit_for_request(id)?)
    }

    /// Appends an audit event from another part (taint, replacement, recording, review, rogue
    /// sessions). Lifecycle and MFA kinds are refused: the broker writes those itself.
    pub fn record(
        &self,
        actor: &str,
        kind: EventKind,
        request_id: Option<&str>,
        data: Value,
    ) -> Result<Event> {
        if kind.is_broker_only() {
            return Err(BrokerError::Input(format!(
                "{kind} events are written by the broker as part of the state change; call the broker method for it instead"
            )));
        }
        self.append(NewEvent::new(actor, kind, request_id, data))
    }

    /// Appends an event of any kind, the broker's own included.
    pub(super) fn append(&self, e: NewEvent) -> Result<Event> {
        let now = self.now();
        Ok(self.write_tx(|tx| tx.append(e.clone(), now))?)
    }

    /// The newest signed audit checkpoint of this broker's keys dir.
    pub fn newest_checkpoint(
        &self,
    ) -> std::result::Result<crate::checkpoint::Checkpoint, ChainBreak> {
        self.store.newest_checkpoint()
    }

    /// Checks the whole audit chain.
    pub fn verify_audit(&self) -> Result<AuditCheck> {
        let (events, recorded) = self.store.audit_all()?;
        Ok(match audit::verify(&events, recorded) {
            // A chain that holds by itself must also match what was signed outside the store.
            Ok(n) => AuditCheck {
                events: n,
                broken: self.store.check_checkpoints(&events).err(),
            },
            Err(b) => AuditCheck {
                events: good_prefix(&b),
                broken: Some(b),
            },
        })
    }
}

/// How many events hold before a break.
fn good_prefix(b: &ChainBreak) -> u64 {
    match b {
        ChainBreak::Edited { seq } | ChainBreak::BadLink { seq, .. } => seq.saturating_sub(1),
        ChainBreak::Missing { previous, .. }
        | ChainBreak::OutOfOrder { previous, .. }
        | ChainBreak::Reordered { previous, .. } => *previous,
        ChainBreak::Extra { recorded, .. } => *recorded,
        ChainBreak::Truncated { last, .. } => *last,
        // Found only after the whole chain held by itself.
        ChainBreak::Cut { last, .. } => *last,
        ChainBreak::Forged { first, .. } => first.saturating_sub(1),
        ChainBreak::Checkpoint { .. } => 0,
    }
}
