//! A notification as the stores keep it in their outbox (queued by [`crate::outbox`],
//! delivered by the notification worker).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::policy::notify_event::NotifyEvent;

/// One queued notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// Unique id; sent as the idempotency key, so a receiver can drop a repeat.
    pub id: String,
    /// The `[[notify]]` target's name.
    pub target: String,
    /// What happened.
    pub event: NotifyEvent,
    /// The JSON body's content, fixed when queued.
    pub payload: Value,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// Attempts started so far.
    pub attempts: u32,
    /// Not before this time (a retry's backoff, or a worker's claim).
    pub next_at: DateTime<Utc>,
    /// Why the last attempt failed (no URL, no secret).
    pub last_error: Option<String>,
}

impl OutboxItem {
    /// A fresh item for `target`, due at once.
    pub fn new(target: &str, event: NotifyEvent, payload: Value, now: DateTime<Utc>) -> Self {
        // Sorts by creation (the stores list the outbox in key order), unique by the uuid.
        let id = format!(
            "{}-{}",
            now.format("%Y%m%dT%H%M%S%.6fZ"),
            uuid::Uuid::new_v4().simple()
        );
        let mut payload = payload;
        if let Value::Object(m) = &mut payload {
            m.insert("id".into(), Value::String(id.clone()));
        }
        OutboxItem {
            id,
            target: target.to_string(),
            event,
            payload,
            created_at: now,
            attempts: 0,
            next_at: now,
            last_error: None,
        }
    }
}

/// A time as fixed-width text that sorts in time order (the stores compare it as a string).
pub fn sortable(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
