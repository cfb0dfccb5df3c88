//! `sombrero serve`: the broker as a daemon, so secrets, keys and the store stay on one host.
//!
//! Listeners ([`unix`]; [`tcp`], TLS with an IAM identity proof from [`sts`]) accept
//! connections, learn each one's [`identity::Peer`] and serve [`router`] on it with
//! [`conn`]; [`recordings`] serves the broker's recordings. The router maps
//! the peer to an [`identity::Identity`] on every request; handlers act as that identity only.
//! The broker is synchronous: handlers run its calls on blocking threads.

pub mod bounds;
pub mod conn;
pub mod emergency;
pub mod error;
pub mod fleet;
pub mod gate;
pub mod hub;
pub mod identity;
pub mod notify;
pub mod proof_rate;
pub mod recordings;
pub mod relay;
pub mod routes;
pub mod sts;
pub mod tcp;
pub mod tls;
pub mod unix;
pub mod visibility;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use tokio::sync::watch;

use crate::broker::{Broker, BrokerError};
use crate::fleet::aws::AwsFleet;
use crate::wire::ErrorKind;

use self::error::ApiError;

/// How often the store's revision is read, to wake long-polls for writes made by other
/// processes on the broker host (an admin enrolling a user).
pub const STORE_POLL: Duration = Duration::from_millis(100);
/// How often requests past their deadline are expired.
pub const SWEEP: Duration = Duration::from_secs(5);

/// What every handler shares: the broker and the live change signal.
#[derive(Clone)]
pub struct AppState {
    /// The one broker.
    pub broker: Arc<Broker>,
    /// The latest store revision known (long-polls wait on it).
    revision: watch::Receiver<u64>,
    publish: Arc<watch::Sender<u64>>,
    /// Turns true when the daemon is shutting down (long-polls return at once).
    stopping: watch::Receiver<bool>,
    /// The sessions this broker holds, or why it cannot open any (no fleet configured).
    sessions: Result<Arc<hub::Hub>, String>,
    /// Enrolled names as of a store revision (the identity check asks on every request).
    names: Arc<Mutex<NamesAt>>,
    /// The recordings this broker keeps, or why it serves none.
    recordings: Result<Arc<recordings::Archive>, String>,
    /// How long a session's client may answer nothing (not even a ping) before it counts as
    /// gone (a dead TCP peer is otherwise noticed only when a write finally fails).
    client_silence: Duration,
    /// The fleet this broker lists and scans, or why it has none.
    fleet: Result<Arc<AwsFleet>, String>,
}

/// Enrolled names and the store revision they were read at.
type NamesAt = (Option<u64>, Arc<BTreeSet<String>>);

impl AppState {
    /// State for `broker`; `stopping` turns true on shutdown.
    pub fn new(
        broker: Arc<Broker>,
        stopping: watch::Receiver<bool>,
    ) -> Result<AppState, BrokerError> {
        let (publish, revision) = watch::channel(broker.revision()?);
        Ok(AppState {
            broker,
            revision,
            publish: Arc::new(publish),
            stopping,
            sessions: Err("this broker was started without a fleet".into()),
            names: Arc::default(),
            recordings: Err("this broker was started without a recordings directory".into()),
            client_silence: relay::CLIENT_SILENCE,
            fleet: Err("this broker was started without a fleet".into()),
        })
    }

    /// Lets this broker open sessions through `hub`, or records why it cannot.
    pub fn with_sessions(mut self, sessions: Result<Arc<hub::Hub>, String>) -> AppState {
        self.sessions = sessions;
        self
    }

    /// Sets how long a session's client may stay silent before it counts as gone.
    pub fn with_client_silence(mut self, limit: Duration) -> AppState {
        self.client_silence = limit;
        self
    }

    /// How long a session's client may stay silent before it counts as gone.
    pub fn client_silence(&self) -> Duration {
        self.client_silence
    }

    /// Lists and scans `fleet`, or records why this broker cannot.
    pub fn with_fleet(mut self, fleet: Result<Arc<AwsFleet>, String>) -> AppState {
        self.fleet = fleet;
        self
    }

    /// The fleet, or why this broker has none.
    pub fn fleet(&self) -> Result<&Arc<AwsFleet>, &str> {
        self.fleet.as_ref().map_err(String::as_str)
    }

    /// Serves the recordings in `archive`.
    pub fn with_recordings(mut self, archive: Arc<recordings::Archive>) -> AppState {
        self.recordings = Ok(archive);
        self
    }

    /// The recordings, or why this broker serves none.
    pub fn recordings(&self) -> Result<&Arc<recordings::Archive>, &str> {
        self.recordings.as_ref().map_err(String::as_str)
    }

    /// The session hub, or why this broker holds no sessions.
    pub fn sessions(&self) -> Result<&Arc<hub::Hub>, &str> {
        self.sessions.as_ref().map_err(String::as_str)
    }

    /// True when `name` is an enrolled user. Blocking: call it off the async threads. The list
    /// is read again only when the store's revision moved.
    pub fn enrolled(&self, name: &str) -> Result<bool, BrokerError> {
        let rev = self.broker.revision()?;
        let cached = {
            let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
            (names.0 == Some(rev)).then(|| Arc::clone(&names.1))
        };
        let names = match cached {
            Some(n) => n,
            None => {
                let fresh: Arc<BTreeSet<String>> =
                    Arc::new(self.broker.users()?.into_iter().map(|u| u.name).collect());
                *self.names.lock().unwrap_or_else(|p| p.into_inner()) =
                    (Some(rev), Arc::clone(&fresh));
                fresh
            }
        };
        Ok(names.contains(name))
    }

    /// Runs a read on a blocking thread.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Broker) -> Result<T, BrokerError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let broker = Arc::clone(&self.broker);
        tokio::task::spawn_blocking(move || f(&broker))
            .await
            .map_err(|e| ApiError::new(ErrorKind::Internal, format!("broker call failed: {e}")))?
            .map_err(ApiError::from)
    }

    /// Runs a write on a blocking thread, then wakes everyone waiting for a change (refusals
    /// write audit events too, so this runs whatever the outcome).
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Broker) -> Result<T, BrokerError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let broker = Arc::clone(&self.broker);
        let out = tokio::task::spawn_blocking(move || {
            let out = f(&broker);
            (out, broker.revision())
        })
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("broker call failed: {e}")))?;
        if let Ok(rev) = out.1 {
            self.publish
                .send_if_modified(|r| std::mem::replace(r, rev) != rev);
        }
        out.0.map_err(ApiError::from)
    }

    /// Waits until the known revision differs from `after`, `wait` passes or the daemon stops.
    pub async fn wait_revision(&self, after: u64, wait: Duration) -> u64 {
        let mut rx = self.revision.clone();
        let mut stopping = self.stopping.clone();
        let changed = async {
            // The guard wait_for returns is not Send: drop it here.
            let _ = rx.wait_for(|r| *r != after).await;
        };
        tokio::select! {
            _ = tokio::time::timeout(wait, changed) => {}
            () = stopped(&mut stopping) => {}
        }
        *self.revision.borrow()
    }

    /// Background upkeep until shutdown: publish revisions written by other processes, and
    /// expire requests past their deadline.
    pub async fn upkeep(self) {
        let mut poll = tokio::time::interval(STORE_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep = tokio::time::interval(SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopping = self.stopping.clone();
        loop {
            tokio::select! {
                _ = poll.tick() => {
                    if let Ok(rev) = self.read(|b| b.revision()).await {
                        self.publish.send_if_modified(|r| std::mem::replace(r, rev) != rev);
                    }
                }
                _ = sweep.tick() => {
                    if let Err(e) = self.write(|b| b.expire_due()).await {
                        tracing::warn!(error = %e.message, "expiry sweep failed");
                    }
                    if let Err(e) = self.write(|b| b.record_suppressed(false)).await {
                        tracing::warn!(error = %e.message, "recording suppressed refusals failed");
                    }
                }
                () = stopped(&mut stopping) => return,
            }
        }
    }
}

pub use crate::shutdown::stopped;

/// The whole HTTP surface: the `/v1` API and the relay's session routes, behind the
/// identity check.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(routes::routes())
        .merge(fleet::routes())
        .merge(notify::routes())
        .merge(emergency::routes())
        .merge(relay::routes())
        .merge(recordings::routes())
        // Inside the identity check: an unknown peer's body is never read.
        .layer(axum::middleware::from_fn(bounds::bounded_body))
        .layer(axum::extract::DefaultBodyLimit::max(bounds::MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            identity::require_identity,
        ))
        .with_state(state)
}
