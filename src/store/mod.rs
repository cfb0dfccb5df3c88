//! Persistent state: requests, users (with TOTP secrets and MFA state) and the audit chain.
//!
//! [`Store::write`] runs a closure in one exclusive transaction: everything it reads and writes
//! (request, user, audit events) commits together or not at all, so racing processes see each
//! other's changes whole. [`sqlite::SqliteStore`] is the embedded implementation,
//! [`dynamo::DynamoStore`] the team one (several brokers on one DynamoDB table), and
//! [`any::AnyStore`] picks one from a [`any::StoreSpec`] (`sqlite` or `dynamodb:TABLE`).

pub mod any;
pub mod dynamo;
pub mod outbox_item;
pub mod sqlite;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::audit::{Event, NewEvent};
use crate::mfa::MfaState;
use crate::policy::Role;
use crate::request::{Request, State};
use outbox_item::OutboxItem;

/// Storage failures (not rule refusals).
#[derive(Debug, Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("database error: {0}; check that the data dir is writable and not on a network share")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored row could not be decoded.
    #[error("stored data is damaged ({0}); run `sombrero audit verify` and restore from a backup")]
    Corrupt(String),
    /// The database was written by a newer sombrero.
    #[error(
        "the database schema is version {found}, newer than this sombrero understands ({known}); upgrade sombrero"
    )]
    TooNew {
        /// Version found.
        found: i64,
        /// Latest version known.
        known: i64,
    },
    /// A DynamoDB call failed.
    #[error(
        "DynamoDB {op} failed: {message}; check the region, the endpoint (AWS_ENDPOINT_URL_DYNAMODB), the credentials and that the role may use the table"
    )]
    Dynamo {
        /// The operation.
        op: &'static str,
        /// What the SDK said.
        message: String,
    },
    /// The DynamoDB table does not exist.
    #[error(
        "DynamoDB table {table:?} does not exist; create it with `sombrero store init --table {table}`"
    )]
    NoTable {
        /// The table name.
        table: String,
    },
    /// The table exists with a key schema sombrero cannot use.
    #[error(
        "DynamoDB table {table:?} has the key schema {found}, not sombrero's (pk string hash key, sk string range key); pick another table name or delete that table"
    )]
    WrongSchema {
        /// The table name.
        table: String,
        /// The schema found.
        found: String,
    },
    /// Other brokers kept committing first.
    #[error(
        "gave up after {attempts} attempts: other brokers kept changing the store at the same moment; try the command again"
    )]
    Contended {
        /// Attempts made.
        attempts: u32,
    },
    /// One transaction would write more items than DynamoDB allows.
    #[error(
        "one change would write {items} DynamoDB items, more than the 100 a transaction may hold; do it in smaller steps"
    )]
    TooLarge {
        /// Items it would write.
        items: usize,
    },
    /// The store spec is not understood.
    #[error("store {0:?} is not understood: use `sqlite` or `dynamodb:TABLE`")]
    BadSpec(String),
    /// The database file is not private and cannot be made so.
    #[error(transparent)]
    Private(#[from] crate::private_fs::PrivateError),
    /// DynamoDB refused to overwrite an existing audit item (`attribute_not_exists`).
    #[error(
        "DynamoDB refused to overwrite audit event {seq}: it exists although the chain head says the chain ends before it (the head item was moved back); nothing was written; run `sombrero audit verify` and investigate"
    )]
    AuditOverwrite {
        /// The seq that was already taken.
        seq: u64,
    },
    /// The audit checkpoint key or file cannot be used.
    #[error("{0}; check the keys dir of the data dir")]
    Checkpoint(String),
    /// The thread that drives the DynamoDB client is gone.
    #[error("the DynamoDB client thread stopped ({0}); restart sombrero")]
    Bridge(String),
}

/// An enrolled user as stored (the secret never leaves the store except to verify codes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Name.
    pub name: String,
    /// Roles enrolled with.
    pub roles: BTreeSet<Role>,
    /// TOTP secret, base32. Never logged or printed after enrolment.
    #[serde(skip_serializing)]
    pub secret_base32: String,
    /// When enrolled.
    pub enrolled_at: DateTime<Utc>,
    /// When the first code was confirmed, if it was.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// Replay and lockout state.
    pub mfa: MfaState,
}

/// Implements every [`WriteTx`] method but `append` by handing it to the wrapped
/// transaction `self.tx` (for wrappers that only watch what is appended).
macro_rules! forward_write_tx {
    () => {
        fn request(
            &mut self,
            id: &str,
        ) -> Result<Option<crate::request::Request>, crate::store::StoreError> {
            self.tx.request(id)
        }

        fn put_request(
            &mut self,
            r: &crate::request::Request,
        ) -> Result<(), crate::store::StoreError> {
            self.tx.put_request(r)
        }

        fn timed_requests(
            &mut self,
        ) -> Result<Vec<crate::request::Request>, crate::store::StoreError> {
            self.tx.timed_requests()
        }

        fn user(
            &mut self,
            name: &str,
        ) -> Result<Option<crate::store::UserRecord>, crate::store::StoreError> {
            self.tx.user(name)
        }

        fn users(&mut self) -> Result<Vec<crate::store::UserRecord>, crate::store::StoreError> {
            self.tx.users()
        }

        fn put_user(
            &mut self,
            u: &crate::store::UserRecord,
        ) -> Result<(), crate::store::StoreError> {
            self.tx.put_user(u)
        }

        fn enqueue(
            &mut self,
            item: &crate::store::outbox_item::OutboxItem,
        ) -> Result<(), crate::store::StoreError> {
            self.tx.enqueue(item)
        }

        fn outbox_len(&mut self) -> Result<usize, crate::store::StoreError> {
            self.tx.outbox_len()
        }

        fn outbox_remove(&mut self, id: &str) -> Result<(), crate::store::StoreError> {
            self.tx.outbox_remove(id)
        }
    };
}
pub(crate) use forward_write_tx;

/// Writes inside one transaction.
pub trait WriteTx {
    /// Reads a request.
    fn request(&mut self, id: &str) -> Result<Option<Request>, StoreError>;
    /// Inserts or replaces a request.
    fn put_request(&mut self, r: &Request) -> Result<(), StoreError>;
    /// Requests that may time out (Pending, Emergency, Approved, Active).
    fn timed_requests(&mut self) -> Result<Vec<Request>, StoreError>;
    /// Reads a user.
    fn user(&mut self, name: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Every user.
    fn users(&mut self) -> Result<Vec<UserRecord>, StoreError>;
    /// Inserts or replaces a user.
    fn put_user(&mut self, u: &UserRecord) -> Result<(), StoreError>;
    /// Chains and appends an audit event.
    fn append(&mut self, e: NewEvent, at: DateTime<Utc>) -> Result<Event, StoreError>;
    /// Queues a notification in this transaction ([`crate::outbox`]).
    fn enqueue(&mut self, item: &OutboxItem) -> Result<(), StoreError>;
    /// How many notifications wait in the outbox.
    fn outbox_len(&mut self) -> Result<usize, StoreError>;
    /// Removes a queued notification in this transaction (one given up, with its audit event).
    fn outbox_remove(&mut self, id: &str) -> Result<(), StoreError>;
}

/// A store of requests, users and audit events.
pub trait Store: Send + Sync {
    /// Runs `f` in one exclusive write transaction; commits when it returns `Ok`.
    /// Refusals that must still be audited are returned inside `T`. A store may run `f` more
    /// than once (an optimistic store retries when another writer committed first), so `f`
    /// must have no effects outside the transaction other than logging.
    fn write<T>(
        &self,
        f: impl FnMut(&mut dyn WriteTx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;
    /// One request.
    fn request(&self, id: &str) -> Result<Option<Request>, StoreError>;
    /// Requests, newest first, optionally only in one state.
    fn requests(&self, state: Option<State>) -> Result<Vec<Request>, StoreError>;
    /// Every user, by name.
    fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Audit events with `seq > after`, in stored order, at most `limit`.
    fn audit_events(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError>;
    /// Audit events concerning one request, in order.
    fn audit_for_request(&self, id: &str) -> Result<Vec<Event>, StoreError>;
    /// Every audit event in stored order and the count the store recorded alongside.
    fn audit_all(&self) -> Result<(Vec<Event>, u64), StoreError>;
    /// A counter bumped by every transaction that wrote something (cheap "did anything change"
    /// for UIs: poll it and reload when it moves).
    fn revision(&self) -> Result<u64, StoreError>;
    /// Queued notifications due at `now`, oldest first, at most `limit`.
    fn outbox_due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxItem>, StoreError>;
    /// Replaces a queued notification if its attempts still number `expect` (a worker's claim,
    /// or its next retry time); false when another worker moved it first or it is gone. Not a
    /// change the UIs poll for: the revision stays.
    fn outbox_update(&self, item: &OutboxItem, expect: u32) -> Result<bool, StoreError>;
    /// Deletes a delivered notification (a no-op when it is gone).
    fn outbox_done(&self, id: &str) -> Result<(), StoreError>;
}
