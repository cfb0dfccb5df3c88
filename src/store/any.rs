//! Choosing a store: `sqlite` (the data dir's file, the default) or `dynamodb:TABLE`, from
//! `--store`, `SOMBRERO_STORE` or the `store` key of the config file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::dynamo::{AwsSelect, DynamoStore, valid_table_name};
use super::sqlite::SqliteStore;
use super::{Store, StoreError, UserRecord, WriteTx};
use crate::audit::{ChainBreak, Event};
use crate::checkpoint::{self, Checkpoint, CheckpointSigner};
use crate::config::Paths;
use crate::request::{Request, State};

/// Which store to use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreSpec {
    /// `sombrero.db` in the data dir.
    #[default]
    Sqlite,
    /// One DynamoDB table shared by several brokers.
    Dynamo {
        /// The table name.
        table: String,
        /// The AWS profile and region that reach it (not part of the spec's text).
        aws: AwsSelect,
    },
}

impl FromStr for StoreSpec {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None if s == "sqlite" => Ok(StoreSpec::Sqlite),
            Some(("dynamodb", table)) if valid_table_name(table) => Ok(StoreSpec::Dynamo {
                table: table.to_string(),
                aws: AwsSelect::default(),
            }),
            _ => Err(StoreError::BadSpec(s.to_string())),
        }
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Sqlite => f.write_str("sqlite"),
            StoreSpec::Dynamo { table, .. } => write!(f, "dynamodb:{table}"),
        }
    }
}

impl StoreSpec {
    /// The spec from `flag` (`--store` or `SOMBRERO_STORE`), else the `store` key of the config
    /// file, else SQLite.
    pub fn resolve(
        flag: Option<&str>,
        config: Option<&Path>,
        paths: &Paths,
    ) -> Result<StoreSpec, StoreError> {
        if let Some(spec) = flag {
            return spec.parse();
        }
        let from_file = crate::config::config_string(config, paths, "store")
            .map_err(|e| StoreError::BadSpec(e.to_string()))?;
        match from_file {
            Some((spec, _)) => spec.parse(),
            None => Ok(StoreSpec::Sqlite),
        }
    }

    /// Opens the store it names, with the audit checkpoint signer of the data dir's keys dir.
    pub fn open(&self, paths: &Paths) -> Result<AnyStore, StoreError> {
        let inner = match self {
            StoreSpec::Sqlite => Inner::Sqlite(SqliteStore::open(&paths.db())?),
            StoreSpec::Dynamo { table, aws } => {
                Inner::Dynamo(DynamoStore::open_with(table, aws.clone())?)
            }
        };
        let mut store = AnyStore {
            inner,
            keys: paths.keys(),
            signer: None,
        };
        let signer = CheckpointSigner::open(&store.keys, || store.audit_head().ok().flatten())
            .map_err(|e| StoreError::Checkpoint(e.to_string()))?;
        store.signer = Some(signer);
        Ok(store)
    }
}

/// Either store, so the broker need not be generic, with the signer that anchors its audit
/// chain outside it (see [`crate::checkpoint`]).
pub struct AnyStore {
    inner: Inner,
    /// Where the audit key and checkpoints live.
    keys: PathBuf,
    signer: Option<CheckpointSigner>,
}

enum Inner {
    /// The embedded SQLite store.
    Sqlite(SqliteStore),
    /// The DynamoDB team store.
    Dynamo(DynamoStore),
}

/// Calls the same method on whichever store it is.
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match &$self.inner {
            Inner::Sqlite($s) => $e,
            Inner::Dynamo($s) => $e,
        }
    };
}

impl AnyStore {
    /// The audit chain's last event `(seq, hash)`, `None` while it is empty.
    pub fn audit_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        each!(self, s => s.audit_head())
    }

    /// Checks a chain that holds by itself against the signed checkpoints in the keys dir.
    pub fn check_checkpoints(&self, events: &[Event]) -> Result<(), ChainBreak> {
        match checkpoint::read(&self.keys) {
            Ok(Some(all)) => checkpoint::check(events, &all?),
            Ok(None) => Err(ChainBreak::Checkpoint {
                reason: format!(
                    "no audit key in {}: the checkpoints cannot be checked (deleted?)",
                    self.keys.display()
                ),
            }),
            Err(e) => Err(ChainBreak::Checkpoint {
                reason: e.to_string(),
            }),
        }
    }

    /// The newest signed checkpoint (for anchoring elsewhere).
    pub fn newest_checkpoint(&self) -> Result<Checkpoint, ChainBreak> {
        let all = match checkpoint::read(&self.keys) {
            Ok(Some(all)) => all?,
            Ok(None) => Vec::new(),
            Err(e) => {
                return Err(ChainBreak::Checkpoint {
                    reason: e.to_string(),
                });
            }
        };
        checkpoint::newest(&all)
            .cloned()
            .ok_or_else(|| ChainBreak::Checkpoint {
                reason: format!("no signed checkpoint in {}", self.keys.display()),
            })
    }

    /// Signs the chain head after a commit. The commit stands either way, so a failure is
    /// logged, not returned (the next commit signs again; `audit verify` still checks the
    /// rest).
    fn anchor(&self) {
        let Some(signer) = &self.signer else { return };
        match self.audit_head() {
            Ok(Some((seq, hash))) => {
                if let Err(e) = signer.sign(seq, &hash) {
                    tracing::error!(error = %e, seq, "cannot append the audit checkpoint");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot read the audit head to sign it"),
        }
    }
}

impl Store for AnyStore {
    fn write<T>(
        &self,
        f: impl FnMut(&mut dyn WriteTx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let out = each!(self, s => s.write(f))?;
        self.anchor();
        Ok(out)
    }

    fn request(&self, id: &str) -> Result<Option<Request>, StoreError> {
        each!(self, s => s.request(id))
    }

    fn requests(&self, state: Option<State>) -> Result<Vec<Request>, StoreError> {
        each!(self, s => s.requests(state))
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        each!(self, s => s.users())
    }

    fn audit_events(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        each!(self, s => s.audit_events(after, limit))
    }

    fn audit_for_request(&self, id: &str) -> Result<Vec<Event>, StoreError> {
        each!(self, s => s.audit_for_request(id))
    }

    fn audit_all(&self) -> Result<(Vec<Event>, u64), StoreError> {
        each!(self, s => s.audit_all())
    }

    fn revision(&self) -> Result<u64, StoreError> {
        each!(self, s => s.revision())
    }

    fn outbox_due(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<crate::store::outbox_item::OutboxItem>, StoreError> {
        each!(self, s => s.outbox_due(now, limit))
    }

    fn outbox_update(
        &self,
        item: &crate::store::outbox_item::OutboxItem,
        expect: u32,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.outbox_update(item, expect))
    }

    fn outbox_done(&self, id: &str) -> Result<(), StoreError> {
        each!(self, s => s.outbox_done(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print() {
        assert_eq!("sqlite".parse::<StoreSpec>().unwrap(), StoreSpec::Sqlite);
        let d: StoreSpec = "dynamodb:team-store".parse().unwrap();
        assert_eq!(d.to_string(), "dynamodb:team-store");
        for bad in [
            "",
            "dynamo:x",
            "dynamodb:",
            "dynamodb:a b",
            "sqlite:x",
            "postgres",
        ] {
            assert!(bad.parse::<StoreSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn flag_then_config_then_sqlite() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::at(tmp.path());
        assert_eq!(
            StoreSpec::resolve(None, None, &paths).unwrap(),
            StoreSpec::Sqlite
        );
        std::fs::write(paths.config(), "store = \"dynamodb:from-file\"\n").unwrap();
        assert_eq!(
            StoreSpec::resolve(None, None, &paths).unwrap().to_string(),
            "dynamodb:from-file"
        );
        assert_eq!(
            StoreSpec::resolve(Some("sqlite"), None, &paths).unwrap(),
            StoreSpec::Sqlite
        );
        std::fs::write(paths.config(), "store = 1\n").unwrap();
        assert!(StoreSpec::resolve(None, None, &paths).is_err());
    }
}
