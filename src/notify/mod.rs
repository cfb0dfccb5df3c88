//! Notifications: approvers are reached where they are.
//!
//! The policy's `[[notify]]` targets ([`targets`]) name which events ([`event`]) go where.
//! Inside the broker's write transaction, every audit event that a target wants becomes an
//! outbox row ([`outbox`]) in the SAME transaction, so a notification exists exactly when its
//! event does: a crash or restart loses none. A worker ([`worker`]) delivers the rows with
//! retries and exponential backoff ([`deliver`]: webhook JSON signed with HMAC-SHA256, or a
//! Slack incoming-webhook message from [`payload`]), at least once, each with an idempotency
//! key; a failure is audited (`notification_failed`) and never blocks or slows the flow.
//! [`escalate`] re-announces requests still pending after `escalate_after`.

pub mod deliver;
pub mod escalate;
pub mod payload;
pub mod worker;

pub use crate::outbox;
pub use crate::policy::notify as targets;
pub use crate::policy::notify_event as event;
pub use crate::store::outbox_item::OutboxItem;
pub use event::NotifyEvent;
pub use targets::{NotifyKind, NotifyTarget};
