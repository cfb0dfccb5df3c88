//! The backend through a `sombrero serve` daemon: it acts as the connection's identity with
//! its own store, fleet and recorder key. Recordings are downloaded and verified here, never
//! taken on the daemon's word. The client is synchronous: its calls run on blocking threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{
    Backend, BackendError, CastSource, KeyInfo, Killed, Listing, OpenedSession, PreparedReview,
    Progress, ReplaySource, Result, SessionRequest, TerminalOpen, Ticket, Verified, blocking,
};
use crate::api::BrokerApi;
use crate::audit::Event;
use crate::config::AwsOptions;
use crate::notify::worker::TestResult;
use crate::policy::Policy;
use crate::recording::audited::cross_check;
use crate::recording::flags;
use crate::remote::RemoteBroker;
use crate::remote::recordings::Fetched;
use crate::wire::Endpoint;
use crate::workflows::reaper::Reaped;
use crate::workflows::scan::{NodeRow, RogueReport};

/// The backend through a daemon (cheap to clone).
#[derive(Clone)]
pub struct Remote(pub(super) Arc<RemoteBroker>);

impl Remote {
    /// A client for `endpoint`; over TCP, TLS per `aws.ca` with an IAM identity proof.
    pub fn connect(endpoint: &Endpoint, aws: &AwsOptions) -> Result<Remote> {
        Ok(Remote(Arc::new(RemoteBroker::connect_with(endpoint, aws)?)))
    }

    /// The backend over a client made elsewhere (tests, other transports).
    pub fn new(client: Arc<RemoteBroker>) -> Remote {
        Remote(client)
    }

    /// The daemon's client.
    pub fn client(&self) -> &Arc<RemoteBroker> {
        &self.0
    }

    /// Runs `f` on the client on a blocking thread.
    fn on<T, F>(&self, f: F) -> BoxFuture<'static, Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&RemoteBroker) -> Result<T> + Send + 'static,
    {
        let client = Arc::clone(&self.0);
        blocking(move || f(&client))
    }
}

/// A recording's name as the broker lists it (the argument of verify, replay and review).
fn name_of(file: &Path) -> Result<&str> {
    file.to_str()
        .ok_or_else(|| BackendError::Input(format!("{} is not a recording name", file.display())))
}

/// Downloads `file` and the key to check it with: `key`, else the broker's.
fn fetch(
    remote: &RemoteBroker,
    file: &Path,
    key: Option<VerifyingKey>,
) -> Result<(Fetched, VerifyingKey)> {
    let key = match key {
        Some(k) => k,
        None => remote.recorder_key()?,
    };
    let fetched = remote.fetch(name_of(file)?)?;
    Ok((fetched, key))
}

impl Backend for Remote {
    fn api(&self) -> Result<Arc<dyn BrokerApi>> {
        Ok(self.0.clone())
    }

    fn policy_source(&self) -> BoxFuture<'_, Result<(String, Policy)>> {
        self.on(|r| Ok((format!("of the broker at {}", r.endpoint()), r.policy()?)))
    }

    fn notify_test(&self) -> BoxFuture<'_, Result<Vec<TestResult>>> {
        self.on(|r| Ok(r.notify_test()?))
    }

    fn fleet(&self) -> BoxFuture<'_, Result<Vec<NodeRow>>> {
        self.on(|r| Ok(r.fleet()?))
    }

    fn reap(&self, dry_run: bool, progress: Progress) -> BoxFuture<'_, Result<Vec<Reaped>>> {
        // One call that lasts until every replacement it starts has ended (minutes with Auto
        // Scaling): say so, since the steps are only in the broker's log.
        progress(format!(
            "reaping on the broker ({}); replacements can take minutes, their steps are in the broker's log",
            self.0.endpoint()
        ));
        self.on(move |r| Ok(r.reap(dry_run)?))
    }

    fn rogue(&self) -> BoxFuture<'_, Result<RogueReport>> {
        self.on(|r| Ok(r.rogue()?))
    }

    fn recordings(&self) -> BoxFuture<'_, Result<Listing>> {
        self.on(|r| {
            Ok(Listing {
                all: r.recordings()?,
                place: format!("the broker at {}", r.endpoint()),
            })
        })
    }

    fn verify(&self, file: PathBuf, key: Option<VerifyingKey>) -> BoxFuture<'_, Result<Verified>> {
        self.on(move |r| {
            let (fetched, key) = fetch(r, &file, key)?;
            let name = name_of(&file)?;
            let mut report = crate::recording::verify(&fetched.cast, &key);
            // The broker's audit facts, checked here against the bytes downloaded.
            let lookup = r.recording_audit(name)?;
            report.integrity = cross_check(&fetched.cast, report.integrity, &lookup);
            report.path = name.to_string();
            Ok(Verified {
                report,
                audited: true,
            })
        })
    }

    fn replay_source(
        &self,
        file: PathBuf,
        key: Option<VerifyingKey>,
    ) -> BoxFuture<'_, Result<ReplaySource>> {
        self.on(move |r| {
            let (fetched, key) = fetch(r, &file, key)?;
            let lookup = r.recording_audit(name_of(&file)?)?;
            // The broker's risk rules, as `sombrero commands` applies them through it.
            let rules = flags::with_defaults(r.policy()?.review_flags);
            Ok(ReplaySource {
                source: CastSource {
                    cast: fetched.cast.clone(),
                    rules,
                    _keep: Some(fetched),
                },
                key: Some(key),
                audit: Some(lookup),
            })
        })
    }

    fn cast(&self, file: PathBuf) -> BoxFuture<'_, Result<CastSource>> {
        self.on(move |r| {
            let mut rules = flags::default_rules();
            let fetched = r.fetch(name_of(&file)?)?;
            rules.extend(r.policy()?.review_flags);
            Ok(CastSource {
                cast: fetched.cast.clone(),
                rules,
                _keep: Some(fetched),
            })
        })
    }

    fn prepare_review(
        &self,
        file: PathBuf,
        as_user: Option<String>,
    ) -> BoxFuture<'_, Result<PreparedReview>> {
        self.on(move |r| {
            let who = super::actor(r, as_user)?;
            let name = name_of(&file)?.to_string();
            // The risky moments before the code, as on the broker host: the recording is
            // downloaded and indexed here under the broker's rules.
            let fetched = r.fetch(&name)?;
            let extra_rules = r.policy()?.review_flags;
            Ok(PreparedReview {
                who,
                shown: name.clone(),
                cast: fetched.cast.clone(),
                extra_rules,
                ticket: Ticket::Remote {
                    name,
                    _fetched: fetched,
                },
            })
        })
    }

    fn sign_off(
        &self,
        prepared: PreparedReview,
        code: String,
        note: String,
    ) -> BoxFuture<'_, Result<Event>> {
        self.on(move |r| {
            let Ticket::Remote { name, .. } = &prepared.ticket else {
                return Err(BackendError::Failed(
                    "this review was prepared by another broker".into(),
                ));
            };
            Ok(r.review(name, &code, &note)?)
        })
    }

    fn recorder_key(&self) -> BoxFuture<'_, Result<KeyInfo>> {
        self.on(|r| {
            Ok(KeyInfo {
                key: r.recorder_key()?,
                path: None,
            })
        })
    }

    fn open_session(&self, req: SessionRequest) -> BoxFuture<'_, Result<OpenedSession>> {
        super::remote_session::open_for_pane(self.0.connector(), req).boxed()
    }

    fn open_terminal(&self, req: TerminalOpen, _steps: Progress) -> BoxFuture<'_, Result<u8>> {
        // The daemon opens, records and finishes the session; its steps come as notices.
        super::remote_session::open_on_terminal(Arc::clone(&self.0), req).boxed()
    }

    fn watch_terminal(&self, request: String) -> BoxFuture<'_, Result<u8>> {
        super::remote_session::watch_on_terminal(Arc::clone(&self.0), request).boxed()
    }

    fn duties(&self, _stopping: tokio::sync::watch::Receiver<bool>) -> BoxFuture<'static, ()> {
        // The daemon delivers notifications itself.
        futures_util::future::ready(()).boxed()
    }

    fn kill(&self, id: String, by: String, code: String) -> BoxFuture<'_, Result<Killed>> {
        // The daemon ends the session it holds (or, held elsewhere, at the service).
        self.on(move |r| {
            Ok(Killed {
                request: r.kill_session(&id, &by, &code)?,
                warning: None,
            })
        })
    }
}
