//! The sessions the broker holds for its clients. Each is opened, recorded, watched over and
//! finished (sealed, replaced) here, with the broker's own fleet credentials and recorder key;
//! the requester's client only carries bytes, so it can neither skip nor edit the recording.
//! Approvers and reviewers watch a session read-only; approvers kill it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tui_term::vt100;

use crate::broker::{Broker, BrokerError};
use crate::channel::client::{SessionEvent, SessionHandle};
use crate::channel::payload::SizeData;
use crate::channel::terminal::{EndReason, SessionEnd};
use crate::fleet::{Fleet, FleetError};
use crate::request::Request;
use crate::session::{
    self, Finished, LiveSession, RecorderTap, SessionDeps, SessionError, Step, blocking,
};
use crate::wire::session::{ServerMsg, clamp_size};

/// How long a session waits for its requester's client to come back before it ends as a
/// lost connection (a dropped laptop link; a killed client).
pub const CLIENT_GRACE: Duration = Duration::from_secs(5);
/// Output chunks a watcher may fall behind before it is resynchronised from the screen.
const WATCH_BACKLOG: usize = 1024;

/// What the broker sends a connected client or watcher.
#[derive(Debug, Clone)]
pub enum Out {
    /// Terminal bytes.
    Bytes(Vec<u8>),
    /// A control message.
    Msg(ServerMsg),
}

impl Out {
    /// True for the last message a socket carries.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Out::Msg(ServerMsg::End { .. } | ServerMsg::Error { .. })
        )
    }
}

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
        ServerMsg::Error {
            message: self.to_string(),
            refused: self.is_refusal(),
        }
    }
}

type StepFn = Box<dyn FnMut(Step) + Send + 'static>;

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

/// Everything that reads a session's output, kept consistent under one lock: the screen
/// (for watchers joining late and a requester coming back), the watchers, the requester.
struct Outlets {
    parser: vt100::Parser,
    watchers: broadcast::Sender<Out>,
    client: Option<mpsc::Sender<Out>>,
}

/// One session held by the hub.
pub struct Live {
    request: Request,
    /// Set once the request is claimed.
    ends_at: std::sync::OnceLock<chrono::DateTime<chrono::Utc>>,
    outlets: Mutex<Outlets>,
    attached: watch::Sender<bool>,
    relay: Mutex<Option<Relay>>,
}

/// The parts of a live session clients act on (present once the shell is reached).
#[derive(Clone)]
struct Relay {
    handle: SessionHandle,
    tap: RecorderTap,
    terminator: session::Terminator,
}

impl Live {
    /// A session not yet authorized: its screen is 1x1 until [`Live::resize`] after the
    /// broker let the caller open it, so a refused caller costs no screen memory.
    fn new(request: Request, client: mpsc::Sender<Out>) -> Live {
        let (watchers, _) = broadcast::channel(WATCH_BACKLOG);
        Live {
            request,
            ends_at: std::sync::OnceLock::new(),
            outlets: Mutex::new(Outlets {
                parser: vt100::Parser::new(1, 1, 0),
                watchers,
                client: Some(client),
            }),
            attached: watch::Sender::new(true),
            relay: Mutex::new(None),
        }
    }

    /// The request this session belongs to.
    pub fn request(&self) -> &Request {
        &self.request
    }

    fn relay(&self) -> Option<Relay> {
        self.relay.lock().ok().and_then(|r| r.clone())
    }

    fn with_outlets<T>(&self, f: impl FnOnce(&mut Outlets) -> T) -> Option<T> {
        self.outlets.lock().ok().map(|mut o| f(&mut o))
    }

    /// Shows output to the screen, the watchers and the client (waiting on a slow client, as
    /// a terminal would).
    async fn output(&self, bytes: Vec<u8>) {
        if let Some(tx) = self.mirror(&bytes) {
            let _ = tx.send(Out::Bytes(bytes)).await;
        }
    }

    /// Feeds `bytes` to the screen and the watchers; returns the requester's outlet.
    fn mirror(&self, bytes: &[u8]) -> Option<mpsc::Sender<Out>> {
        self.with_outlets(|o| {
            o.parser.process(bytes);
            if o.watchers.receiver_count() > 0 {
                let _ = o.watchers.send(Out::Bytes(bytes.to_vec()));
            }
            o.client.clone()
        })
        .flatten()
    }

    /// A command's standard error: to the client apart from its stdout, to watchers as
    /// screen output (they see what a terminal would).
    async fn stderr(&self, bytes: Vec<u8>) {
        use base64::Engine;
        if let Some(tx) = self.mirror(&bytes) {
            let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let _ = tx.send(Out::Msg(ServerMsg::Stderr { data })).await;
        }
    }

    /// Tells the client and the watchers, without waiting.
    fn tell(&self, msg: ServerMsg) {
        self.with_outlets(|o| {
            let _ = o.watchers.send(Out::Msg(msg.clone()));
            if let Some(tx) = &o.client {
                let _ = tx.try_send(Out::Msg(msg));
            }
        });
    }

    /// The final message: to the client (waiting for room) and the watchers; then no more.
    async fn end(&self, msg: ServerMsg) {
        let client = self.with_outlets(|o| {
            let _ = o.watchers.send(Out::Msg(msg.clone()));
            o.client.take()
        });
        if let Some(Some(tx)) = client {
            let _ = tx.send(Out::Msg(msg)).await;
        }
    }

    fn live_msg(&self, o: &Outlets) -> ServerMsg {
        let (rows, cols) = o.parser.screen().size();
        ServerMsg::Live {
            request: self.request.id.clone(),
            target: self.request.target.clone(),
            requester: self.request.requester.clone(),
            cols,
            rows,
            ends_at: self.ends_at.get().copied(),
        }
    }

    /// The current screen, as bytes that draw it on a cleared terminal.
    fn snapshot(o: &Outlets) -> Vec<u8> {
        let mut bytes = b"\x1b[H\x1b[2J".to_vec();
        bytes.extend(o.parser.screen().state_formatted());
        bytes
    }

    /// Connects the requester's (new) client: it gets the current screen, then the output.
    /// True while a requester's client is connected.
    fn connected(&self) -> bool {
        self.with_outlets(|o| o.client.as_ref().is_some_and(|c| !c.is_closed()))
            .unwrap_or(true)
    }

    fn attach(&self, tx: mpsc::Sender<Out>) -> Result<(), HubError> {
        let busy = HubError::Busy {
            id: self.request.id.clone(),
        };
        let attached = self.with_outlets(|o| {
            if o.client.as_ref().is_some_and(|c| !c.is_closed()) {
                return false;
            }
            let _ = tx.try_send(Out::Msg(self.live_msg(o)));
            let _ = tx.try_send(Out::Bytes(Self::snapshot(o)));
            o.client = Some(tx);
            true
        });
        if attached != Some(true) {
            return Err(busy);
        }
        self.attached.send_replace(true);
        Ok(())
    }

    /// The requester's client `tx` went away: the grace period starts.
    pub fn detach(&self, tx: &mpsc::Sender<Out>) {
        let was_current = self.with_outlets(|o| {
            let current = o.client.as_ref().is_some_and(|c| c.same_channel(tx));
            if current {
                o.client = None;
            }
            current
        });
        if was_current == Some(true) {
            self.attached.send_replace(false);
        }
    }

    /// Keystrokes from the requester: recorded, then sent.
    pub async fn input(&self, bytes: Vec<u8>) {
        if let Some(r) = self.relay() {
            r.tap.input(&bytes);
            let _ = r.handle.send_input(bytes).await;
        }
    }

    /// The requester's terminal size: recorded, forwarded, and shown to watchers.
    pub fn resize(&self, cols: u16, rows: u16) {
        let (cols, rows) = clamp_size(u32::from(cols), u32::from(rows));
        if let Some(r) = self.relay() {
            let _ = r.tap.resize(cols, rows);
        }
        self.with_outlets(|o| {
            o.parser.screen_mut().set_size(rows, cols);
            let _ = o.watchers.send(Out::Msg(ServerMsg::Resize { cols, rows }));
        });
    }

    /// The requester ends the session.
    pub fn terminate(&self, by: &str) {
        if let Some(r) = self.relay() {
            r.terminator.terminate(by);
        }
    }

    fn watch(&self) -> Option<Watch> {
        self.with_outlets(|o| Watch {
            live: self.live_msg(o),
            screen: Self::snapshot(o),
            rx: o.watchers.subscribe(),
        })
    }
}

/// Lifecycle steps, told to the client and the watchers.
fn steps_to(live: &Arc<Live>) -> StepFn {
    let live = live.clone();
    Box::new(move |s: Step| {
        live.tell(ServerMsg::Step {
            text: s.to_string(),
        })
    })
}

/// A watcher's view: where the session stands, its screen, then everything after it.
pub struct Watch {
    /// Sent first.
    pub live: ServerMsg,
    /// Draws the current screen; sent second.
    pub screen: Vec<u8>,
    /// Output and control messages from here on.
    pub rx: broadcast::Receiver<Out>,
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
            live.attach(tx)?;
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
        let terminator = session.terminator();
        let mut attached = live.attached.subscribe();
        let mut lost_at = (!*attached.borrow_and_update()).then(|| Instant::now() + self.grace);
        let mut exit_code = None;
        let end = loop {
            let grace = async {
                match lost_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.recv() => match event {
                    Some(SessionEvent::Output(b)) => {
                        session.tap.output(&b);
                        live.output(b).await;
                    }
                    Some(SessionEvent::Stderr(b)) => {
                        session.tap.output(&b);
                        live.stderr(b).await;
                    }
                    Some(SessionEvent::ExitCode(c)) => exit_code = Some(c),
                    Some(SessionEvent::Notice(text)) => live.tell(ServerMsg::Notice { text }),
                    Some(SessionEvent::Closed { reason }) => {
                        break SessionEnd { exit_code, reason: EndReason::Closed(reason) };
                    }
                    Some(SessionEvent::Failed { error }) => {
                        break SessionEnd { exit_code, reason: EndReason::Failed(error) };
                    }
                    None => break SessionEnd {
                        exit_code,
                        reason: EndReason::Failed("the session task stopped".into()),
                    },
                },
                changed = attached.changed() => {
                    if changed.is_ok() {
                        lost_at = (!*attached.borrow_and_update())
                            .then(|| Instant::now() + self.grace);
                    }
                }
                () = grace => {
                    tracing::warn!(request = %live.request.id, "the requester's client is gone; ending the session");
                    lost_at = None;
                    terminator.lost();
                }
            }
        };
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
