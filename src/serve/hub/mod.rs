//! The sessions the broker holds for its clients. Each is opened, recorded, watched over and
//! finished (sealed, replaced) here, with the broker's own fleet credentials and recorder key;
//! the requester's client only carries bytes, so it can neither skip nor edit the recording.
//! Approvers and reviewers watch a session read-only; approvers kill it.

mod live;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use crate::broker::{Broker, BrokerError};
use crate::channel::client::SessionEvent;
use crate::channel::payload::SizeData;
use crate::channel::terminal::{EndReason, SessionEnd};
use crate::fleet::{Fleet, FleetError};
use crate::request::Request;
use crate::session::{self, Finished, LiveSession, SessionDeps, SessionError, blocking};
use crate::wire::session::{ServerMsg, clamp_size};

use live::{Clients, Relay, StepFn, steps_to};
pub use live::{Live, Out, Watch};

/// How long a session waits for its requester's client to come back before it ends as a
/// lost connection (a dropped laptop link; a killed client).
pub const CLIENT_GRACE: Duration = Duration::from_secs(5);

/// Why a client could not open, join, watch or kill a session.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The broker refused or failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The session could not be opened.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// No live session of this request is held by this broker.
    #[error("no live session of {id} on this broker: it has not been opened here, or it has ended")]
    NotHere {
        /// The request.
        id: String,
    },
    /// The requester's session already has a connected client.
    #[error("the session of {id} is already connected from another client")]
    Busy {
        /// The request.
        id: String,
    },
    /// The fleet could not end a session held elsewhere.
    #[error("cannot terminate the session: {0}")]
    Fleet(#[from] FleetError),
}

impl HubError {
    /// True when a rule refused (exit status 1, nothing happened).
    pub fn is_refusal(&self) -> bool {
        match self {
            HubError::Broker(e) => e.is_refusal(),
            HubError::Session(e) => e.is_refusal(),
            HubError::Busy { .. } => true,
            HubError::NotHere { .. } | HubError::Fleet(_) => false,
        }
    }

    /// The message that ends a socket with this error.
    pub fn to_msg(&self) -> ServerMsg {
        let refusal = match self {
            HubError::Broker(BrokerError::Refused(r))
            | HubError::Session(SessionError::Broker(BrokerError::Refused(r))) => Some(r.clone()),
            _ => None,
        };
        ServerMsg::Error {
            message: self.to_string(),
            refused: self.is_refusal(),
            refusal,
        }
    }
}

/// The fleet-specific half of the hub: the session path with the broker's own deps.
trait Sessions: Send + Sync {
    fn open(
        &self,
        id: String,
        by: String,
        code: Option<String>,
        size: SizeData,
        command: Option<Vec<String>>,
        step: StepFn,
    ) -> BoxFuture<'static, Result<LiveSession, SessionError>>;
    fn finish(
        &self,
        live: LiveSession,
        end: SessionEnd,
        step: StepFn,
    ) -> BoxFuture<'static, Finished>;
    fn terminate(&self, session_id: String) -> BoxFuture<'static, Result<(), FleetError>>;
}

impl<F: Fleet + Send + Sync + 'static> Sessions for SessionDeps<F> {
    fn open(
        &self,
        id: String,
        by: String,
        code: Option<String>,
        size: SizeData,
        command: Option<Vec<String>>,
        step: StepFn,
    ) -> BoxFuture<'static, Result<LiveSession, SessionError>> {
        let deps = self.clone();
        async move {
            session::open_for(
                &deps,
                &id,
                &by,
                code.as_deref(),
                size,
                command.as_deref(),
                step,
            )
            .await
        }
        .boxed()
    }

    fn finish(
        &self,
        live: LiveSession,
        end: SessionEnd,
        step: StepFn,
    ) -> BoxFuture<'static, Finished> {
        let deps = self.clone();
        async move { session::finish(&deps, live, Ok(end), step).await }.boxed()
    }

    fn terminate(&self, session_id: String) -> BoxFuture<'static, Result<(), FleetError>> {
        let fleet = self.fleet.clone();
        async move { fleet.terminate_session(&session_id).await }.boxed()
    }
}

/// The broker's live sessions.
pub struct Hub {
    broker: Arc<Broker>,
    sessions: Arc<dyn Sessions>,
    live: Mutex<HashMap<String, Arc<Live>>>,
    runners: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    grace: Duration,
}

impl Hub {
    /// A hub that opens sessions with `deps` (the broker's own fleet, recordings and key).
    pub fn new<F: Fleet + Send + Sync + 'static>(deps: SessionDeps<F>) -> Arc<Hub> {
        Arc::new(Hub {
            broker: deps.broker.clone(),
            sessions: Arc::new(deps),
            live: Mutex::new(HashMap::new()),
            runners: Mutex::new(Vec::new()),
            grace: CLIENT_GRACE,
        })
    }

    fn get(&self, id: &str) -> Option<Arc<Live>> {
        self.live.lock().ok().and_then(|m| m.get(id).cloned())
    }

    /// Opens the session of `id` for `by` (who must be its requester, as `begin_open`
    /// checks), or reconnects them to it if this hub already holds it; either way `code` is
    /// checked first when the policy wants a code at open. Steps, then output, then the end go
    /// to `tx`.
    pub async fn open(
        self: &Arc<Self>,
        id: &str,
        by: &str,
        code: Option<String>,
        size: SizeData,
        tx: mpsc::Sender<Out>,
    ) -> Result<Arc<Live>, HubError> {
        self.open_for(id, by, code, size, None, tx).await
    }

    /// [`Hub::open`] for a shell (`command` `None`) or one command (`open REQ -- CMD`); a
    /// reconnect to a live session ignores `command` (the session already runs what it runs).
    pub async fn open_for(
        self: &Arc<Self>,
        id: &str,
        by: &str,
        code: Option<String>,
        size: SizeData,
        command: Option<Vec<String>>,
        tx: mpsc::Sender<Out>,
    ) -> Result<Arc<Live>, HubError> {
        if let Some(live) = self.get(id) {
            if live.request.requester != by {
                // The same refusal as opening it: only the requester holds the session.
                return Err(self
                    .claim(id, by)
                    .await
                    .err()
                    .unwrap_or(HubError::Busy { id: id.to_string() }));
            }
            // Busy is refused before the code, so a refused reconnect spends none.
            if live.connected() {
                return Err(HubError::Busy { id: id.to_string() });
            }
            self.reconnect_code(id, by, code).await?;
            if !live.attach(tx) {
                return Err(HubError::Busy { id: id.to_string() });
            }
            return Ok(live);
        }
        let request = self.claim_check(id).await?;
        let live = Arc::new(Live::new(request, tx));
        let (cols, rows) = clamp_size(size.cols, size.rows);
        let size = SizeData {
            cols: u32::from(cols),
            rows: u32::from(rows),
        };
        let mut opened = self
            .sessions
            .open(
                id.to_string(),
                by.to_string(),
                code,
                size,
                command,
                steps_to(&live),
            )
            .await?;
        // Authorized (the open claimed the request): now the screen gets its size.
        live.with_outlets(|o| o.parser.screen_mut().set_size(rows, cols));
        let Some(events) = opened.events.take() else {
            // Never expected; still end what was opened the way every session ends.
            let why = "the session's events were already taken".to_string();
            let _ = opened.handle.terminate();
            let end = SessionEnd {
                exit_code: None,
                reason: EndReason::Failed(why.clone()),
            };
            self.sessions.finish(opened, end, steps_to(&live)).await;
            return Err(HubError::Broker(BrokerError::Internal(why)));
        };
        let _ = live.ends_at.set(opened.ends_at);
        if let Ok(mut r) = live.relay.lock() {
            *r = Some(Relay {
                handle: opened.handle.clone(),
                tap: opened.tap.clone(),
                terminator: opened.terminator(),
            });
        }
        if let Ok(mut m) = self.live.lock() {
            m.insert(id.to_string(), live.clone());
        }
        live.tell(
            live.with_outlets(|o| live.live_msg(o))
                .unwrap_or(ServerMsg::Notice {
                    text: "connected".into(),
                }),
        );
        let runner = tokio::spawn(self.clone().run(live.clone(), opened, events));
        if let Ok(mut r) = self.runners.lock() {
            r.retain(|h| !h.is_finished());
            r.push(runner);
        }
        Ok(live)
    }

    /// The request as stored (for the screen size and names before the claim).
    async fn claim_check(&self, id: &str) -> Result<Request, HubError> {
        let broker = self.broker.clone();
        let id = id.to_string();
        Ok(blocking(move || broker.get(&id)).await?)
    }

    /// Runs `begin_open` for its refusal (audited like any other attempt; the request is
    /// Active, so the rules refuse before any code is asked for).
    async fn claim(&self, id: &str, by: &str) -> Result<(), HubError> {
        let broker = self.broker.clone();
        let (id, by) = (id.to_string(), by.to_string());
        blocking(move || broker.begin_open(&id, &by, None).map(|_| ())).await?;
        Ok(())
    }

    /// A reconnecting requester proves their authenticator again, as at open (audited).
    async fn reconnect_code(
        &self,
        id: &str,
        by: &str,
        code: Option<String>,
    ) -> Result<(), HubError> {
        let broker = self.broker.clone();
        let (id, by) = (id.to_string(), by.to_string());
        blocking(move || match code {
            Some(code) => broker.verify_code(&by, &code, "reconnect"),
            None if broker.policy()?.mfa.at_open => Err(BrokerError::CodeNeeded {
                name: by,
                action: format!("reconnecting to {id}"),
            }),
            None => Ok(()),
        })
        .await?;
        Ok(())
    }

    /// Relays the session until it ends, whatever its client does; then finishes it.
    async fn run(
        self: Arc<Self>,
        live: Arc<Live>,
        session: LiveSession,
        mut events: mpsc::Receiver<SessionEvent>,
    ) {
        let clients = Clients::new(live.clone(), session.terminator(), self.grace);
        let Ok(end) = session::pump(&session.tap, &mut events, clients).await;
        let done = self.sessions.finish(session, end, steps_to(&live)).await;
        if let Ok(mut m) = self.live.lock() {
            m.remove(&live.request.id);
        }
        live.end(ServerMsg::End {
            reason: done.reason,
            exit_code: done.exit_code,
            seal_error: done.seal.err(),
        })
        .await;
    }

    /// Ends every session this hub holds and waits until each is closed, sealed and its
    /// node replaced (the daemon is stopping; a session must not outlive its recorder).
    pub async fn shutdown(&self) {
        let live: Vec<Arc<Live>> = self
            .live
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        for l in &live {
            l.terminate(&format!(
                "{} (the broker is stopping)",
                crate::broker::SYSTEM_ACTOR
            ));
        }
        let runners = self
            .runners
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        for r in runners {
            let _ = r.await;
        }
    }

    /// Lets `by` watch the session of `id` (approvers and reviewers; audited).
    pub async fn watch(&self, id: &str, by: &str) -> Result<Watch, HubError> {
        let live = self
            .get(id)
            .ok_or_else(|| HubError::NotHere { id: id.to_string() })?;
        let broker = self.broker.clone();
        let (rid, who) = (id.to_string(), by.to_string());
        blocking(move || broker.watch_started(&rid, &who)).await?;
        live.watch()
            .ok_or_else(|| HubError::NotHere { id: id.to_string() })
    }

    /// A fresh view for a watcher that fell behind.
    pub fn rewatch(&self, id: &str) -> Option<Watch> {
        self.get(id).and_then(|l| l.watch())
    }

    /// Audits the end of a watch.
    pub async fn watch_ended(&self, id: &str, by: &str) {
        let broker = self.broker.clone();
        let (rid, who) = (id.to_string(), by.to_string());
        if let Err(e) = blocking(move || broker.watch_ended(&rid, &who)).await {
            tracing::error!(error = %e, "could not audit the end of a watch");
        }
    }

    /// Cuts off the session of `id` on the order of `by` (an approver, with their TOTP code;
    /// audited). A session held elsewhere is ended through the fleet; its holder sees the
    /// request closed.
    pub async fn kill(&self, id: &str, by: &str, code: &str) -> Result<Request, HubError> {
        let broker = self.broker.clone();
        let (rid, who, code) = (id.to_string(), by.to_string(), code.to_string());
        let closed = blocking(move || broker.kill_session(&rid, &who, &code)).await?;
        match self.get(id).and_then(|l| l.relay()) {
            Some(relay) => relay.terminator.terminate(by),
            None => {
                if let Some(sid) = closed.session_id.clone() {
                    self.sessions.terminate(sid).await?;
                }
            }
        }
        Ok(closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Refusal, State};

    #[test]
    fn a_refused_session_tells_its_client_the_typed_refusal() {
        let refusal = Refusal::WrongState {
            id: "req-1".into(),
            state: State::Pending,
            action: "open".into(),
            hint: String::new(),
        };
        for error in [
            HubError::Broker(BrokerError::Refused(refusal.clone())),
            HubError::Session(SessionError::Broker(BrokerError::Refused(refusal.clone()))),
        ] {
            let text = serde_json::to_string(&error.to_msg()).unwrap();
            let ServerMsg::Error {
                message,
                refused,
                refusal: got,
            } = serde_json::from_str::<ServerMsg>(&text).unwrap()
            else {
                unreachable!("not an error frame: {text}");
            };
            assert!(refused);
            assert_eq!(got.as_ref(), Some(&refusal));
            assert_eq!(message, refusal.to_string());
        }
        // Other errors carry none, and the field is not written at all.
        let busy = HubError::Busy { id: "req-1".into() }.to_msg();
        let text = serde_json::to_string(&busy).unwrap();
        assert!(!text.contains("\"refusal\""), "{text}");
    }
}
