//! The outbox: notifications queued in the same store transaction as their audit event.
//!
//! [`Notifying`] wraps a write transaction: every audit event appended through it that some
//! `[[notify]]` target wants is queued for that target before the transaction commits, so the
//! notification and the event exist together or not at all. Everything is bounded: the payload
//! ([`MAX_PAYLOAD`]), the queue ([`MAX_OUTBOX`]; a notification that finds it full is not
//! queued and `notification_failed` is audited instead) and the attempts ([`MAX_ATTEMPTS`]).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::audit::{Event, EventKind, NewEvent};
use crate::policy::notify::NotifyTarget;
use crate::policy::notify_event::NotifyEvent;
use crate::request::Request;
pub use crate::store::outbox_item::{OutboxItem, sortable};
use crate::store::{StoreError, UserRecord, WriteTx};

/// Most notifications waiting in the outbox.
pub const MAX_OUTBOX: usize = 10_000;
/// Largest payload queued, in bytes of JSON (bigger ones lose the event's `data`).
pub const MAX_PAYLOAD: usize = 16 * 1024;
/// Delivery attempts before a notification is given up (and audited).
pub const MAX_ATTEMPTS: u32 = 10;

/// The payload of an audit event: the event and a summary of its request.
pub fn payload(event: NotifyEvent, ev: &Event, request: Option<&Request>) -> Value {
    let request = request.map(|r| {
        json!({
            "id": r.id,
            "requester": r.requester,
            "target": r.target,
            "reason": r.reason,
            "incident": r.incident,
            "state": r.state.as_str(),
            "duration_secs": r.duration_secs,
            "approvals": r.approvals.iter().map(|a| a.by.as_str()).collect::<Vec<_>>(),
            "command": r.command,
        })
    });
    let mut p = json!({
        "event": event.as_str(),
        "at": ev.at,
        "audit": {
            "seq": ev.seq,
            "actor": ev.actor,
            "kind": ev.kind.as_str(),
            "request_id": ev.request_id,
            "data": ev.data,
        },
        "request": request,
    });
    if p.to_string().len() > MAX_PAYLOAD {
        p["audit"]["data"] = json!({"truncated": true});
        if let Some(reason) = p["request"]["reason"].as_str() {
            let short: String = reason.chars().take(200).collect();
            p["request"]["reason"] = Value::String(short);
        }
    }
    p
}

/// A write transaction that queues notifications for the events appended through it.
pub struct Notifying<'a> {
    /// The store's (or another wrapper's) transaction.
    pub tx: &'a mut dyn WriteTx,
    /// The policy's targets.
    pub targets: &'a [NotifyTarget],
    /// Outbox length, read once per transaction when first needed.
    pub queued: Option<usize>,
}

impl<'a> Notifying<'a> {
    /// Wraps `tx` for `targets`.
    pub fn new(tx: &'a mut dyn WriteTx, targets: &'a [NotifyTarget]) -> Self {
        Notifying {
            tx,
            targets,
            queued: None,
        }
    }

    /// True when `target` takes events about `person`.
    fn admits(&mut self, target: &NotifyTarget, person: &str) -> Result<bool, StoreError> {
        if !target.users.is_empty() && !target.users.iter().any(|u| u == person) {
            return Ok(false);
        }
        if target.roles.is_empty() {
            return Ok(true);
        }
        let user: Option<UserRecord> = self.tx.user(person)?;
        Ok(user.is_some_and(|u| u.roles.iter().any(|r| target.roles.contains(r))))
    }

    fn queue(&mut self, ev: &Event, at: DateTime<Utc>) -> Result<(), StoreError> {
        let Some(event) = NotifyEvent::of(ev.kind) else {
            return Ok(());
        };
        let targets = self.targets;
        let wants = |t: &NotifyTarget| event.is_for_everyone() || t.events.contains(&event);
        if !targets.iter().any(wants) {
            return Ok(());
        }
        let request = match &ev.request_id {
            Some(id) => self.tx.request(id)?,
            None => None,
        };
        let person = request
            .as_ref()
            .map_or(ev.actor.clone(), |r| r.requester.clone());
        let body = payload(event, ev, request.as_ref());
        for t in targets.iter().filter(|t| wants(t)) {
            if !event.is_for_everyone() && !self.admits(t, &person)? {
                continue;
            }
            let queued = match self.queued {
                Some(n) => n,
                None => self.tx.outbox_len()?,
            };
            if queued >= MAX_OUTBOX {
                tracing::warn!(target = %t.name, event = %event, "outbox full: notification dropped");
                self.tx.append(
                    NewEvent::new(
                        crate::audit::SYSTEM_ACTOR,
                        EventKind::NotificationFailed,
                        ev.request_id.as_deref(),
                        json!({"target": t.name, "event": event.as_str(), "attempts": 0,
                               "error": format!("outbox full ({MAX_OUTBOX} waiting): not queued"),
                               "final": true}),
                    ),
                    at,
                )?;
                self.queued = Some(queued);
                continue;
            }
            self.tx
                .enqueue(&OutboxItem::new(&t.name, event, body.clone(), at))?;
            self.queued = Some(queued + 1);
        }
        Ok(())
    }
}

impl WriteTx for Notifying<'_> {
    crate::store::forward_write_tx!();

    fn append(&mut self, e: NewEvent, at: DateTime<Utc>) -> Result<Event, StoreError> {
        let ev = self.tx.append(e, at)?;
        // seq 0: a refusal over the audit budget, not stored (and never notifiable).
        if ev.seq > 0 && !self.targets.is_empty() {
            self.queue(&ev, at)?;
        }
        Ok(ev)
    }
}
