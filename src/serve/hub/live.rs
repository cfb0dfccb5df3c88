//! One session the hub holds: its screen, its watchers and its requester's client, and the
//! outlet the live-session pump shows its output through.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tui_term::vt100;

use crate::channel::client::SessionHandle;
use crate::channel::pump::Outlet;
use crate::request::Request;
use crate::session::{RecorderTap, Step, Terminator};
use crate::wire::session::{ServerMsg, clamp_size};

/// Output chunks a watcher may fall behind before it is resynchronised from the screen.
const WATCH_BACKLOG: usize = 1024;

/// Lifecycle steps, as the session path takes them.
pub(super) type StepFn = Box<dyn FnMut(Step) + Send + 'static>;

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

/// Everything that reads a session's output, kept consistent under one lock: the screen
/// (for watchers joining late and a requester coming back), the watchers, the requester.
pub(super) struct Outlets {
    pub(super) parser: vt100::Parser,
    watchers: broadcast::Sender<Out>,
    client: Option<mpsc::Sender<Out>>,
}

/// One session held by the hub.
pub struct Live {
    pub(super) request: Request,
    /// Set once the request is claimed.
    pub(super) ends_at: std::sync::OnceLock<chrono::DateTime<chrono::Utc>>,
    outlets: Mutex<Outlets>,
    attached: watch::Sender<bool>,
    pub(super) relay: Mutex<Option<Relay>>,
}

/// The parts of a live session clients act on (present once the shell is reached).
#[derive(Clone)]
pub(super) struct Relay {
    pub(super) handle: SessionHandle,
    pub(super) tap: RecorderTap,
    pub(super) terminator: Terminator,
}

impl Live {
    /// A session not yet authorized: its screen is 1x1 until [`Live::resize`] after the
    /// broker let the caller open it, so a refused caller costs no screen memory.
    pub(super) fn new(request: Request, client: mpsc::Sender<Out>) -> Live {
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

    pub(super) fn relay(&self) -> Option<Relay> {
        self.relay.lock().ok().and_then(|r| r.clone())
    }

    pub(super) fn with_outlets<T>(&self, f: impl FnOnce(&mut Outlets) -> T) -> Option<T> {
        self.outlets.lock().ok().map(|mut o| f(&mut o))
    }

    /// Shows output to the screen, the watchers and the client (waiting on a slow client, as
    /// a terminal would).
    pub(super) async fn output(&self, bytes: Vec<u8>) {
        if let Some(tx) = self.mirror(&bytes) {
            let _ = tx.send(Out::Bytes(bytes)).await;
        }
    }

    /// Feeds `bytes` to the screen and the watchers; returns the requester's outlet.
    pub(super) fn mirror(&self, bytes: &[u8]) -> Option<mpsc::Sender<Out>> {
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
    pub(super) async fn stderr(&self, bytes: Vec<u8>) {
        use base64::Engine;
        if let Some(tx) = self.mirror(&bytes) {
            let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let _ = tx.send(Out::Msg(ServerMsg::Stderr { data })).await;
        }
    }

    /// Tells the client and the watchers, without waiting.
    pub(super) fn tell(&self, msg: ServerMsg) {
        self.with_outlets(|o| {
            let _ = o.watchers.send(Out::Msg(msg.clone()));
            if let Some(tx) = &o.client {
                let _ = tx.try_send(Out::Msg(msg));
            }
        });
    }

    /// The final message: to the client (waiting for room) and the watchers; then no more.
    pub(super) async fn end(&self, msg: ServerMsg) {
        let client = self.with_outlets(|o| {
            let _ = o.watchers.send(Out::Msg(msg.clone()));
            o.client.take()
        });
        if let Some(Some(tx)) = client {
            let _ = tx.send(Out::Msg(msg)).await;
        }
    }

    pub(super) fn live_msg(&self, o: &Outlets) -> ServerMsg {
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
    pub(super) fn snapshot(o: &Outlets) -> Vec<u8> {
        let mut bytes = b"\x1b[H\x1b[2J".to_vec();
        bytes.extend(o.parser.screen().state_formatted());
        bytes
    }

    /// True while a requester's client is connected.
    pub(super) fn connected(&self) -> bool {
        self.with_outlets(|o| o.client.as_ref().is_some_and(|c| !c.is_closed()))
            .unwrap_or(true)
    }

    /// Connects the requester's (new) client: it gets the current screen, then the output.
    /// False when another client is connected (busy).
    pub(super) fn attach(&self, tx: mpsc::Sender<Out>) -> bool {
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
            return false;
        }
        self.attached.send_replace(true);
        true
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

    pub(super) fn watch(&self) -> Option<Watch> {
        self.with_outlets(|o| Watch {
            live: self.live_msg(o),
            screen: Self::snapshot(o),
            rx: o.watchers.subscribe(),
        })
    }
}

/// Lifecycle steps, told to the client and the watchers.
pub(super) fn steps_to(live: &Arc<Live>) -> StepFn {
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

/// The hub's clients as the live session's outlet: output to the screen, the watchers and
/// the requester; the session ends when the requester's client stays away past the grace.
pub(super) struct Clients {
    live: Arc<Live>,
    terminator: Terminator,
    attached: watch::Receiver<bool>,
    lost_at: Option<Instant>,
    grace: Duration,
}

impl Clients {
    /// Starts watching whether the requester's client is connected.
    pub(super) fn new(live: Arc<Live>, terminator: Terminator, grace: Duration) -> Clients {
        let mut attached = live.attached.subscribe();
        let lost_at = (!*attached.borrow_and_update()).then(|| Instant::now() + grace);
        Clients {
            live,
            terminator,
            attached,
            lost_at,
            grace,
        }
    }
}

/// What the hub waits for besides the session: the client coming or going, or the grace
/// running out.
pub(super) enum ClientWake {
    /// The attached flag changed (`false`: its sender is gone).
    Attached(bool),
    /// The requester's client stayed away too long.
    GraceOver,
}

impl Outlet for Clients {
    type Wake = ClientWake;
    type Error = Infallible;

    async fn wake(&mut self) -> ClientWake {
        let lost_at = self.lost_at;
        let grace = async move {
            match lost_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = self.attached.changed() => ClientWake::Attached(changed.is_ok()),
            () = grace => ClientWake::GraceOver,
        }
    }

    async fn woken(&mut self, wake: ClientWake) -> Result<(), Infallible> {
        match wake {
            ClientWake::Attached(true) => {
                self.lost_at =
                    (!*self.attached.borrow_and_update()).then(|| Instant::now() + self.grace);
            }
            ClientWake::Attached(false) => {}
            ClientWake::GraceOver => {
                tracing::warn!(request = %self.live.request.id, "the requester's client is gone; ending the session");
                self.lost_at = None;
                self.terminator.lost();
            }
        }
        Ok(())
    }

    async fn output(&mut self, bytes: Vec<u8>) -> Result<(), Infallible> {
        self.live.output(bytes).await;
        Ok(())
    }

    async fn stderr(&mut self, bytes: Vec<u8>) -> Result<(), Infallible> {
        self.live.stderr(bytes).await;
        Ok(())
    }

    async fn exit_code(&mut self, _code: i32) -> Result<(), Infallible> {
        Ok(())
    }

    async fn notice(&mut self, text: String) -> Result<(), Infallible> {
        self.live.tell(ServerMsg::Notice { text });
        Ok(())
    }
}
