//! Plugs the real parts into the TUI: the session path (recorded, tainted, replaced), the
//! recordings list and the player. The TUI itself knows none of them.

use std::path::PathBuf;
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use futures_util::FutureExt;
use tokio::sync::mpsc;

use super::recordings::{Shown, play_file};
use crate::api::BrokerApi;
use crate::broker::Broker;
use crate::channel::client::SessionEvent;
use crate::channel::payload::SizeData;
use crate::fleet::Fleet;
use crate::recording::flags::FlagCounts;
use crate::recording::{Integrity as Verdict, flags, list};
use crate::remote::session::{self as relay, Relayed};
use crate::remote::{Connector, RemoteBroker};
use crate::review;
use crate::session::{self, SessionDeps, Terminator};
use crate::tui::driver::{
    FleetFn, OpenSessionFn, OpenedSession, RecordingsFn, ReplayFn, SessionControl, SessionRequest,
};
use crate::tui::fleet_view;
use crate::tui::model::{FlagLevel, FlagSummary, Integrity, RecordingRow};

/// Session events and keystrokes queued between the TUI and the data channel.
const QUEUE: usize = 256;

/// Resizes are recorded, then forwarded; terminating is recorded as the person's act.
struct Control {
    tap: session::RecorderTap,
    terminator: Terminator,
    user: String,
}

impl SessionControl for Control {
    fn resize(&self, rows: u16, cols: u16) -> Result<(), String> {
        // Recorded, then forwarded: the remote pty must follow the pane.
        self.tap.resize(cols, rows).map_err(|e| e.to_string())
    }

    fn terminate(&self) -> Result<(), String> {
        self.terminator.terminate(&self.user);
        Ok(())
    }
}

/// Opens sessions from the TUI through the same path as `sombrero open`: every step, the
/// recording, the expiry watchdog, sealing and replacement show up as notices in the pane.
pub fn session_opener<F: Fleet + Send + Sync + 'static>(deps: SessionDeps<F>) -> OpenSessionFn {
    Arc::new(move |req: SessionRequest| {
        let deps = deps.clone();
        async move { open_for_tui(deps, req).await }.boxed()
    })
}

async fn open_for_tui<F: Fleet + Send + Sync + 'static>(
    deps: SessionDeps<F>,
    req: SessionRequest,
) -> Result<OpenedSession, String> {
    if req.watch {
        return Err(
            "Watching needs a broker daemon: a session opened without one lives in the process that opened it."
                .to_string(),
        );
    }
    let size = SizeData {
        cols: u32::from(req.cols),
        rows: u32::from(req.rows),
    };
    let (steps_tx, steps) = mpsc::unbounded_channel();
    let mut live = session::open(
        &deps,
        &req.request_id,
        &req.user,
        req.code.as_deref(),
        size,
        move |s| {
            let _ = steps_tx.send(s);
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut channel = live
        .events
        .take()
        .ok_or_else(|| "the session's events were already taken".to_string())?;
    let (ui, events) = mpsc::channel(QUEUE);
    let (input, mut keys) = mpsc::channel::<Vec<u8>>(QUEUE);
    let opened = OpenedSession {
        target: live.request.target.clone(),
        ends_at: Some(live.ends_at),
        recording: true,
        input,
        control: Box::new(Control {
            tap: live.tap.clone(),
            terminator: live.terminator(),
            user: req.user.clone(),
        }),
        events,
    };

    // Keystrokes: recorded, then sent, in order.
    let (tap, handle) = (live.tap.clone(), live.handle.clone());
    tokio::spawn(async move {
        while let Some(bytes) = keys.recv().await {
            tap.input(&bytes);
            if handle.send_input(bytes).await.is_err() {
                break;
            }
        }
    });

    // Output: recorded, then shown; at the end, close, seal and replace with progress.
    tokio::spawn(async move {
        let to = ui.clone();
        let Ok(end) = session::pump(&live.tap, &mut channel, session::Forward { to, steps }).await;
        let done = session::finish(&deps, live, Ok(end), |s| {
            let _ = ui.try_send(SessionEvent::Notice(s.to_string()));
        })
        .await;
        let summary = match &done.seal {
            Ok(_) => format!("{}; recording sealed", done.reason),
            Err(why) => format!("{}; RECORDING NOT SEALED: {why}", done.reason),
        };
        let _ = ui.send(SessionEvent::Closed { reason: summary }).await;
    });
    Ok(opened)
}

/// Opens sessions from the TUI through a broker daemon on `connector`: the daemon opens,
/// records, seals and replaces; the pane only carries bytes (steps show as notices).
pub fn relay_opener(connector: Arc<dyn Connector>) -> OpenSessionFn {
    Arc::new(move |req: SessionRequest| {
        let connector = connector.clone();
        async move { open_relayed(connector, req).await }.boxed()
    })
}

async fn open_relayed(
    connector: Arc<dyn Connector>,
    req: SessionRequest,
) -> Result<OpenedSession, String> {
    let size = SizeData {
        cols: u32::from(req.cols),
        rows: u32::from(req.rows),
    };
    let path = if req.watch {
        relay::watch_path(&req.request_id)
    } else {
        relay::session_path(&req.request_id, size)
    };
    let io = connector
        .connect()
        .await
        .map_err(|e| format!("cannot reach the broker: {e}"))?;
    let http = relay::request_for(&*connector, &io, &path)
        .await
        .and_then(|http| relay::with_code(http, req.code.as_deref()))
        .map_err(|e| e.to_string())?;
    let (relayed, events) = relay::connect(io, http).await.map_err(|e| e.to_string())?;
    let (input, mut keys) = mpsc::channel::<Vec<u8>>(QUEUE);
    let handle = relayed.handle.clone();
    tokio::spawn(async move {
        while let Some(bytes) = keys.recv().await {
            if handle.send_input(bytes).await.is_err() {
                break;
            }
        }
    });
    Ok(OpenedSession {
        target: relayed.target.clone(),
        ends_at: relayed.ends_at,
        recording: true,
        input,
        control: Box::new(RelayControl {
            relayed,
            watch: req.watch,
        }),
        events,
    })
}

/// Resizes and terminate go to the broker, which records and forwards them; a watcher's
/// "end" only stops watching.
struct RelayControl {
    relayed: Relayed,
    watch: bool,
}

impl SessionControl for RelayControl {
    fn resize(&self, rows: u16, cols: u16) -> Result<(), String> {
        if self.watch {
            return Ok(());
        }
        self.relayed
            .handle
            .resize(cols, rows)
            .map_err(|e| e.to_string())
    }

    fn terminate(&self) -> Result<(), String> {
        if self.watch {
            self.relayed.close();
            return Ok(());
        }
        self.relayed.handle.terminate().map_err(|e| e.to_string())
    }
}

/// Lists the recordings in `dir`, verified against `key`, with sign-offs from the audit log
/// and their flagged commands counted under the broker's rules (cached per file).
pub fn recordings_fn(broker: Arc<Broker>, dir: PathBuf, key: Option<VerifyingKey>) -> RecordingsFn {
    let cache = std::sync::Mutex::new(list::ListCache::default());
    Arc::new(move || {
        let rules = local_rules(&broker).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "policy unreadable: flags counted under the default rules");
            flags::default_rules()
        });
        let listed = match cache.lock() {
            Ok(mut c) => c.list(&dir, key.as_ref()).map(|mut all| {
                c.attach_flags(&mut all, &rules);
                all
            }),
            Err(_) => list::list(&dir, key.as_ref()).map(|mut all| {
                list::ListCache::default().attach_flags(&mut all, &rules);
                all
            }),
        };
        let Ok(mut all) = listed else {
            return Vec::new();
        };
        if let Ok(log) = review::audit_log(&broker) {
            crate::recording::audited::check_listing(&mut all, &log);
        }
        review::attach(&mut all, review::by_digest(&broker).unwrap_or_default());
        rows(all)
    })
}

/// Lists the recordings a broker daemon keeps that this identity may see (verified by the
/// daemon; replaying verifies again here).
pub fn remote_recordings_fn(remote: Arc<RemoteBroker>) -> RecordingsFn {
    Arc::new(move || match remote.recordings() {
        Ok(all) => rows(all),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the broker's recordings");
            Vec::new()
        }
    })
}

/// The Fleet view's listing from a broker daemon: it lists with its own fleet credentials.
pub fn remote_fleet_fn(remote: Arc<RemoteBroker>) -> FleetFn {
    Arc::new(move || {
        let remote = Arc::clone(&remote);
        async move {
            let rows = tokio::task::spawn_blocking(move || remote.fleet())
                .await
                .map_err(|e| format!("cannot list the fleet: {e}"))?
                .map_err(|e| e.to_string())?;
            Ok(rows.iter().map(fleet_view::listed_row).collect())
        }
        .boxed()
    })
}

/// The risk rules of this broker: the defaults plus its policy's `[[review.flag]]`.
fn local_rules(broker: &Broker) -> Result<Vec<flags::FlagRule>, String> {
    let policy = broker.policy().map_err(|e| e.to_string())?;
    Ok(flags::with_defaults(policy.review_flags))
}

/// Rows for the Recordings view, newest first (the reviewer usually wants the session that
/// just ended).
fn rows(all: Vec<list::RecordingSummary>) -> Vec<RecordingRow> {
    all.into_iter()
        .rev()
        .map(|r| {
            let meta = r.meta.as_ref();
            let field = |f: fn(&crate::recording::cast::SombreroHeader) -> &String| {
                // A cast's header is text like any other: shown, never obeyed.
                meta.map(|m| crate::text::escaped(f(m))).unwrap_or_default()
            };
            RecordingRow {
                request: field(|m| &m.request_id),
                target: field(|m| &m.target),
                user: field(|m| &m.requester),
                started_at: r
                    .timestamp
                    .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                    .unwrap_or_default(),
                duration_secs: r.duration.max(0.0) as u64,
                integrity: match &r.integrity {
                    Verdict::Sealed { .. } => Integrity::Sealed,
                    Verdict::Unsealed { .. } | Verdict::Crashed { .. } => Integrity::Unsealed,
                    other => Integrity::Broken(other.to_string()),
                },
                reviewed_by: r
                    .reviews
                    .last()
                    .map(|rv| crate::text::escaped(&rv.reviewer)),
                flags: r.flags.map(flag_summary),
                path: r.path,
            }
        })
        .collect()
}

/// The Recordings view's FLAGS cell from a listing's counts.
fn flag_summary(counts: FlagCounts) -> FlagSummary {
    let worst = [
        (counts.high, FlagLevel::High),
        (counts.medium, FlagLevel::Medium),
        (counts.low, FlagLevel::Low),
    ]
    .into_iter()
    .find(|(n, _)| *n > 0)
    .map(|(_, level)| level);
    FlagSummary {
        text: counts.badge(),
        worst,
    }
}

/// Plays a recording full-screen (the TUI hands the terminal over while it runs), its verdict
/// held to `broker`'s audit log as `sombrero verify` holds it.
pub fn replay_fn(broker: Arc<Broker>, key: Option<VerifyingKey>) -> ReplayFn {
    Arc::new(move |path: PathBuf| {
        let audit = review::audit_log(&broker)
            .map_err(|e| e.to_string())?
            .lookup_file(&path);
        let rules = local_rules(&broker)?;
        let shown = Shown {
            key: key.as_ref(),
            audit: Some(&audit),
            rules: &rules,
        };
        play_file(&path, shown, 1.0, 2.0).map_err(|e| format!("{e:#}"))
    })
}

/// Downloads a recording from a broker daemon into a private temporary directory and plays
/// it, verified here against the daemon's recorder key.
pub fn remote_replay_fn(remote: Arc<RemoteBroker>) -> ReplayFn {
    Arc::new(move |name: PathBuf| {
        let name = name.to_string_lossy();
        let key = remote.recorder_key().map_err(|e| e.to_string())?;
        let fetched = remote.fetch(&name).map_err(|e| e.to_string())?;
        let audit = remote.recording_audit(&name).map_err(|e| e.to_string())?;
        let extra = remote.policy().map_err(|e| e.to_string())?.review_flags;
        let shown = Shown {
            key: Some(&key),
            audit: Some(&audit),
            rules: &flags::with_defaults(extra),
        };
        play_file(&fetched.cast, shown, 1.0, 2.0).map_err(|e| format!("{e:#}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_cells_name_the_worst_severity() {
        let cell = |high, medium, low| flag_summary(FlagCounts { high, medium, low });
        assert_eq!(
            cell(2, 1, 0),
            FlagSummary {
                text: "2H 1M".into(),
                worst: Some(FlagLevel::High)
            }
        );
        assert_eq!(cell(0, 0, 3).worst, Some(FlagLevel::Low));
        assert_eq!(
            cell(0, 0, 0),
            FlagSummary {
                text: "-".into(),
                worst: None
            }
        );
    }
}
