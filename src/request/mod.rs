//! The request lifecycle as a pure state machine: no I/O, time passed in.
//!
//! ```text
//! create -> Pending --(N distinct approvers)--> Approved --(open, in grant window)--> Active --> Closed
//!              |  deny / cancel / TTL                |  cancel / grant window            | duration ends
//!              v                                     v                                   v
//!   Denied | Cancelled | Expired          Cancelled | Expired                Closed (reason: expired)
//! ```
//!
//! [`create`] and [`apply`] return the new request and the audit events it implies; the broker
//! stores both in one transaction. Every refusal is a [`Refusal`] whose message says what to do.

mod machine;
mod refusal;
mod types;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;

pub use machine::{Outcome, apply, create, create_emergency, timed_out};
pub use refusal::Refusal;
pub use types::{
    CloseReason, Command, Decision, EmergencyMark, EmergencyRules, NewRequest, Request, Rules,
    State,
};

/// A new random request id: `req-` + 8 lowercase hex characters.
pub fn new_request_id() -> String {
    let n: u32 = rand::rng().random();
    format!("req-{n:08x}")
}

/// True for ids in the `req-xxxxxxxx` format.
pub fn is_request_id(s: &str) -> bool {
    s.strip_prefix("req-").is_some_and(|h| {
        h.len() == 8
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The SSM StartSession `Reason` for a request.
pub fn session_reason(id: &str) -> String {
    format!("pink sombrero {id}")
}

/// True for `i-<hex>` and `mi-<hex>` ids.
pub fn is_target_id(s: &str) -> bool {
    let hex = s.strip_prefix("i-").or_else(|| s.strip_prefix("mi-"));
    hex.is_some_and(|h| {
        (8..=17).contains(&h.len())
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

/// `now + d`, saturating at the far future instead of overflowing.
pub fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|td| now.checked_add_signed(td))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests;
