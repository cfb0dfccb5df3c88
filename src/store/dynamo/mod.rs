//! The team store: one DynamoDB table shared by several brokers.
//!
//! # Table
//!
//! One table, string hash key `pk` and string range key `sk`, on-demand billing
//! ([`DynamoStore::init`], `sombrero store init`, creates it):
//!
//! | pk        | sk                 | attributes                                                    |
//! |-----------|--------------------|---------------------------------------------------------------|
//! | `head`    | `head`             | `seq` (N), `hash` (S): the audit chain's last event; `rev` (N) |
//! | `request` | request id         | `body` (S, JSON), `state` (S), `ver` (N)                      |
//! | `user`    | user name          | `body` (S, JSON without the secret), `secret` (S), `ver` (N)  |
//! | `audit`   | seq, 20 digits     | `event` (S, JSON), `request_id` (S, when it has one)          |
//! | `outbox`  | notification id    | `body` (S, JSON), `next_at` (S, sortable time), `attempts` (N) |
//!
//! Each kind is one partition, so every listing is one strongly consistent Query in key order
//! (a partition holds 10 GB: far more than a team's requests, users and audit events).
//! The TOTP secrets live in the `user` items: whoever can read the table can read them.
//!
//! # Exactly once across brokers
//!
//! [`Store::write`] is optimistic. The closure runs against a buffering transaction that reads
//! with strongly consistent reads and remembers the version of every item it read; the commit
//! is one TransactWriteItems in which each request or user put is conditioned on the version
//! read (or on the item's absence), each audit event on its seq being free, and the chain-head
//! item on the revision read when the attempt began. Every writing transaction moves the head,
//! so a commit lands only if no other commit landed since the attempt began: commits are
//! serialisable and the audit chain stays one line. When DynamoDB cancels the commit the
//! closure runs again from scratch on fresh reads, with jittered backoff, at most
//! [`MAX_ATTEMPTS`] times. A transaction that only read commits nothing. Each commit carries a
//! fresh client request token, so the SDK's own retry of a commit whose answer was lost is not
//! applied twice. Writers inside one process take turns (only one could commit anyway), so
//! races are between brokers, not between one broker's threads.
//!
//! # Sync over async
//!
//! The SDK is async and [`Store`] is not. A dedicated thread runs a small tokio runtime that
//! executes each call sent to it over a channel while the caller waits on a plain channel: this
//! works from plain threads, `spawn_blocking` threads and async tasks alike (where
//! `Runtime::block_on` would panic; an async caller blocks its worker for the call, so async
//! code should still go through `spawn_blocking`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TableStatus, TransactWriteItem,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, UserRecord, WriteTx};
use crate::audit::{Event, NewEvent};
use crate::mfa::MfaState;
use crate::policy::Role;
use crate::request::{Request, State};

/// How many times [`Store::write`] runs its closure before giving up on a contended table.
pub const MAX_ATTEMPTS: u32 = 100;
/// DynamoDB's limit on the items of one TransactWriteItems.
pub const MAX_TRANSACTION_ITEMS: usize = 100;
/// How long `init` waits for a new table to become ACTIVE.
const INIT_TIMEOUT: Duration = Duration::from_secs(300);

mod bridge;
mod codec;
mod table;
mod transaction;

pub use bridge::AwsSelect;
use bridge::*;
use codec::*;
use table::*;
use transaction::*;

/// What `init` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InitOutcome {
    /// The table.
    pub table: String,
    /// True when this call created it (false: it existed with the right schema).
    pub created: bool,
    /// Its status at the end (`ACTIVE`).
    pub status: String,
}

/// The DynamoDB store.
pub struct DynamoStore {
    table: String,
    bridge: Bridge,
    /// Writers in this process take turns: only one of them could commit anyway (every write
    /// moves the head), and racing each other would only burn attempts.
    writing: Turns,
}

/// True for names DynamoDB accepts: 3 to 255 of letters, digits, `_`, `-`, `.`.
pub fn valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn sdk_err<E, R>(op: &'static str, table: &str, e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if e.as_service_error().and_then(|s| s.code()) == Some("ResourceNotFoundException") {
        return StoreError::NoTable {
            table: table.to_string(),
        };
    }
    StoreError::Dynamo {
        op,
        message: DisplayErrorContext(&e).to_string(),
    }
}

impl Store for DynamoStore {
    fn write<T>(
        &self,
        mut f: impl FnMut(&mut dyn WriteTx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _turn = self.writing.take();
        for attempt in 1..=MAX_ATTEMPTS {
            let mut tx = DynTx {
                store: self,
                head: self.head()?,
                read: HashMap::new(),
                requests: BTreeMap::new(),
                users: BTreeMap::new(),
                read_users: BTreeMap::new(),
                listed_users: false,
                events: Vec::new(),
                outbox: Vec::new(),
                outbox_removed: Vec::new(),
            };
            let out = f(&mut tx)?;
            if !tx.dirty() {
                return Ok(out);
            }
            let items = tx.items()?;
            if items.len() > MAX_TRANSACTION_ITEMS {
                return Err(StoreError::TooLarge { items: items.len() });
            }
            // Where the audit puts sit in the commit: just before the head, the last item.
            let audit = tx.events.first().map(|e| (e.seq, tx.events.len()));
            match self.commit(items, audit)? {
                Commit::Landed => return Ok(out),
                Commit::Lost => {
                    tracing::debug!(attempt, table = %self.table, "another broker committed first; retrying");
                    backoff(attempt);
                }
            }
        }
        Err(StoreError::Contended {
            attempts: MAX_ATTEMPTS,
        })
    }

    fn request(&self, id: &str) -> Result<Option<Request>, StoreError> {
        self.get(REQUEST, id)?
            .map(|item| decode_request(&item).map(|(r, _)| r))
            .transpose()
    }

    fn requests(&self, state: Option<State>) -> Result<Vec<Request>, StoreError> {
        let q = match state {
            Some(st) => Query::in_states(REQUEST, &[st]),
            None => Query::all(REQUEST),
        };
        let mut all = self
            .query(q)?
            .iter()
            .map(|item| decode_request(item).map(|(r, _)| r))
            .collect::<Result<Vec<_>, _>>()?;
        // Newest first, as the SQLite store lists them.
        all.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(all)
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.query(Query::all(USER))?
            .iter()
            .map(|item| decode_user(item).map(|(u, _)| u))
            .collect()
    }

    fn audit_events(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let q = Query {
            after: Some(audit_sk(after)),
            limit: Some(limit),
            ..Query::all(AUDIT)
        };
        self.query(q)?.iter().map(decode_event).collect()
    }

    fn audit_for_request(&self, id: &str) -> Result<Vec<Event>, StoreError> {
        let q = Query {
            filter: Some((
                "request_id = :rid".into(),
                Vec::new(),
                vec![(":rid".into(), s(id))],
            )),
            ..Query::all(AUDIT)
        };
        self.query(q)?.iter().map(decode_event).collect()
    }

    fn audit_all(&self) -> Result<(Vec<Event>, u64), StoreError> {
        // The events and the head's count must describe one moment: read the head before and
        // after the events and try again if a commit landed in between.
        for attempt in 1..=MAX_ATTEMPTS {
            let before = self.head()?;
            let events = self
                .query(Query::all(AUDIT))?
                .iter()
                .map(decode_event)
                .collect::<Result<Vec<_>, _>>()?;
            let after = self.head()?;
            if before.rev == after.rev {
                return Ok((events, after.seq));
            }
            backoff(attempt);
        }
        Err(StoreError::Contended {
            attempts: MAX_ATTEMPTS,
        })
    }

    fn revision(&self) -> Result<u64, StoreError> {
        Ok(self.head()?.rev)
    }

    fn outbox_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<crate::store::outbox_item::OutboxItem>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let q = Query {
            filter: Some((
                "next_at <= :now".into(),
                Vec::new(),
                vec![(":now".into(), s(crate::store::outbox_item::sortable(now)))],
            )),
            limit: Some(limit),
            ..Query::all(OUTBOX)
        };
        self.query(q)?
            .iter()
            .map(|item| from_json(get_s(item, "body")?))
            .collect()
    }

    fn outbox_update(
        &self,
        item: &crate::store::outbox_item::OutboxItem,
        expect: u32,
    ) -> Result<bool, StoreError> {
        let (c, table) = (self.bridge.client.clone(), self.table.clone());
        let put = outbox_item(item)?;
        self.bridge.run(async move {
            let out = c
                .put_item()
                .table_name(&table)
                .set_item(Some(put))
                .condition_expression("attempts = :expect")
                .expression_attribute_values(":expect", n(u64::from(expect)))
                .send()
                .await;
            match out {
                Ok(_) => Ok(true),
                Err(e)
                    if e.as_service_error().and_then(|s| s.code())
                        == Some("ConditionalCheckFailedException") =>
                {
                    Ok(false)
                }
                Err(e) => Err(sdk_err("PutItem", &table, e)),
            }
        })
    }

    fn outbox_done(&self, id: &str) -> Result<(), StoreError> {
        let (c, table, id) = (
            self.bridge.client.clone(),
            self.table.clone(),
            id.to_string(),
        );
        self.bridge.run(async move {
            c.delete_item()
                .table_name(&table)
                .set_key(Some(key(OUTBOX, &id)))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_err("DeleteItem", &table, e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::EventKind;
    use serde_json::json;

    #[test]
    fn users_keep_their_secret_in_its_own_attribute() {
        let u = UserRecord {
            name: "ann".into(),
            roles: [Role::Approver, Role::Requester].into(),
            secret_base32: "JBSWY3DPEHPK3PXP".into(),
            enrolled_at: Utc::now(),
            confirmed_at: Some(Utc::now()),
            mfa: MfaState {
                last_step: Some(7),
                failures: 1,
                locked_until: None,
            },
        };
        let item = user_item(&u, 4).unwrap();
        assert!(!get_s(&item, "body").unwrap().contains("JBSWY3DPEHPK3PXP"));
        assert_eq!(decode_user(&item).unwrap(), (u, 4));
    }

    #[test]
    fn events_round_trip_and_sort_by_seq() {
        let e = Event::chain(
            Some((41, "ab")),
            NewEvent::new(
                "a",
                EventKind::Tainted,
                Some("req-00000001"),
                json!({"x": [1, 2.5]}),
            ),
            Utc::now(),
        );
        let item = event_item(&e).unwrap();
        assert_eq!(get_s(&item, "sk").unwrap(), "00000000000000000042");
        assert_eq!(get_s(&item, "request_id").unwrap(), "req-00000001");
        assert_eq!(decode_event(&item).unwrap(), e);
        assert!(audit_sk(9) < audit_sk(10));
    }

    #[test]
    fn damaged_items_are_corrupt_not_panics() {
        let mut item = key(USER, "ann");
        item.insert("ver".into(), s("x"));
        assert!(matches!(decode_user(&item), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            Head::decode(Some(key(HEAD, HEAD))),
            Err(StoreError::Corrupt(_))
        ));
        let fresh = Head::decode(None).unwrap();
        assert!(!fresh.exists && fresh.seq == 0 && fresh.rev == 0);
    }

    #[test]
    fn turns_go_in_arrival_order() {
        let turns = std::sync::Arc::new(Turns::default());
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let first = turns.take();
        let waiting: Vec<_> = (0..4)
            .map(|i| {
                let (mine, order) = (turns.clone(), order.clone());
                let h = std::thread::spawn(move || {
                    let _t = mine.take();
                    order.lock().unwrap().push(i);
                });
                // Each thread holds its ticket before the next one starts.
                while turns.lock().0 != i + 2 {
                    std::thread::yield_now();
                }
                h
            })
            .collect();
        drop(first);
        for h in waiting {
            h.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn table_names_follow_dynamodb_rules() {
        assert!(valid_table_name("pink-sombrero"));
        assert!(valid_table_name("a.b_c-1"));
        assert!(!valid_table_name("ab"));
        assert!(!valid_table_name("a b c"));
        assert!(!valid_table_name(&"a".repeat(256)));
    }
}
