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

const HEAD: &str = "head";
const REQUEST: &str = "request";
const USER: &str = "user";
const AUDIT: &str = "audit";
const OUTBOX: &str = "outbox";

type Item = HashMap<String, AttributeValue>;
type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs SDK futures on a runtime of its own, on its own thread.
struct Bridge {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    client: Client,
}

/// Which AWS profile and region reach the table (`--profile`, `--region`); unset parts come
/// from the usual chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSelect {
    /// The named profile.
    pub profile: Option<String>,
    /// The region.
    pub region: Option<String>,
}

impl Bridge {
    fn start(aws: AwsSelect) -> Result<Bridge, StoreError> {
        let (jobs, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("sombrero-dynamodb".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    // A hung endpoint must not hang a broker thread for ever.
                    let timeouts = TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(5))
                        .operation_timeout(Duration::from_secs(30))
                        .build();
                    let mut loader =
                        aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
                    if let Some(p) = aws.profile {
                        loader = loader.profile_name(p);
                    }
                    if let Some(r) = aws.region {
                        loader = loader.region(aws_config::Region::new(r));
                    }
                    let cfg = loader.load().await;
                    let _ = ready_tx.send(Ok(Client::new(&cfg)));
                    // Ends when the store (the only sender) is dropped.
                    while let Some(job) = rx.recv().await {
                        tokio::spawn(job);
                    }
                });
            })
            .map_err(|e| StoreError::Bridge(e.to_string()))?;
        let client = ready_rx
            .recv()
            .map_err(|e| StoreError::Bridge(e.to_string()))?
            .map_err(StoreError::Bridge)?;
        Ok(Bridge { jobs, client })
    }

    /// Runs `fut` on the bridge's runtime and waits for its result.
    fn run<T, F>(&self, fut: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.jobs
            .send(Box::pin(async move {
                let _ = tx.send(fut.await);
            }))
            .map_err(|_| StoreError::Bridge("it has exited".into()))?;
        rx.recv()
            .map_err(|_| StoreError::Bridge("a call was dropped unanswered".into()))?
    }
}

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

/// A first-come, first-served lock: writers go in arrival order, so none starves behind
/// luckier threads (`std::sync::Mutex` promises no order).
#[derive(Default)]
struct Turns {
    /// (next ticket to hand out, ticket being served)
    tickets: Mutex<(u64, u64)>,
    served: Condvar,
}

/// Holding a turn; dropping it (also when unwinding) lets the next writer in.
struct Turn<'a>(&'a Turns);

impl Turns {
    fn lock(&self) -> MutexGuard<'_, (u64, u64)> {
        // A poisoned lock only means a thread panicked while counting; the counts are whole.
        self.tickets.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self) -> Turn<'_> {
        let mut t = self.lock();
        let mine = t.0;
        t.0 += 1;
        while t.1 != mine {
            t = self.served.wait(t).unwrap_or_else(|p| p.into_inner());
        }
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.lock().1 += 1;
        self.0.served.notify_all();
    }
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

// ---- items ----

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(pk: &str, sk: &str) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(StoreError::Corrupt(format!(
            "DynamoDB item without the string attribute {name}"
        ))),
    }
}

fn get_n(item: &Item, name: &str) -> Result<u64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("attribute {name} is not a count: {v:?}"))),
        _ => Err(StoreError::Corrupt(format!(
            "DynamoDB item without the number attribute {name}"
        ))),
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(v: &str) -> Result<T, StoreError> {
    serde_json::from_str(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn audit_sk(seq: u64) -> String {
    format!("{seq:020}")
}

/// The audit chain's end and the write counter.
#[derive(Debug, Clone, Default)]
struct Head {
    /// False until the first write created the item.
    exists: bool,
    seq: u64,
    hash: String,
    rev: u64,
}

impl Head {
    fn decode(item: Option<Item>) -> Result<Head, StoreError> {
        let Some(item) = item else {
            return Ok(Head::default());
        };
        Ok(Head {
            exists: true,
            seq: get_n(&item, "seq")?,
            hash: get_s(&item, "hash")?.to_string(),
            rev: get_n(&item, "rev")?,
        })
    }
}

fn request_item(r: &Request, ver: u64) -> Result<Item, StoreError> {
    let mut item = key(REQUEST, &r.id);
    item.insert("body".into(), s(to_json(r)?));
    item.insert("state".into(), s(r.state.as_str()));
    item.insert("ver".into(), n(ver));
    Ok(item)
}

fn decode_request(item: &Item) -> Result<(Request, u64), StoreError> {
    Ok((from_json(get_s(item, "body")?)?, get_n(item, "ver")?))
}

/// A user item's body: everything but the name (the key) and the secret (its own attribute).
#[derive(Serialize, Deserialize)]
struct UserBody {
    roles: BTreeSet<Role>,
    enrolled_at: DateTime<Utc>,
    confirmed_at: Option<DateTime<Utc>>,
    mfa: MfaState,
}

fn user_item(u: &UserRecord, ver: u64) -> Result<Item, StoreError> {
    let body = UserBody {
        roles: u.roles.clone(),
        enrolled_at: u.enrolled_at,
        confirmed_at: u.confirmed_at,
        mfa: u.mfa.clone(),
    };
    let mut item = key(USER, &u.name);
    item.insert("body".into(), s(to_json(&body)?));
    item.insert("secret".into(), s(&u.secret_base32));
    item.insert("ver".into(), n(ver));
    Ok(item)
}

fn decode_user(item: &Item) -> Result<(UserRecord, u64), StoreError> {
    let body: UserBody = from_json(get_s(item, "body")?)?;
    let user = UserRecord {
        name: get_s(item, "sk")?.to_string(),
        roles: body.roles,
        secret_base32: get_s(item, "secret")?.to_string(),
        enrolled_at: body.enrolled_at,
        confirmed_at: body.confirmed_at,
        mfa: body.mfa,
    };
    Ok((user, get_n(item, "ver")?))
}

fn event_item(e: &Event) -> Result<Item, StoreError> {
    let mut item = key(AUDIT, &audit_sk(e.seq));
    item.insert("event".into(), s(to_json(e)?));
    if let Some(id) = &e.request_id {
        item.insert("request_id".into(), s(id));
    }
    Ok(item)
}

fn decode_event(item: &Item) -> Result<Event, StoreError> {
    let sk = get_s(item, "sk")?;
    from_json(get_s(item, "event")?).map_err(|e| match e {
        StoreError::Corrupt(m) => StoreError::Corrupt(format!("audit event {sk}: {m}")),
        other => other,
    })
}

fn outbox_item(o: &crate::notify::OutboxItem) -> Result<Item, StoreError> {
    let mut item = key(OUTBOX, &o.id);
    item.insert("body".into(), s(to_json(o)?));
    item.insert(
        "next_at".into(),
        s(crate::notify::outbox::sortable(o.next_at)),
    );
    item.insert("attempts".into(), n(u64::from(o.attempts)));
    Ok(item)
}

/// A filter expression with its attribute names and values.
type Filter = (
    String,
    Vec<(&'static str, &'static str)>,
    Vec<(String, AttributeValue)>,
);

/// One Query over a partition.
struct Query {
    pk: &'static str,
    /// Only sort keys after this one.
    after: Option<String>,
    filter: Option<Filter>,
    limit: Option<usize>,
}

impl Query {
    fn all(pk: &'static str) -> Query {
        Query {
            pk,
            after: None,
            filter: None,
            limit: None,
        }
    }

    fn in_states(pk: &'static str, states: &[State]) -> Query {
        let values: Vec<(String, AttributeValue)> = states
            .iter()
            .enumerate()
            .map(|(i, st)| (format!(":s{i}"), s(st.as_str())))
            .collect();
        let names: Vec<&str> = values.iter().map(|(k, _)| k.as_str()).collect();
        let expr = format!("#st IN ({})", names.join(", "));
        Query {
            filter: Some((expr, vec![("#st", "state")], values)),
            ..Query::all(pk)
        }
    }
}

/// Why a commit did not land.
enum Commit {
    Landed,
    /// Another writer got there first: run the transaction again.
    Lost,
}

impl DynamoStore {
    /// A store over `table` (region, endpoint and credentials from the usual AWS chain,
    /// `AWS_ENDPOINT_URL_DYNAMODB` included). The table must exist (`init` creates it);
    /// a missing one shows as [`StoreError::NoTable`] on first use.
    pub fn open(table: &str) -> Result<DynamoStore, StoreError> {
        DynamoStore::open_with(table, AwsSelect::default())
    }

    /// [`DynamoStore::open`] through the profile and region `aws` names.
    pub fn open_with(table: &str, aws: AwsSelect) -> Result<DynamoStore, StoreError> {
        if !valid_table_name(table) {
            return Err(StoreError::BadSpec(format!("dynamodb:{table}")));
        }
        Ok(DynamoStore {
            table: table.to_string(),
            bridge: Bridge::start(aws)?,
            writing: Turns::default(),
        })
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table (on-demand billing) unless it exists, and waits until it is ACTIVE,
    /// telling `progress` what it waits for. An existing table with another key schema is
    /// [`StoreError::WrongSchema`].
    pub fn init(&self, progress: &mut dyn FnMut(&str)) -> Result<InitOutcome, StoreError> {
        let mut created = false;
        let mut status = match self.describe()? {
            Some(status) => status,
            None => {
                progress(&format!("creating DynamoDB table {}", self.table));
                self.create()?;
                created = true;
                TableStatus::Creating
            }
        };
        let started = std::time::Instant::now();
        while status != TableStatus::Active {
            if started.elapsed() > INIT_TIMEOUT {
                return Err(StoreError::Dynamo {
                    op: "DescribeTable",
                    message: format!(
                        "table {} is still {} after {}s",
                        self.table,
                        status.as_str(),
                        INIT_TIMEOUT.as_secs()
                    ),
                });
            }
            progress(&format!(
                "waiting for table {} to become ACTIVE (now {})",
                self.table,
                status.as_str()
            ));
            std::thread::sleep(Duration::from_secs(1));
            status = self.describe()?.ok_or_else(|| StoreError::NoTable {
                table: self.table.clone(),
            })?;
        }
        Ok(InitOutcome {
            table: self.table.clone(),
            created,
            status: status.as_str().to_string(),
        })
    }

    /// The table's status, `None` when it does not exist; checks its key schema.
    fn describe(&self) -> Result<Option<TableStatus>, StoreError> {
        let (c, table) = (self.bridge.client.clone(), self.table.clone());
        self.bridge.run(async move {
            let out = match c.describe_table().table_name(&table).send().await {
                Ok(out) => out,
                Err(e) => {
                    return match sdk_err("DescribeTable", &table, e) {
                        StoreError::NoTable { .. } => Ok(None),
                        other => Err(other),
                    };
                }
            };
            let Some(desc) = out.table else {
                return Ok(None);
            };
            let mut keys: Vec<String> = desc
                .key_schema()
                .iter()
                .map(|k| format!("{} {}", k.attribute_name(), k.key_type().as_str()))
                .collect();
            keys.sort();
            let types: BTreeMap<&str, &str> = desc
                .attribute_definitions()
                .iter()
                .map(|a| (a.attribute_name(), a.attribute_type().as_str()))
                .collect();
            let right = keys == ["pk HASH", "sk RANGE"]
                && types.get("pk") == Some(&"S")
                && types.get("sk") == Some(&"S");
            if !right {
                return Err(StoreError::WrongSchema {
                    table,
                    found: format!("[{}] with types {types:?}", keys.join(", ")),
                });
            }
            Ok(Some(
                desc.table_status()
                    .cloned()
                    .unwrap_or(TableStatus::Creating),
            ))
        })
    }

    fn create(&self) -> Result<(), StoreError> {
        let (c, table) = (self.bridge.client.clone(), self.table.clone());
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Dynamo {
            op: "CreateTable",
            message: e.to_string(),
        };
        let keys = [("pk", KeyType::Hash), ("sk", KeyType::Range)];
        let mut schema = Vec::new();
        let mut attrs = Vec::new();
        for (name, kind) in keys {
            schema.push(
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kind)
                    .build()
                    .map_err(build)?,
            );
            attrs.push(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            );
        }
        self.bridge.run(async move {
            match c
                .create_table()
                .table_name(&table)
                .billing_mode(BillingMode::PayPerRequest)
                .set_key_schema(Some(schema))
                .set_attribute_definitions(Some(attrs))
                .send()
                .await
            {
                Ok(_) => Ok(()),
                // Another `init` won the race; the status loop checks what it made.
                Err(e)
                    if e.as_service_error().and_then(|s| s.code())
                        == Some("ResourceInUseException") =>
                {
                    Ok(())
                }
                Err(e) => Err(sdk_err("CreateTable", &table, e)),
            }
        })
    }

    fn get(&self, pk: &'static str, sk: &str) -> Result<Option<Item>, StoreError> {
        let (c, table, sk) = (
            self.bridge.client.clone(),
            self.table.clone(),
            sk.to_string(),
        );
        self.bridge.run(async move {
            c.get_item()
                .table_name(&table)
                .set_key(Some(key(pk, &sk)))
                .consistent_read(true)
                .send()
                .await
                .map(|o| o.item)
                .map_err(|e| sdk_err("GetItem", &table, e))
        })
    }

    fn query(&self, q: Query) -> Result<Vec<Item>, StoreError> {
        let (c, table) = (self.bridge.client.clone(), self.table.clone());
        self.bridge.run(async move {
            let mut out = Vec::new();
            let mut start: Option<Item> = None;
            loop {
                let mut req = c
                    .query()
                    .table_name(&table)
                    .consistent_read(true)
                    .expression_attribute_values(":pk", s(q.pk))
                    .set_exclusive_start_key(start.take());
                req = match &q.after {
                    Some(after) => req
                        .key_condition_expression("pk = :pk AND sk > :after")
                        .expression_attribute_values(":after", s(after)),
                    None => req.key_condition_expression("pk = :pk"),
                };
                if let Some((expr, names, values)) = &q.filter {
                    req = req.filter_expression(expr);
                    for (k, v) in names {
                        req = req.expression_attribute_names(*k, *v);
                    }
                    for (k, v) in values {
                        req = req.expression_attribute_values(k, v.clone());
                    }
                }
                let page = req.send().await.map_err(|e| sdk_err("Query", &table, e))?;
                out.extend(page.items.unwrap_or_default());
                if let Some(limit) = q.limit
                    && out.len() >= limit
                {
                    out.truncate(limit);
                    break;
                }
                match page.last_evaluated_key {
                    Some(k) if !k.is_empty() => start = Some(k),
                    _ => break,
                }
            }
            Ok(out)
        })
    }

    /// The audit chain's last event `(seq, hash)` as the head item says, `None` while empty.
    pub fn audit_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        let h = self.head()?;
        Ok((h.seq > 0).then_some((h.seq, h.hash)))
    }

    fn head(&self) -> Result<Head, StoreError> {
        Head::decode(self.get(HEAD, HEAD)?)
    }

    /// Commits `items`; `audit` is the first audit seq and the number of audit puts, which
    /// come right before the head (the last item).
    fn commit(
        &self,
        items: Vec<TransactWriteItem>,
        audit: Option<(u64, usize)>,
    ) -> Result<Commit, StoreError> {
        let (c, table) = (self.bridge.client.clone(), self.table.clone());
        self.bridge.run(async move {
            // The token makes the SDK's own retries idempotent: a commit that landed but whose
            // answer was lost is not applied twice, nor mistaken for a lost race.
            let err = match c
                .transact_write_items()
                .client_request_token(uuid::Uuid::new_v4().to_string())
                .set_transact_items(Some(items))
                .send()
                .await
            {
                Ok(_) => return Ok(Commit::Landed),
                Err(e) => e,
            };
            if let Some(TransactWriteItemsError::TransactionCanceledException(t)) =
                err.as_service_error()
            {
                let codes: Vec<&str> = t
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code().unwrap_or("None"))
                    .collect();
                // Lost a race: a condition on what we read no longer holds, or DynamoDB saw
                // a concurrent transaction on the same items.
                let raced =
                    |c: &&str| matches!(*c, "ConditionalCheckFailed" | "TransactionConflict");
                // The head still stood as read, yet an audit seq was taken: not a race but a
                // head moved back behind the chain. Never retry into overwriting it.
                if let (Some((first, n)), Some((head, rest))) = (audit, codes.split_last())
                    && *head == "None"
                    && let Some(i) = rest[rest.len().saturating_sub(n)..]
                        .iter()
                        .position(|c| *c == "ConditionalCheckFailed")
                {
                    return Err(StoreError::AuditOverwrite {
                        seq: first + i as u64,
                    });
                }
                if codes.iter().any(raced) && codes.iter().all(|c| *c == "None" || raced(c)) {
                    return Ok(Commit::Lost);
                }
                return Err(StoreError::Dynamo {
                    op: "TransactWriteItems",
                    message: format!("transaction cancelled: {codes:?}"),
                });
            }
            Err(sdk_err("TransactWriteItems", &table, err))
        })
    }

    fn delete(&self, pk: &str, sk: &str) -> Result<TransactWriteItem, StoreError> {
        let d = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .build()
            .map_err(|e| StoreError::Dynamo {
                op: "TransactWriteItems",
                message: e.to_string(),
            })?;
        Ok(TransactWriteItem::builder().delete(d).build())
    }

    /// How many items a partition holds (a COUNT query, paged).
    fn count(&self, pk: &'static str) -> Result<usize, StoreError> {
        let (c, table) = (self.bridge.client.clone(), self.table.clone());
        self.bridge.run(async move {
            let mut total = 0usize;
            let mut start: Option<Item> = None;
            loop {
                let page = c
                    .query()
                    .table_name(&table)
                    .consistent_read(true)
                    .select(aws_sdk_dynamodb::types::Select::Count)
                    .key_condition_expression("pk = :pk")
                    .expression_attribute_values(":pk", s(pk))
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| sdk_err("Query", &table, e))?;
                total += page.count.max(0) as usize;
                match page.last_evaluated_key {
                    Some(k) if !k.is_empty() => start = Some(k),
                    _ => return Ok(total),
                }
            }
        })
    }

    fn put(&self, item: Item, cond: Cond) -> Result<TransactWriteItem, StoreError> {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        put = match cond {
            Cond::Absent => put.condition_expression("attribute_not_exists(pk)"),
            Cond::Equals(attr, v) => put
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", attr)
                .expression_attribute_values(":v", n(v)),
        };
        let put = put.build().map_err(|e| StoreError::Dynamo {
            op: "TransactWriteItems",
            message: e.to_string(),
        })?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

/// What a put requires of the item it replaces.
enum Cond {
    Absent,
    Equals(&'static str, u64),
}

/// Sleeps a random time up to an exponentially growing cap (full jitter), so contenders
/// spread out instead of colliding again.
fn backoff(attempt: u32) {
    let cap_ms = (10u64 << attempt.min(7)).min(1000);
    std::thread::sleep(Duration::from_millis(rand::random_range(0..=cap_ms)));
}

/// The buffering transaction of one attempt.
struct DynTx<'a> {
    store: &'a DynamoStore,
    head: Head,
    /// Version of every request or user read (`None`: it did not exist), by (pk, sk).
    read: HashMap<(&'static str, String), Option<u64>>,
    requests: BTreeMap<String, Request>,
    users: BTreeMap<String, UserRecord>,
    /// Users as read earlier in this attempt (`None`: absent), so `user` needs no second read
    /// (if one changed since, the head moved and the commit fails anyway).
    read_users: BTreeMap<String, Option<UserRecord>>,
    /// Whether `users` listed them all (a name not in `read_users` is then absent).
    listed_users: bool,
    events: Vec<Event>,
    /// Notifications queued by this attempt, and ids removed.
    outbox: Vec<crate::notify::OutboxItem>,
    outbox_removed: Vec<String>,
}

impl DynTx<'_> {
    fn note(&mut self, pk: &'static str, sk: &str, ver: Option<u64>) {
        // The first read counts: if the item moved since, the head moved too.
        self.read.entry((pk, sk.to_string())).or_insert(ver);
    }

    /// Makes sure the item's version is known before a put replaces it.
    fn read_before_put(&mut self, pk: &'static str, sk: &str) -> Result<(), StoreError> {
        if self.read.contains_key(&(pk, sk.to_string())) {
            return Ok(());
        }
        let ver = match self.store.get(pk, sk)? {
            Some(item) => Some(get_n(&item, "ver")?),
            None => None,
        };
        self.note(pk, sk, ver);
        Ok(())
    }

    fn dirty(&self) -> bool {
        !(self.requests.is_empty()
            && self.users.is_empty()
            && self.events.is_empty()
            && self.outbox.is_empty()
            && self.outbox_removed.is_empty())
    }

    fn cond(&self, pk: &'static str, sk: &str) -> (Cond, u64) {
        match self.read.get(&(pk, sk.to_string())).copied().flatten() {
            Some(v) => (Cond::Equals("ver", v), v + 1),
            None => (Cond::Absent, 1),
        }
    }

    /// The commit: every put with its condition, and the head.
    fn items(&self) -> Result<Vec<TransactWriteItem>, StoreError> {
        let mut items = Vec::new();
        for r in self.requests.values() {
            let (cond, ver) = self.cond(REQUEST, &r.id);
            items.push(self.store.put(request_item(r, ver)?, cond)?);
        }
        for u in self.users.values() {
            let (cond, ver) = self.cond(USER, &u.name);
            items.push(self.store.put(user_item(u, ver)?, cond)?);
        }
        // Before the audit puts: `commit` finds those just before the head.
        for o in &self.outbox {
            items.push(self.store.put(outbox_item(o)?, Cond::Absent)?);
        }
        for id in &self.outbox_removed {
            items.push(self.store.delete(OUTBOX, id)?);
        }
        for e in &self.events {
            items.push(self.store.put(event_item(e)?, Cond::Absent)?);
        }
        let (seq, hash) = match self.events.last() {
            Some(e) => (e.seq, e.hash.clone()),
            None => (self.head.seq, self.head.hash.clone()),
        };
        let mut head = key(HEAD, HEAD);
        head.insert("seq".into(), n(seq));
        head.insert("hash".into(), s(hash));
        head.insert("rev".into(), n(self.head.rev + 1));
        let cond = if self.head.exists {
            Cond::Equals("rev", self.head.rev)
        } else {
            Cond::Absent
        };
        items.push(self.store.put(head, cond)?);
        Ok(items)
    }
}

impl WriteTx for DynTx<'_> {
    fn request(&mut self, id: &str) -> Result<Option<Request>, StoreError> {
        if let Some(r) = self.requests.get(id) {
            return Ok(Some(r.clone()));
        }
        match self.store.get(REQUEST, id)? {
            Some(item) => {
                let (r, ver) = decode_request(&item)?;
                self.note(REQUEST, id, Some(ver));
                Ok(Some(r))
            }
            None => {
                self.note(REQUEST, id, None);
                Ok(None)
            }
        }
    }

    fn put_request(&mut self, r: &Request) -> Result<(), StoreError> {
        self.read_before_put(REQUEST, &r.id)?;
        self.requests.insert(r.id.clone(), r.clone());
        Ok(())
    }

    fn timed_requests(&mut self) -> Result<Vec<Request>, StoreError> {
        let timed = [
            State::Pending,
            State::Emergency,
            State::Approved,
            State::Active,
        ];
        let mut found = BTreeMap::new();
        for item in self.store.query(Query::in_states(REQUEST, &timed))? {
            let (r, ver) = decode_request(&item)?;
            self.note(REQUEST, &r.id, Some(ver));
            found.insert(r.id.clone(), r);
        }
        // This transaction's own writes win.
        for (id, r) in &self.requests {
            found.insert(id.clone(), r.clone());
        }
        Ok(found
            .into_values()
            .filter(|r| timed.contains(&r.state))
            .collect())
    }

    fn user(&mut self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        if let Some(u) = self.users.get(name) {
            return Ok(Some(u.clone()));
        }
        if let Some(u) = self.read_users.get(name) {
            return Ok(u.clone());
        }
        // Listed already: not among them, so absent.
        let item = match self.listed_users {
            true => None,
            false => self.store.get(USER, name)?,
        };
        let found = match item {
            Some(item) => {
                let (u, ver) = decode_user(&item)?;
                self.note(USER, name, Some(ver));
                Some(u)
            }
            None => None,
        };
        if found.is_none() {
            self.note(USER, name, None);
        }
        self.read_users.insert(name.to_string(), found.clone());
        Ok(found)
    }

    fn users(&mut self) -> Result<Vec<UserRecord>, StoreError> {
        let mut found = BTreeMap::new();
        for item in self.store.query(Query::all(USER))? {
            let (u, ver) = decode_user(&item)?;
            self.note(USER, &u.name, Some(ver));
            found.insert(u.name.clone(), u);
        }
        self.read_users = found
            .iter()
            .map(|(name, u)| (name.clone(), Some(u.clone())))
            .collect();
        self.listed_users = true;
        for (name, u) in &self.users {
            found.insert(name.clone(), u.clone());
        }
        Ok(found.into_values().collect())
    }

    fn put_user(&mut self, u: &UserRecord) -> Result<(), StoreError> {
        self.read_before_put(USER, &u.name)?;
        self.users.insert(u.name.clone(), u.clone());
        Ok(())
    }

    fn append(&mut self, e: NewEvent, at: DateTime<Utc>) -> Result<Event, StoreError> {
        let prev = match self.events.last() {
            Some(last) => Some((last.seq, last.hash.as_str())),
            None if self.head.seq > 0 => Some((self.head.seq, self.head.hash.as_str())),
            None => None,
        };
        let ev = Event::chain(prev, e, at);
        self.events.push(ev.clone());
        Ok(ev)
    }

    fn enqueue(&mut self, item: &crate::notify::OutboxItem) -> Result<(), StoreError> {
        self.outbox.push(item.clone());
        Ok(())
    }

    fn outbox_len(&mut self) -> Result<usize, StoreError> {
        Ok(self.store.count(OUTBOX)? + self.outbox.len())
    }

    fn outbox_remove(&mut self, id: &str) -> Result<(), StoreError> {
        self.outbox.retain(|o| o.id != id);
        self.outbox_removed.push(id.to_string());
        Ok(())
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
    ) -> Result<Vec<crate::notify::OutboxItem>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let q = Query {
            filter: Some((
                "next_at <= :now".into(),
                Vec::new(),
                vec![(":now".into(), s(crate::notify::outbox::sortable(now)))],
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
        item: &crate::notify::OutboxItem,
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
