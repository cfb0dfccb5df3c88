//! The broker: the one place where state changes.
//!
//! Every operation is one store transaction: read the request and users, apply the lifecycle
//! ([`crate::request::apply`]; a refusal here spends no code), check the TOTP code, write the
//! request, append the audit events. Refusals and failed codes still commit, so every attempt
//! is audited.
//! The API is synchronous; async callers run it on a blocking thread.

mod audit_log;
mod clock;
mod error;
mod lifecycle;
mod policy_cache;
mod users;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::audit::{EventKind, NewEvent};
use crate::config::Paths;
use crate::policy::Policy;
use crate::store::any::{AnyStore, StoreSpec};
use crate::store::{Store, StoreError, WriteTx};
use crate::text::{self, Field};

pub use crate::audit::SYSTEM_ACTOR;
pub use audit_log::AuditCheck;
pub use clock::{Clock, SystemClock, TestClock};
pub use error::{BrokerError, Result};
pub use lifecycle::OpenGrant;
pub use users::UserInfo;

/// Options for [`Broker::open`].
#[derive(Clone, Default)]
pub struct BrokerOptions {
    /// Policy file (default: `policy.toml` in the data dir).
    pub policy_path: Option<PathBuf>,
    /// Clock (default: the system clock).
    pub clock: Option<Arc<dyn Clock>>,
}

/// The broker over its store (SQLite or DynamoDB).
pub struct Broker {
    store: AnyStore,
    policy_path: PathBuf,
    policy_created: bool,
    /// The policy file as last read, while it stays unchanged.
    policy_cache: policy_cache::PolicyCache,
    clock: Arc<dyn Clock>,
    /// Audited refusals per identity and minute ([`crate::refusals`]).
    refusals: crate::refusals::Budget,
}

/// Inside a transaction: an outcome to commit, whose value may still be a refusal.
type TxResult<T> = std::result::Result<Result<T>, StoreError>;

/// The input rule ([`text::validate_field`]) for each field, checked before anything is
/// audited, so a refused value is never stored.
fn check_fields(fields: &[(Field, &str)]) -> Result<()> {
    for (field, value) in fields {
        text::validate_field(*field, value)?;
    }
    Ok(())
}

impl Broker {
    /// Opens the data dir: creates it, the SQLite store and (first run only) the default
    /// policy file.
    pub fn open(paths: &Paths, opts: BrokerOptions) -> Result<Broker> {
        Broker::open_store(paths, opts, &StoreSpec::Sqlite)
    }

    /// Like [`Broker::open`] over the store `spec` names. The policy file and the recorder key
    /// stay in the data dir; users, their TOTP secrets, requests and the audit log live in the
    /// store.
    pub fn open_store(paths: &Paths, opts: BrokerOptions, spec: &StoreSpec) -> Result<Broker> {
        paths.ensure()?;
        let policy_path = opts.policy_path.unwrap_or_else(|| paths.policy());
        let (_, policy_created) = Policy::load_or_create(&policy_path)?;
        let store = spec.open(paths)?;
        let clock = opts.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let broker = Broker {
            store,
            policy_path,
            policy_created,
            policy_cache: Default::default(),
            clock,
            refusals: crate::refusals::Budget::default(),
        };
        if policy_created {
            tracing::info!(path = %broker.policy_path.display(), "wrote the default policy");
            broker.append(NewEvent::new(
                SYSTEM_ACTOR,
                EventKind::PolicyCreated,
                None,
                json!({"path": broker.policy_path.display().to_string()}),
            ))?;
        }
        Ok(broker)
    }

    /// One write transaction whose refusal events go through the audit budget and whose
    /// notifiable events queue their notifications in the same transaction.
    pub(crate) fn write_tx<T>(
        &self,
        mut f: impl FnMut(&mut dyn WriteTx) -> std::result::Result<T, StoreError>,
    ) -> std::result::Result<T, StoreError> {
        let targets = self.notify_targets();
        crate::refusals::budgeted_write(
            &self.refusals,
            |run| self.store.write(run),
            |tx| f(&mut crate::outbox::Notifying::new(tx, &targets)),
        )
    }

    /// The policy's `[[notify]]` targets; none while the policy cannot be read (the call that
    /// needs the policy reports that itself).
    fn notify_targets(&self) -> Vec<crate::policy::notify::NotifyTarget> {
        match self.policy() {
            Ok(p) => p.notify,
            Err(e) => {
                tracing::warn!(error = %e, "policy unreadable: no notifications queued");
                Vec::new()
            }
        }
    }

    /// The store (the notification worker reads and settles the outbox directly).
    pub(crate) fn store(&self) -> &AnyStore {
        &self.store
    }

    /// Records one summary event for each identity whose refusals went over the budget in a
    /// minute now over (every such minute when `all`: the daemon is stopping).
    pub fn record_suppressed(&self, all: bool) -> Result<usize> {
        let due = self.refusals.take(self.now(), all);
        for s in &due {
            tracing::warn!(
                actor = s.actor,
                suppressed = s.count,
                "refusals over the audit budget"
            );
            let now = self.now();
            self.store.write(|tx| tx.append(s.event(), now))?;
        }
        Ok(due.len())
    }

    /// The current time by the broker's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The policy file in use.
    pub fn policy_path(&self) -> &Path {
        &self.policy_path
    }

    /// True when this `open` wrote the default policy file.
    pub fn policy_created(&self) -> bool {
        self.policy_created
    }

    /// The policy as the file says now: an edit applies from the next call on; a file that
    /// cannot be read or parsed is an error, never an older policy.
    pub fn policy(&self) -> Result<Policy> {
        Ok(self.policy_cache.load(&self.policy_path)?)
    }

    /// A counter that changes whenever anything is written (poll it to refresh a UI).
    pub fn revision(&self) -> Result<u64> {
        Ok(self.store.revision()?)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) mod test_support;
