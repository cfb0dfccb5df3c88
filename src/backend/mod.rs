//! The broker as the CLI and the TUI use it, wherever it runs: one async [`Backend`] with two
//! homes, [`embedded::Embedded`] (this process opens the data dir; the synchronous broker runs
//! on blocking threads) and [`remote::Remote`] (a `sombrero serve` daemon). Callers hold an
//! `Arc<dyn Backend>` and never ask which one it is.

pub mod api_only;
pub mod config;
pub mod embedded;
mod embedded_session;
pub mod remote;
mod remote_session;

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use crate::api::BrokerApi;
use crate::audit::Event;
use crate::broker::{AuditCheck, BrokerError, UserInfo};
use crate::channel::client::SessionEvent;
use crate::fleet::FleetError;
use crate::notify::worker::TestResult;
use crate::policy::Policy;
use crate::recording::audited::Lookup;
use crate::recording::flags::FlagRule;
use crate::recording::keys::KeyError;
use crate::recording::list::RecordingSummary;
use crate::recording::verify::VerifyReport;
use crate::remote::recordings::Fetched;
use crate::remote::session::RelayError;
use crate::request::{NewRequest, Request, State};
use crate::review::ReviewError;
use crate::review_queue::PendingReview;
use crate::session::SessionError;
use crate::workflows::reaper::Reaped;
use crate::workflows::scan::{NodeRow, RogueReport, ScanError};

pub use config::Config;

/// Why a backend call failed; the broker's typed errors (a daemon's [`crate::wire::ErrorKind`]
/// included) are kept whole so the CLI decides exit statuses in one place.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The broker refused or failed (embedded, or as the daemon reported it).
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// A review sign-off was refused or failed.
    #[error(transparent)]
    Review(#[from] ReviewError),
    /// The reaper or the rogue scan failed.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// The fleet could not be reached.
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// Opening a session failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A session through the daemon failed.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// The recorder key could not be read or made.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A rule said no (exit status 1).
    #[error("{0}")]
    Refused(String),
    /// Bad input or configuration (exit status 2).
    #[error("{0}")]
    Input(String),
    /// Anything else (exit status 1).
    #[error("{0}")]
    Failed(String),
}

/// A backend result.
pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// Progress lines of long operations (reaping, opening a session), for the person.
pub type Progress = Arc<dyn Fn(String) + Send + Sync>;

/// What the session opener is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRequest {
    /// The approved request.
    pub request_id: String,
    /// Who opens it (must be its requester).
    pub user: String,
    /// Pane rows.
    pub rows: u16,
    /// Pane columns.
    pub cols: u16,
    /// Watch someone's live session read-only instead of opening one's own.
    pub watch: bool,
    /// The requester's TOTP code for opening (none for watching, or when the policy opens
    /// without one).
    pub code: Option<String>,
}

/// Resizing and ending a running session.
pub trait SessionControl: Send {
    /// The pane changed size.
    fn resize(&self, rows: u16, cols: u16) -> Result<(), String>;
    /// End the session on the node.
    fn terminate(&self) -> Result<(), String>;
}

/// A session the backend opened for a pane.
pub struct OpenedSession {
    /// Target node.
    pub target: String,
    /// When the grant ends (the UI ends the session then if nothing else did).
    pub ends_at: Option<DateTime<Utc>>,
    /// Whether it is recorded (shown in the status bar).
    pub recording: bool,
    /// Keystrokes, in order.
    pub input: mpsc::Sender<Vec<u8>>,
    /// Resize and terminate.
    pub control: Box<dyn SessionControl>,
    /// Output and lifecycle events.
    pub events: mpsc::Receiver<SessionEvent>,
}

/// `sombrero open` on this terminal: a shell, or one command.
#[derive(Debug, Clone)]
pub struct TerminalOpen {
    /// The approved request.
    pub request: String,
    /// Who opens it.
    pub user: String,
    /// The TOTP code, when one is needed at open.
    pub code: Option<String>,
    /// One command instead of a shell (empty: a shell).
    pub command: Vec<String>,
}

/// The recordings listing and where it came from (for "no recordings in ...").
pub struct Listing {
    /// The recordings, oldest first.
    pub all: Vec<RecordingSummary>,
    /// The directory, or the broker, they were listed in.
    pub place: String,
}

/// A verified recording.
pub struct Verified {
    /// The verdict, held to the audit log when there is one.
    pub report: VerifyReport,
    /// False when no audit log was there to hold it to.
    pub audited: bool,
}

/// A recording ready to play or index here: downloaded when it lives on a daemon.
pub struct CastSource {
    /// The cast on this machine.
    pub cast: PathBuf,
    /// The risk rules: the defaults plus the policy's `[[review.flag]]`.
    pub rules: Vec<FlagRule>,
    /// Keeps a download alive while the cast is read.
    _keep: Option<Fetched>,
}

/// What the player shows of a recording besides its screens.
pub struct ReplaySource {
    /// The cast and its risk rules.
    pub source: CastSource,
    /// The recorder key its verdict is checked with (none: shown as unverified).
    pub key: Option<VerifyingKey>,
    /// What the audit log recorded of it, when there is a log.
    pub audit: Option<Lookup>,
}

/// A sign-off about to be made: refusals came first; the person sees the flagged commands of
/// `cast`, then types their code.
pub struct PreparedReview {
    /// The reviewer.
    pub who: String,
    /// The recording as the reviewer sees it (its name through a daemon).
    pub shown: String,
    /// The cast on this machine (for the flagged-command notice).
    pub cast: PathBuf,
    /// The policy's extra risk rules.
    pub extra_rules: Vec<FlagRule>,
    ticket: Ticket,
}

/// What signing off needs besides the code, per home.
enum Ticket {
    Local(crate::review::Reviewable),
    Remote { name: String, _fetched: Fetched },
}

/// The recorder's public key and where it is kept (`None`: as the daemon reports it).
pub struct KeyInfo {
    /// The key.
    pub key: VerifyingKey,
    /// Its file on this machine.
    pub path: Option<PathBuf>,
}

/// A killed session's request, and what could not be done besides.
pub struct Killed {
    /// The closed request.
    pub request: Request,
    /// A step that failed after the request was closed (said, not fatal).
    pub warning: Option<String>,
}

/// Runs a call of the synchronous API on a blocking thread.
fn call<T, F>(api: Result<Arc<dyn BrokerApi>>, f: F) -> BoxFuture<'static, Result<T>>
where
    T: Send + 'static,
    F: FnOnce(&dyn BrokerApi) -> crate::broker::Result<T> + Send + 'static,
{
    match api {
        Ok(api) => blocking(move || f(&*api).map_err(BackendError::from)),
        Err(e) => futures_util::future::ready(Err(e)).boxed(),
    }
}

/// Runs `f` on a blocking thread (the broker and the daemon client are synchronous).
pub(crate) fn blocking<T, F>(f: F) -> BoxFuture<'static, Result<T>>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    async move {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| BackendError::Failed(format!("a broker call stopped: {e}")))?
    }
    .boxed()
}

/// Everything the CLI and the TUI ask of a broker, embedded or a daemon.
pub trait Backend: Send + Sync {
    /// The synchronous view of requests, users and audit (the TUI's snapshot thread); an
    /// embedded broker is opened by the first call.
    fn api(&self) -> Result<Arc<dyn BrokerApi>>;

    /// `Some(user)` when the broker names the caller (a daemon).
    fn identity(&self) -> BoxFuture<'_, Result<Option<String>>> {
        call(self.api(), |a| a.identity())
    }
    /// The policy in force.
    fn policy(&self) -> BoxFuture<'_, Result<Policy>> {
        call(self.api(), |a| a.policy())
    }
    /// Enrolled users, without secrets.
    fn users(&self) -> BoxFuture<'_, Result<Vec<UserInfo>>> {
        call(self.api(), |a| a.users())
    }
    /// Creates a request after checking the requester's code.
    fn create_request(&self, new: NewRequest, code: String) -> BoxFuture<'_, Result<Request>> {
        call(self.api(), move |a| a.create_request(new, &code))
    }
    /// Creates a request through the emergency door.
    fn create_emergency(&self, new: NewRequest, code: String) -> BoxFuture<'_, Result<Request>> {
        call(self.api(), move |a| a.create_emergency(new, &code))
    }
    /// Approves `id` as `by`.
    fn approve(
        &self,
        id: String,
        by: String,
        code: String,
        comment: Option<String>,
    ) -> BoxFuture<'_, Result<Request>> {
        call(self.api(), move |a| {
            a.approve(&id, &by, &code, comment.as_deref())
        })
    }
    /// Denies `id` as `by`.
    fn deny(
        &self,
        id: String,
        by: String,
        code: String,
        comment: Option<String>,
    ) -> BoxFuture<'_, Result<Request>> {
        call(self.api(), move |a| {
            a.deny(&id, &by, &code, comment.as_deref())
        })
    }
    /// Cancels `id` as `by`.
    fn cancel(&self, id: String, by: String) -> BoxFuture<'_, Result<Request>> {
        call(self.api(), move |a| a.cancel(&id, &by))
    }
    /// One request.
    fn get(&self, id: String) -> BoxFuture<'_, Result<Request>> {
        call(self.api(), move |a| a.get(&id))
    }
    /// Requests, newest first, optionally in one state.
    fn list(&self, state: Option<State>) -> BoxFuture<'_, Result<Vec<Request>>> {
        call(self.api(), move |a| a.list(state))
    }
    /// Expires every request past its deadline; returns how many changed.
    fn expire_due(&self) -> BoxFuture<'_, Result<usize>> {
        call(self.api(), |a| a.expire_due())
    }
    /// Audit events after `after_seq`, at most `limit`.
    fn audit_events(&self, after_seq: u64, limit: usize) -> BoxFuture<'_, Result<Vec<Event>>> {
        call(self.api(), move |a| a.audit_events(after_seq, limit))
    }
    /// The audit events of one request.
    fn audit_for_request(&self, id: String) -> BoxFuture<'_, Result<Vec<Event>>> {
        call(self.api(), move |a| a.audit_for_request(&id))
    }
    /// Checks the whole audit chain.
    fn verify_audit(&self) -> BoxFuture<'_, Result<AuditCheck>> {
        call(self.api(), |a| a.verify_audit())
    }
    /// Sessions waiting for a required review, soonest due first.
    fn pending_reviews(&self) -> BoxFuture<'_, Result<Vec<PendingReview>>> {
        call(self.api(), |a| a.pending_reviews())
    }

    /// The policy as `sombrero policy check` shows it, with where it is (the file, or the
    /// daemon); the file is read without opening the store.
    fn policy_source(&self) -> BoxFuture<'_, Result<(String, Policy)>>;
    /// Sends a test notification to every `[[notify]]` target (the daemon sends its own).
    fn notify_test(&self) -> BoxFuture<'_, Result<Vec<TestResult>>>;

    /// The fleet's nodes with their badges.
    fn fleet(&self) -> BoxFuture<'_, Result<Vec<NodeRow>>>;
    /// Ends sessions that outlived their request and replaces tainted nodes.
    fn reap(&self, dry_run: bool, progress: Progress) -> BoxFuture<'_, Result<Vec<Reaped>>>;
    /// Sessions that bypassed the broker, old instances, tainted nodes out of reach.
    fn rogue(&self) -> BoxFuture<'_, Result<RogueReport>>;

    /// The recordings this caller may see, verified, with sign-offs and flag counts.
    fn recordings(&self) -> BoxFuture<'_, Result<Listing>>;
    /// Verifies a recording (`key`: instead of the trusted one), held to the audit log.
    fn verify(&self, file: PathBuf, key: Option<VerifyingKey>) -> BoxFuture<'_, Result<Verified>>;
    /// A recording to play here, with its key, audit facts and risk rules.
    fn replay_source(
        &self,
        file: PathBuf,
        key: Option<VerifyingKey>,
    ) -> BoxFuture<'_, Result<ReplaySource>>;
    /// A recording to index here (commands, export) with the risk rules.
    fn cast(&self, file: PathBuf) -> BoxFuture<'_, Result<CastSource>>;
    /// Checks what can be refused before a sign-off (`as_user`: `--as`).
    fn prepare_review(
        &self,
        file: PathBuf,
        as_user: Option<String>,
    ) -> BoxFuture<'_, Result<PreparedReview>>;
    /// Signs a prepared review off with the reviewer's code.
    fn sign_off(
        &self,
        prepared: PreparedReview,
        code: String,
        note: String,
    ) -> BoxFuture<'_, Result<Event>>;
    /// The recorder's public key (made on first use on the broker host).
    fn recorder_key(&self) -> BoxFuture<'_, Result<KeyInfo>>;

    /// Opens (or watches) a session for a TUI pane.
    fn open_session(&self, req: SessionRequest) -> BoxFuture<'_, Result<OpenedSession>>;
    /// Opens a session on this terminal; its exit status.
    fn open_terminal(&self, req: TerminalOpen, steps: Progress) -> BoxFuture<'_, Result<u8>>;
    /// Watches a live session on this terminal; its exit status.
    fn watch_terminal(&self, request: String) -> BoxFuture<'_, Result<u8>>;
    /// Ends the live session of `id` as `by`.
    fn kill(&self, id: String, by: String, code: String) -> BoxFuture<'_, Result<Killed>>;

    /// What this process must do while a front end runs, until `stopping` turns true: an
    /// embedded broker delivers notifications; a daemon does its own.
    fn duties(&self, stopping: tokio::sync::watch::Receiver<bool>) -> BoxFuture<'static, ()>;
}

/// Who acts: the daemon's name for this connection (then `--as` is refused), else `--as`,
/// else the OS user.
pub fn actor(api: &dyn BrokerApi, as_user: Option<String>) -> Result<String> {
    acting(api.identity()?, as_user)
}

/// Who acts, given the daemon's name for this connection (`identity`) and `--as`.
pub fn acting(identity: Option<String>, as_user: Option<String>) -> Result<String> {
    match identity {
        Some(me) => match as_user {
            Some(other) => Err(BackendError::Input(format!(
                "--as {other} cannot be used with a broker daemon: it knows you as {me} from your connection (your OS user or IAM identity)"
            ))),
            None => Ok(me),
        },
        None => who(as_user),
    }
}

/// `--as`, else the OS user.
pub fn who(as_user: Option<String>) -> Result<String> {
    as_user
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| BackendError::Input("cannot tell who you are: pass --as NAME".into()))
}

/// The backend for a resolved configuration: the daemon when one is named, else the data dir
/// opened in this process (lazily: commands that only list must not create a store).
pub fn connect(cfg: &Config) -> Result<Arc<dyn Backend>> {
    match cfg.broker()? {
        Some(endpoint) => Ok(Arc::new(remote::Remote::connect(&endpoint, &cfg.aws)?)),
        None => Ok(Arc::new(embedded::Embedded::new(cfg.clone()))),
    }
}
