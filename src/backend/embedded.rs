//! The backend in this process: the data dir's broker (opened on first use, so listing
//! commands never create a store), this host's fleet credentials, recordings directory and
//! recorder key. The broker is synchronous: its calls run on blocking threads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use ed25519_dalek::VerifyingKey;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::embedded_session::{open_for_pane, open_on_terminal};
use super::{
    Backend, BackendError, CastSource, Config, KeyInfo, Killed, Listing, OpenedSession,
    PreparedReview, Progress, ReplaySource, Result, SessionRequest, TerminalOpen, Ticket, Verified,
    blocking,
};
use crate::api::BrokerApi;
use crate::audit::Event;
use crate::broker::{Broker, BrokerOptions};
use crate::fleet::Fleet;
use crate::fleet::aws::AwsFleet;
use crate::notify::worker::TestResult;
use crate::policy::{self, Policy, PolicyError};
use crate::recording::audited::{self, AuditLog, cross_check};
use crate::recording::flags::{self, FlagRule};
use crate::recording::{self, RecorderKey, keys, list};
use crate::review;
use crate::store::any::StoreSpec;
use crate::workflows::reaper::{self, Reaped};
use crate::workflows::scan::{self, NodeRow, RogueReport};

/// Who the reaper and the rogue scan write audit events as.
const ACTOR: &str = crate::broker::SYSTEM_ACTOR;

/// The backend in this process (cheap to clone: one shared state).
#[derive(Clone)]
pub struct Embedded(pub(super) Arc<Inner>);

pub(super) struct Inner {
    pub(super) cfg: Config,
    broker: Mutex<Option<Arc<Broker>>>,
    fleet: tokio::sync::OnceCell<Arc<AwsFleet>>,
    /// Recordings listed before, by file: unchanged files are not read again.
    cache: Mutex<list::ListCache>,
    /// Where recordings go when the configuration does not decide (the demo).
    recordings_dir: Option<PathBuf>,
}

impl Embedded {
    /// A backend on the configured data dir; nothing is opened yet.
    pub fn new(cfg: Config) -> Embedded {
        Embedded(Arc::new(Inner {
            cfg,
            broker: Mutex::new(None),
            fleet: tokio::sync::OnceCell::new(),
            cache: Mutex::default(),
            recordings_dir: None,
        }))
    }

    /// A backend on a broker already open, a given fleet (`None`: from the configuration)
    /// and recordings directory (the demo, tests).
    pub fn with_parts(
        cfg: Config,
        broker: Arc<Broker>,
        fleet: Option<Arc<AwsFleet>>,
        recordings_dir: PathBuf,
    ) -> Embedded {
        Embedded(Arc::new(Inner {
            cfg,
            broker: Mutex::new(Some(broker)),
            fleet: fleet.map_or_else(tokio::sync::OnceCell::new, |f| {
                tokio::sync::OnceCell::new_with(Some(f))
            }),
            cache: Mutex::default(),
            recordings_dir: Some(recordings_dir),
        }))
    }

    /// The broker, opened on first use.
    pub fn broker(&self) -> Result<Arc<Broker>> {
        self.0.broker()
    }

    /// What a session needs on this host: the broker, the fleet, the recordings directory
    /// and the recorder key (made if missing).
    /// `sombrero serve` builds its hub from the same.
    pub async fn session_deps(&self) -> Result<crate::session::SessionDeps<AwsFleet>> {
        let broker = {
            let b = self.clone();
            blocking(move || b.broker()).await?
        };
        let recordings_dir = self.0.recordings_dir()?;
        let key = RecorderKey::load_or_create(&self.0.cfg.paths()?.keys())?;
        let fleet = self.0.fleet().await?;
        Ok(crate::session::SessionDeps {
            broker,
            channel: fleet.channel_options(),
            fleet,
            recordings_dir,
            key: Arc::new(key),
            replace_timeout: crate::session::REPLACE_TIMEOUT,
        })
    }
}

impl Inner {
    pub(super) fn broker(&self) -> Result<Arc<Broker>> {
        let mut slot = self
            .broker
            .lock()
            .map_err(|_| BackendError::Failed("the broker slot is poisoned".into()))?;
        if let Some(b) = &*slot {
            return Ok(Arc::clone(b));
        }
        let broker = Arc::new(self.open()?);
        *slot = Some(Arc::clone(&broker));
        Ok(broker)
    }

    /// Opens the broker on the data dir, with logging to its log file.
    fn open(&self) -> Result<Broker> {
        let paths = self.cfg.paths()?;
        crate::config::init_logging(paths).map_err(|e| BackendError::Failed(format!("{e:#}")))?;
        let opts = BrokerOptions {
            policy_path: Some(self.cfg.policy_path()?.to_path_buf()),
            clock: None,
        };
        let broker = Broker::open_store(paths, opts, self.cfg.store()?)?;
        if broker.policy_created() {
            // Said once, where the file was written, whatever command opened the data dir.
            eprintln!(
                "sombrero: wrote the default policy to {} (two approvals, any enrolled approver); review it with `sombrero policy check`",
                broker.policy_path().display()
            );
        }
        Ok(broker)
    }

    /// This host's fleet, made on first use.
    pub(super) async fn fleet(&self) -> Result<Arc<AwsFleet>> {
        let f = self
            .fleet
            .get_or_try_init(|| async { AwsFleet::from_opts(&self.cfg.aws).await.map(Arc::new) })
            .await?;
        Ok(Arc::clone(f))
    }

    pub(super) fn recordings_dir(&self) -> Result<PathBuf> {
        match &self.recordings_dir {
            Some(d) => Ok(d.clone()),
            None => Ok(self.cfg.recordings_dir()?.to_path_buf()),
        }
    }

    /// True when the data dir has a store to read (reading must not create one).
    fn has_store(&self) -> Result<bool> {
        let paths = self.cfg.paths()?;
        Ok(*self.cfg.store()? != StoreSpec::Sqlite || paths.db().exists())
    }

    /// The data dir's audit log, when it has a store.
    fn audit_log(&self) -> Result<Option<AuditLog>> {
        if !self.has_store()? {
            return Ok(None);
        }
        Ok(Some(review::audit_log(&*self.broker()?)?))
    }

    /// The trusted recorder key (verification needs only its public half).
    fn trusted_key(&self) -> Result<VerifyingKey> {
        let key = RecorderKey::load(&self.cfg.paths()?.keys())
            .map_err(|e| BackendError::Refused(e.to_string()))?;
        Ok(key.verifying_key())
    }

    /// The trusted key if one exists (listing and replay still work without one).
    fn optional_key(&self) -> Result<Option<VerifyingKey>> {
        match RecorderKey::load(&self.cfg.paths()?.keys()) {
            Ok(k) => Ok(Some(k.verifying_key())),
            Err(keys::KeyError::Missing(_)) => Ok(None),
            Err(e) => Err(BackendError::Refused(e.to_string())),
        }
    }

    /// The risk rules on this machine: the defaults plus the local policy's `[[review.flag]]`.
    fn local_rules(&self) -> Result<Vec<FlagRule>> {
        let mut rules: Vec<FlagRule> = flags::default_rules();
        let path = self.cfg.paths()?.policy();
        // No policy file yet: the defaults alone. A broken one fails the command.
        if path.exists() {
            let policy = Policy::load(&path).map_err(|e| BackendError::Input(e.to_string()))?;
            rules.extend(policy.review_flags);
        }
        Ok(rules)
    }

    /// The policy in force without writing anything: the file if there is one, else the
    /// documented default (what the first command that opens the data dir writes).
    fn policy_or_default(&self) -> Result<Policy> {
        let path = self.cfg.policy_path()?;
        let text = if path.exists() {
            std::fs::read_to_string(path).map_err(|source| {
                BackendError::Input(
                    PolicyError::Read {
                        path: path.to_path_buf(),
                        source,
                    }
                    .to_string(),
                )
            })?
        } else {
            policy::DEFAULT_POLICY.to_owned()
        };
        Policy::parse(&text, path).map_err(|e| BackendError::Input(e.to_string()))
    }

    /// Sign-offs from the audit log by recording digest; none when there is no store yet.
    fn reviews_by_digest(&self) -> Result<HashMap<String, Vec<list::Review>>> {
        // Listing must not create a store or policy as a side effect.
        if !self.cfg.paths()?.db().exists() {
            return Ok(HashMap::new());
        }
        Ok(review::by_digest(&*self.broker()?)?)
    }

    fn recordings(&self) -> Result<Listing> {
        let key = self.optional_key()?;
        let dir = self.recordings_dir()?;
        let rules = self.local_rules()?;
        let listed = match self.cache.lock() {
            Ok(mut c) => c.list(&dir, key.as_ref()).map(|mut all| {
                c.attach_flags(&mut all, &rules);
                all
            }),
            Err(_) => list::list(&dir, key.as_ref()).map(|mut all| {
                list::ListCache::default().attach_flags(&mut all, &rules);
                all
            }),
        };
        let mut all = listed
            .map_err(|e| BackendError::Failed(format!("cannot list {}: {e}", dir.display())))?;
        if let Some(log) = self.audit_log()? {
            audited::check_listing(&mut all, &log);
        }
        review::attach(&mut all, self.reviews_by_digest()?);
        Ok(Listing {
            all,
            place: dir.display().to_string(),
        })
    }

    fn verify(&self, file: &Path, key: Option<VerifyingKey>) -> Result<Verified> {
        if !file.is_file() {
            return Err(BackendError::Input(format!(
                "{} is not a file",
                file.display()
            )));
        }
        let key = match key {
            Some(k) => k,
            None => self.trusted_key()?,
        };
        let mut report = recording::verify(file, &key);
        let log = self.audit_log()?;
        if let Some(log) = &log {
            report.integrity = cross_check(file, report.integrity, &log.lookup_file(file));
        }
        Ok(Verified {
            report,
            audited: log.is_some(),
        })
    }

    fn replay_source(&self, file: PathBuf, key: Option<VerifyingKey>) -> Result<ReplaySource> {
        let key = match key {
            Some(k) => Some(k),
            None => self.optional_key()?,
        };
        let audit = self.audit_log()?.map(|log| log.lookup_file(&file));
        let rules = self.local_rules()?;
        Ok(ReplaySource {
            source: CastSource {
                cast: file,
                rules,
                _keep: None,
            },
            key,
            audit,
        })
    }

    fn cast(&self, file: PathBuf) -> Result<CastSource> {
        if !file.is_file() {
            return Err(BackendError::Input(format!(
                "{} is not a file",
                file.display()
            )));
        }
        Ok(CastSource {
            rules: self.local_rules()?,
            cast: file,
            _keep: None,
        })
    }

    fn prepare_review(&self, file: PathBuf, as_user: Option<String>) -> Result<PreparedReview> {
        if !file.is_file() {
            return Err(BackendError::Input(format!(
                "{} is not a file",
                file.display()
            )));
        }
        let broker = self.broker()?;
        let who = super::who(as_user)?;
        // Refusals (role, own session, tampered file) come before the code is asked for.
        let key = self.trusted_key()?;
        let checked = review::check(&broker, &who, &file, &key)?;
        let extra_rules = broker.policy()?.review_flags;
        Ok(PreparedReview {
            who,
            shown: file.display().to_string(),
            cast: file,
            extra_rules,
            ticket: Ticket::Local(checked),
        })
    }

    fn sign_off(&self, p: PreparedReview, code: &str, note: &str) -> Result<Event> {
        let Ticket::Local(checked) = &p.ticket else {
            return Err(BackendError::Failed(
                "this review was prepared by another broker".into(),
            ));
        };
        Ok(review::sign_off(
            &*self.broker()?,
            &p.who,
            checked,
            code,
            note,
        )?)
    }

    fn recorder_key(&self) -> Result<KeyInfo> {
        let dir = self.cfg.paths()?.keys();
        let key = RecorderKey::load_or_create(&dir)?;
        Ok(KeyInfo {
            key: key.verifying_key(),
            path: Some(dir.join(keys::KEY_FILE)),
        })
    }

    /// The listing with this host's fleet credentials and store.
    async fn fleet_rows(&self) -> Result<Vec<NodeRow>> {
        let nodes = self.fleet().await?.list_nodes().await?;
        // Rogue findings live in the store; without one there are none to show (and listing
        // the fleet should not create a data dir, nor a policy file).
        let rogue_touched = if self.cfg.paths()?.db().exists() {
            scan::rogue_touched(&*self.broker()?)?
        } else {
            Default::default()
        };
        let max_age = self.policy_or_default()?.max_instance_age;
        Ok(scan::node_rows(nodes, &rogue_touched, max_age, Utc::now()))
    }
}

/// Runs `f` on the shared state on a blocking thread.
fn on<T, F>(inner: &Arc<Inner>, f: F) -> BoxFuture<'static, Result<T>>
where
    T: Send + 'static,
    F: FnOnce(&Inner) -> Result<T> + Send + 'static,
{
    let inner = Arc::clone(inner);
    blocking(move || f(&inner))
}

impl Backend for Embedded {
    fn api(&self) -> Result<Arc<dyn BrokerApi>> {
        Ok(self.broker()?)
    }

    fn policy_source(&self) -> BoxFuture<'_, Result<(String, Policy)>> {
        on(&self.0, |i| {
            let path = i.cfg.policy_path()?;
            let p = Policy::load(path).map_err(|e| {
                BackendError::Input(match e {
                    PolicyError::Read { .. } => format!(
                        "{e}; the first `sombrero user add` writes a documented default there"
                    ),
                    other => other.to_string(),
                })
            })?;
            Ok((path.display().to_string(), p))
        })
    }

    fn notify_test(&self) -> BoxFuture<'_, Result<Vec<TestResult>>> {
        async move {
            let broker = self.broker()?;
            let by = super::who(None)?;
            Ok(crate::notify::worker::test_all(&broker, &by).await?)
        }
        .boxed()
    }

    fn fleet(&self) -> BoxFuture<'_, Result<Vec<NodeRow>>> {
        self.0.fleet_rows().boxed()
    }

    fn reap(&self, dry_run: bool, progress: Progress) -> BoxFuture<'_, Result<Vec<Reaped>>> {
        async move {
            let broker = self.broker()?;
            let fleet = self.0.fleet().await?;
            Ok(reaper::reap(&broker, &fleet, ACTOR, dry_run, |p| progress(p)).await?)
        }
        .boxed()
    }

    fn rogue(&self) -> BoxFuture<'_, Result<RogueReport>> {
        async move {
            let broker = self.broker()?;
            let fleet = self.0.fleet().await?;
            Ok(scan::rogue(&broker, &*fleet, ACTOR).await?)
        }
        .boxed()
    }

    fn recordings(&self) -> BoxFuture<'_, Result<Listing>> {
        on(&self.0, Inner::recordings)
    }

    fn verify(&self, file: PathBuf, key: Option<VerifyingKey>) -> BoxFuture<'_, Result<Verified>> {
        on(&self.0, move |i| i.verify(&file, key))
    }

    fn replay_source(
        &self,
        file: PathBuf,
        key: Option<VerifyingKey>,
    ) -> BoxFuture<'_, Result<ReplaySource>> {
        on(&self.0, move |i| i.replay_source(file, key))
    }

    fn cast(&self, file: PathBuf) -> BoxFuture<'_, Result<CastSource>> {
        on(&self.0, move |i| i.cast(file))
    }

    fn prepare_review(
        &self,
        file: PathBuf,
        as_user: Option<String>,
    ) -> BoxFuture<'_, Result<PreparedReview>> {
        on(&self.0, move |i| i.prepare_review(file, as_user))
    }

    fn sign_off(
        &self,
        prepared: PreparedReview,
        code: String,
        note: String,
    ) -> BoxFuture<'_, Result<Event>> {
        on(&self.0, move |i| i.sign_off(prepared, &code, &note))
    }

    fn recorder_key(&self) -> BoxFuture<'_, Result<KeyInfo>> {
        on(&self.0, Inner::recorder_key)
    }

    fn open_session(&self, req: SessionRequest) -> BoxFuture<'_, Result<OpenedSession>> {
        let this = self.clone();
        async move { open_for_pane(this.session_deps().await?, req).await }.boxed()
    }

    fn open_terminal(&self, req: TerminalOpen, steps: Progress) -> BoxFuture<'_, Result<u8>> {
        let this = self.clone();
        async move { open_on_terminal(this.session_deps().await?, req, steps).await }.boxed()
    }

    fn watch_terminal(&self, request: String) -> BoxFuture<'_, Result<u8>> {
        async move {
            Err(BackendError::Input(format!(
                "watching needs a broker daemon: a session opened without one lives in the process that opened it. Run `sombrero serve` and pass --broker to watch {request}"
            )))
        }
        .boxed()
    }

    fn duties(&self, stopping: tokio::sync::watch::Receiver<bool>) -> BoxFuture<'static, ()> {
        match self.broker() {
            Ok(broker) => crate::notify::worker::run(broker, stopping).boxed(),
            Err(e) => {
                tracing::warn!(error = %e, "no broker: notifications are not delivered");
                futures_util::future::ready(()).boxed()
            }
        }
    }

    fn kill(&self, id: String, by: String, code: String) -> BoxFuture<'_, Result<Killed>> {
        async move {
            let broker = self.broker()?;
            let closed = blocking(move || Ok(broker.kill_session(&id, &by, &code)?)).await?;
            let mut warning = None;
            if let Some(sid) = closed.session_id.clone() {
                let ended = async { self.0.fleet().await?.terminate_session(&sid).await.map_err(BackendError::from) };
                if let Err(e) = ended.await {
                    warning = Some(format!(
                        "the request is closed, but TerminateSession failed ({e}); the session's own process ends it"
                    ));
                }
            }
            Ok(Killed {
                request: closed,
                warning,
            })
        }
        .boxed()
    }
}
