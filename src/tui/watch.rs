//! The driver's background readers: the broker's changes (a daemon's long-poll, or an
//! embedded broker's revision read now and then) and the fleet listing, sent to the loop as
//! actions.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::{MissedTickBehavior, interval};

use crate::api::{BrokerApi, MAX_WAIT};
use crate::backend::Backend;

use super::action::Action;
use super::broker_view;
use super::fleet_view;
use super::model::{BrokerSnapshot, Loadable};

/// How often the broker's revision is polled (changes from other processes).
pub const REVISION_POLL: Duration = Duration::from_millis(250);
/// How often the fleet is listed again.
pub const FLEET_POLL: Duration = Duration::from_secs(10);

/// Shared between the driver's loop and these readers.
pub(super) struct Shared {
    pub(super) broker: Arc<dyn BrokerApi>,
    pub(super) backend: Arc<dyn Backend>,
    pub(super) recordings: bool,
    pub(super) user: watch::Sender<String>,
    pub(super) reload_broker: Notify,
    pub(super) reload_fleet: Notify,
    pub(super) actions: mpsc::UnboundedSender<Action>,
}

/// Follows the broker's changes (and reload requests) and sends fresh snapshots: a daemon's by
/// long-polling its revision, so a change arrives at once and an idle TUI costs one request per
/// [`MAX_WAIT`]; an embedded broker's by reading its revision every [`REVISION_POLL`].
pub(super) async fn watch_broker(shared: Arc<Shared>) {
    if shared.broker.waits_for_changes() {
        return long_poll_broker(shared).await;
    }
    let mut poll = interval(REVISION_POLL);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last: Option<u64> = None;
    let mut seen_user = shared.user.subscribe();
    loop {
        let forced = tokio::select! {
            _ = poll.tick() => false,
            _ = shared.reload_broker.notified() => true,
        };
        let user_changed = seen_user.has_changed().unwrap_or(false);
        let user = seen_user.borrow_and_update().clone();
        let read = read_broker(&shared, user, forced || user_changed, last).await;
        last = read.as_ref().ok().map(|(rev, _)| *rev);
        if !send_read(&shared, read) {
            return;
        }
    }
}

/// How long a TUI on a daemon waits before asking again after the daemon failed.
const RECONNECT: Duration = Duration::from_secs(1);

/// [`watch_broker`] for a daemon: one long-poll in flight at a time, kept across reload
/// requests (which read at once).
async fn long_poll_broker(shared: Arc<Shared>) {
    let mut seen_user = shared.user.subscribe();
    let mut last: Option<u64> = None;
    let mut waiting: Option<oneshot::Receiver<Result<u64, String>>> = None;
    loop {
        let mut forced = last.is_none();
        if let Some(after) = last {
            let wait = waiting.get_or_insert_with(|| long_poll(&shared, after));
            tokio::select! {
                r = wait => {
                    waiting = None;
                    match r.unwrap_or_else(|_| Err("the broker reader stopped".into())) {
                        Ok(rev) if rev == after => continue,
                        Ok(_) => {}
                        Err(e) => {
                            last = None;
                            if shared.actions.send(Action::ConnectionLost(e)).is_err() {
                                return;
                            }
                            tokio::time::sleep(RECONNECT).await;
                            continue;
                        }
                    }
                }
                _ = shared.reload_broker.notified() => forced = true,
                Ok(()) = seen_user.changed() => forced = true,
            }
        }
        let user = seen_user.borrow_and_update().clone();
        let read = read_broker(&shared, user, forced, last).await;
        let failed = read.is_err();
        last = read.as_ref().ok().map(|(rev, _)| *rev);
        if !send_read(&shared, read) {
            return;
        }
        if failed {
            tokio::time::sleep(RECONNECT).await;
        }
    }
}

/// Waits for the daemon's revision to move past `after` on a thread of its own: not one of
/// the runtime's blocking threads, which would hold up leaving the TUI until the wait ends.
fn long_poll(shared: &Arc<Shared>, after: u64) -> oneshot::Receiver<Result<u64, String>> {
    let (tx, rx) = oneshot::channel();
    let s = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("sombrero-long-poll".into())
        .spawn(move || {
            let _ = tx.send(
                s.broker
                    .wait_revision(after, MAX_WAIT)
                    .map_err(|e| e.to_string()),
            );
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the long-poll thread");
    }
    rx
}

/// The broker's revision, and a snapshot when it moved past `last` or `forced`.
async fn read_broker(
    shared: &Arc<Shared>,
    user: String,
    forced: bool,
    last: Option<u64>,
) -> Result<(u64, Option<BrokerSnapshot>), String> {
    let stopped = |e: tokio::task::JoinError| format!("the broker reader stopped: {e}");
    let s = Arc::clone(shared);
    let rev = tokio::task::spawn_blocking(move || s.broker.revision().map_err(|e| e.to_string()))
        .await
        .map_err(stopped)??;
    if !forced && Some(rev) == last {
        return Ok((rev, None));
    }
    let recordings = if shared.recordings {
        super::recording_rows::listed(&*shared.backend).await
    } else {
        Vec::new()
    };
    let s = Arc::clone(shared);
    let snap = tokio::task::spawn_blocking(move || {
        broker_view::snapshot(&*s.broker, &user, recordings).map_err(|e| e.to_string())
    })
    .await
    .map_err(stopped)??;
    Ok((rev, Some(snap)))
}

/// Sends what [`read_broker`] found (nothing when nothing moved); false once the UI is gone.
fn send_read(shared: &Shared, read: Result<(u64, Option<BrokerSnapshot>), String>) -> bool {
    let action = match read {
        Ok((_, None)) => return true,
        Ok((_, Some(snap))) => Action::Snapshot(Box::new(snap)),
        Err(e) => Action::ConnectionLost(e),
    };
    shared.actions.send(action).is_ok()
}

/// Lists the fleet now and then (and on reload requests).
pub(super) async fn watch_fleet(shared: Arc<Shared>) {
    let mut poll = interval(FLEET_POLL);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut loaded = false;
    loop {
        tokio::select! {
            _ = poll.tick() => {}
            _ = shared.reload_fleet.notified() => {}
        }
        let action = match shared.backend.fleet().await.map_err(|e| e.to_string()) {
            Ok(rows) => {
                loaded = true;
                Action::Fleet(Loadable::Ready(
                    rows.iter().map(fleet_view::listed_row).collect(),
                ))
            }
            Err(e) if !loaded => Action::Fleet(Loadable::Failed(e)),
            Err(e) => Action::ConnectionLost(format!("fleet: {e}")),
        };
        if shared.actions.send(action).is_err() {
            return;
        }
    }
}
