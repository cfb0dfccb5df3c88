//! The audit budget for refusals: each identity gets [`PER_MINUTE`] audited refusals (and
//! rejected codes) a minute. Beyond it a refusal is still refused, and counted; one
//! `refusals_suppressed` event per identity and minute then records how many went unstored.
//! So a client repeating a refused call cannot grow the hash-chained log (whose events can
//! never be removed) without bound.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::audit::{Event, EventKind, NewEvent};
use crate::store::{StoreError, WriteTx};

/// Audited refusals one identity may cause per minute.
pub const PER_MINUTE: u32 = 20;

/// True for the events a refused caller causes (and so may cause at will).
pub fn is_refusal(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Refused | EventKind::MfaRejected | EventKind::MfaReplayed | EventKind::MfaLocked
    )
}

/// One identity's current minute.
#[derive(Debug, Clone)]
struct Window {
    since: DateTime<Utc>,
    stored: u32,
    suppressed: u64,
}

/// Refusals counted but not stored, to be recorded as one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    /// Whose refusals.
    pub actor: String,
    /// How many were not stored.
    pub count: u64,
    /// The minute they fell in.
    pub since: DateTime<Utc>,
}

impl Suppressed {
    /// The summary event.
    pub fn event(&self) -> NewEvent {
        NewEvent::new(
            self.actor.clone(),
            EventKind::RefusalsSuppressed,
            None,
            json!({
                "suppressed": self.count,
                "since": self.since,
                "per_minute": PER_MINUTE,
            }),
        )
    }
}

/// Per-identity windows (the broker's, shared by all its transactions).
#[derive(Debug, Default)]
pub struct Budget {
    windows: Mutex<HashMap<String, Window>>,
    /// Ended windows with suppressed refusals, not yet recorded.
    ended: Mutex<Vec<Suppressed>>,
}

impl Budget {
    /// True when a refusal by `actor` at `now` may be stored; false: counted only.
    pub fn admit(&self, actor: &str, now: DateTime<Utc>) -> bool {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let w = windows.entry(actor.to_string()).or_insert(Window {
            since: now,
            stored: 0,
            suppressed: 0,
        });
        if now - w.since >= Duration::minutes(1) {
            if w.suppressed > 0 {
                self.ended
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Suppressed {
                        actor: actor.to_string(),
                        count: w.suppressed,
                        since: w.since,
                    });
            }
            *w = Window {
                since: now,
                stored: 0,
                suppressed: 0,
            };
        }
        if w.stored < PER_MINUTE {
            w.stored += 1;
            true
        } else {
            w.suppressed += 1;
            false
        }
    }

    /// Gives back one admission of `actor`'s (`stored`: as [`Budget::admit`] answered), for a
    /// transaction that was run again or not committed: only what was written counts.
    pub fn refund(&self, actor: &str, stored: bool) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = windows.get_mut(actor) {
            if stored {
                w.stored = w.stored.saturating_sub(1);
            } else {
                w.suppressed = w.suppressed.saturating_sub(1);
            }
        }
    }

    /// Summaries to record: windows ended by `now` (every window when `all`, at shutdown).
    /// Quiet windows are forgotten, so the map holds only identities active this minute.
    pub fn take(&self, now: DateTime<Utc>, all: bool) -> Vec<Suppressed> {
        let mut out = std::mem::take(&mut *self.ended.lock().unwrap_or_else(|p| p.into_inner()));
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows.retain(|actor, w| {
            let over = all || now - w.since >= Duration::minutes(1);
            if over && w.suppressed > 0 {
                out.push(Suppressed {
                    actor: actor.clone(),
                    count: w.suppressed,
                    since: w.since,
                });
            }
            !over
        });
        out
    }
}

/// A write transaction whose refusal events go through the budget.
pub struct Budgeted<'a> {
    /// The store's transaction.
    pub tx: &'a mut dyn WriteTx,
    /// The broker's budget.
    pub budget: &'a Budget,
    /// This attempt's admissions `(actor, stored)`, to refund if it does not commit.
    pub counted: &'a mut Vec<(String, bool)>,
}

/// Runs `write` (a store's write, which may run its transaction more than once) with `f`'s
/// refusals going through `budget`; only the attempt that committed is counted.
pub fn budgeted_write<T>(
    budget: &Budget,
    write: impl FnOnce(
        &mut dyn FnMut(&mut dyn WriteTx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>,
    mut f: impl FnMut(&mut dyn WriteTx) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut counted: Vec<(String, bool)> = Vec::new();
    let out = write(&mut |tx| {
        // Run again: the last attempt wrote nothing.
        for (actor, stored) in counted.drain(..) {
            budget.refund(&actor, stored);
        }
        f(&mut Budgeted {
            tx,
            budget,
            counted: &mut counted,
        })
    });
    if out.is_err() {
        for (actor, stored) in counted.drain(..) {
            budget.refund(&actor, stored);
        }
    }
    out
}

impl WriteTx for Budgeted<'_> {
    crate::store::forward_write_tx!();

    /// A refusal over the budget is not stored: the event handed back is unchained (seq 0),
    /// which no caller of a refusal looks at.
    fn append(&mut self, e: NewEvent, at: DateTime<Utc>) -> Result<Event, StoreError> {
        if is_refusal(e.kind) {
            let stored = self.budget.admit(&e.actor, at);
            self.counted.push((e.actor.clone(), stored));
            if !stored {
                let mut unstored = Event::chain(None, e, at);
                unstored.seq = 0;
                return Ok(unstored);
            }
        }
        self.tx.append(e, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::sqlite::SqliteStore;

    #[test]
    fn a_transaction_run_again_counts_its_refusals_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let b = Budget::default();
        let now = Utc::now();
        let refusal = || NewEvent::new("eve", EventKind::Refused, None, json!({}));
        // A store that runs each transaction twice (as DynamoDB does after a conflict).
        for _ in 0..PER_MINUTE - 1 {
            budgeted_write(
                &b,
                |run| {
                    store.write(&mut *run)?;
                    store.write(run)
                },
                |tx| tx.append(refusal(), now).map(|_| ()),
            )
            .unwrap();
        }
        // Each committed attempt counted once: one place is left, then none.
        assert!(b.admit("eve", now), "a run-again transaction counted twice");
        assert!(!b.admit("eve", now), "over the budget after {PER_MINUTE}");
        // A transaction that fails counts nothing.
        let b = Budget::default();
        let failed: Result<(), StoreError> = budgeted_write(
            &b,
            |run| {
                let _ = store.write(run);
                Err(StoreError::Corrupt("test".into()))
            },
            |tx| tx.append(refusal(), now).map(|_| ()),
        );
        assert!(failed.is_err());
        let admitted = (0..PER_MINUTE).filter(|_| b.admit("eve", now)).count();
        assert_eq!(admitted, PER_MINUTE as usize);
    }

    #[test]
    fn over_the_budget_is_counted_then_summarised_once() {
        let b = Budget::default();
        let t0 = Utc::now();
        let stored = (0..PER_MINUTE + 7).filter(|_| b.admit("eve", t0)).count();
        assert_eq!(stored, PER_MINUTE as usize);
        assert!(b.admit("ann", t0), "one identity's budget is its own");
        assert!(b.take(t0, false).is_empty(), "the minute is not over");
        // The next minute starts a fresh budget and hands the last one's count over.
        assert!(b.admit("eve", t0 + Duration::seconds(61)));
        let s = b.take(t0 + Duration::seconds(61), false);
        assert_eq!(
            s,
            [Suppressed {
                actor: "eve".into(),
                count: 7,
                since: t0
            }]
        );
        assert!(b.take(t0 + Duration::seconds(200), true).is_empty());
    }
}
