//! The websocket side of the data channel: dials the StreamUrl, sends the open frame, runs one
//! task that owns the socket and the pure [`Session`], and reconnects through ResumeSession when
//! the socket is lost. Callers talk to the task through a [`SessionHandle`] and receive
//! [`SessionEvent`]s on a bounded channel (back-pressure reaches the socket, not memory).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, SinkExt, StreamExt};
use rand::Rng;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::limits;
use super::payload::{OpenDataChannelInput, SizeData, new_id};
use super::session::{Counters, Effect, Phase, Session};

mod dial;
mod driver;

use dial::*;
use driver::*;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where a session's data channel lives, from the StartSession response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTarget {
    /// `StreamUrl` (ws:// or wss://); reconnects always use this original URL.
    pub stream_url: String,
    /// `TokenValue`.
    pub token: String,
    /// `SessionId`, passed to [`Resume`].
    pub session_id: String,
}

/// Error from a [`Resume`] call; the client retries it.
pub type ResumeError = Box<dyn std::error::Error + Send + Sync>;

/// Resumes a session after a socket loss (wraps the ResumeSession API).
pub trait Resume: Send + Sync {
    /// A fresh token for `session_id`, or `None` when the session can no longer be resumed.
    fn resume<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ResumeError>>;
}

/// A [`Resume`] from an async closure, e.g. one calling aws-sdk-ssm's ResumeSession:
/// `resume_fn(move |id| { let c = client.clone(); async move { ... } })`.
pub fn resume_fn<F, Fut>(f: F) -> Arc<dyn Resume>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<String>, ResumeError>> + Send + 'static,
{
    struct FnResume<F>(F);
    impl<F, Fut> Resume for FnResume<F>
    where
        F: Fn(String) -> Fut + Send + Sync,
        Fut: Future<Output = Result<Option<String>, ResumeError>> + Send + 'static,
    {
        fn resume<'a>(
            &'a self,
            session_id: &'a str,
        ) -> BoxFuture<'a, Result<Option<String>, ResumeError>> {
            Box::pin((self.0)(session_id.to_string()))
        }
    }
    Arc::new(FnResume(f))
}

/// Credentials for SigV4-signing the websocket upgrade (service `ssmmessages`).
#[derive(Debug, Clone)]
pub struct Signing {
    /// Resolved afresh on every dial, so refreshed credentials are picked up.
    pub credentials: SharedCredentialsProvider,
    /// Signing region.
    pub region: String,
}

/// How to run a session.
#[derive(Clone)]
pub struct ClientOptions {
    /// Terminal size sent right after the handshake.
    pub initial_size: SizeData,
    /// Reconnects after socket loss when set; without it a lost socket ends the session.
    pub resume: Option<Arc<dyn Resume>>,
    /// Signs the upgrade request when set (the gateway accepts unsigned upgrades too).
    pub signing: Option<Signing>,
    /// Reported in the open frame and handshake response.
    pub client_version: String,
    /// Silence from the server, while input waits for an ack, after which the socket is
    /// treated as lost (default [`limits::STALL_TIMEOUT`]).
    pub stall_timeout: Duration,
    /// Time allowed for the agent's handshake (default [`limits::HANDSHAKE_TIMEOUT`]).
    pub handshake_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            initial_size: SizeData {
                cols: limits::DEFAULT_COLS,
                rows: limits::DEFAULT_ROWS,
            },
            resume: None,
            signing: None,
            client_version: limits::CLIENT_VERSION.to_string(),
            stall_timeout: limits::STALL_TIMEOUT,
            handshake_timeout: limits::HANDSHAKE_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("initial_size", &self.initial_size)
            .field("resume", &self.resume.is_some())
            .field("signing", &self.signing.as_ref().map(|s| &s.region))
            .field("client_version", &self.client_version)
            .field("stall_timeout", &self.stall_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

/// What the session reports to its caller, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// Remote terminal output.
    Output(Vec<u8>),
    /// Remote standard error.
    Stderr(Vec<u8>),
    /// The remote shell's exit status.
    ExitCode(i32),
    /// Text for the person at the terminal (customer message, reconnecting, ...).
    Notice(String),
    /// The session ended normally (channel_closed or terminate); `reason` is the service's text.
    Closed {
        /// Why, as the service or client put it; may be empty.
        reason: String,
    },
    /// The session ended because it could not continue.
    Failed {
        /// What went wrong and what to do.
        error: String,
    },
}

/// Errors of the data channel client.
#[derive(Debug, Error)]
pub enum ChannelError {
    /// The StreamUrl is not a usable websocket URL.
    #[error("invalid StreamUrl {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The websocket could not be opened.
    #[error("could not open the data channel at {url}: {reason}")]
    Dial {
        /// The URL (without query, which may carry routing data).
        url: String,
        /// The underlying error.
        reason: String,
    },
    /// Signing the upgrade failed.
    #[error("could not sign the data channel request: {0}; check the AWS credentials")]
    Sign(String),
    /// The session has ended; the handle can no longer be used.
    #[error("the session has ended")]
    Ended,
}

/// Counters of a running session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frame counters of the session core.
    pub counters: Counters,
    /// Successful reconnects after socket loss.
    pub reconnects: u64,
}

/// A control request from a [`SessionHandle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// The terminal has a new size.
    Resize(SizeData),
    /// End the session.
    Terminate,
}

/// The far ends of a [`SessionHandle::detached`] handle.
#[derive(Debug)]
pub struct HandleEnds {
    /// Input, in order.
    pub input: mpsc::Receiver<Vec<u8>>,
    /// Resizes and terminate requests.
    pub control: mpsc::UnboundedReceiver<Control>,
}

/// Sends input and control to a running session. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    input: mpsc::Sender<Vec<u8>>,
    control: mpsc::UnboundedSender<Control>,
    stats: Arc<Mutex<Stats>>,
}

impl SessionHandle {
    /// A handle for a session that runs elsewhere (relayed by a broker): what it is asked to
    /// do arrives on the returned ends, so the local terminal bridge can drive any transport.
    pub fn detached() -> (SessionHandle, HandleEnds) {
        let (input, input_rx) = mpsc::channel(limits::BYTE_CHANNEL_CAPACITY);
        let (control, control_rx) = mpsc::unbounded_channel();
        let handle = SessionHandle {
            input,
            control,
            stats: Arc::new(Mutex::new(Stats::default())),
        };
        let ends = HandleEnds {
            input: input_rx,
            control: control_rx,
        };
        (handle, ends)
    }

    /// Queues terminal input (waits while the bounded queue is full).
    pub async fn send_input(&self, data: Vec<u8>) -> Result<(), ChannelError> {
        self.input.send(data).await.map_err(|_| ChannelError::Ended)
    }

    /// Reports a new terminal size.
    pub fn resize(&self, cols: u16, rows: u16) -> Result<(), ChannelError> {
        let size = SizeData {
            cols: u32::from(cols),
            rows: u32::from(rows),
        };
        self.control
            .send(Control::Resize(size))
            .map_err(|_| ChannelError::Ended)
    }

    /// Asks the agent to end the session (Flag TerminateSession), then closes the socket.
    pub fn terminate(&self) -> Result<(), ChannelError> {
        self.control
            .send(Control::Terminate)
            .map_err(|_| ChannelError::Ended)
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }
}

/// Opens the data channel and starts the session task.
pub async fn connect(
    target: SessionTarget,
    options: ClientOptions,
) -> Result<(SessionHandle, mpsc::Receiver<SessionEvent>), ChannelError> {
    let client_id = Uuid::new_v4().to_string();
    let ws = dial(&target, &target.token, &client_id, &options).await?;
    let (input_tx, input_rx) = mpsc::channel(limits::BYTE_CHANNEL_CAPACITY);
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::channel(limits::BYTE_CHANNEL_CAPACITY);
    let stats = Arc::new(Mutex::new(Stats::default()));
    let driver = Driver {
        session: Session::new(options.initial_size, &options.client_version),
        target,
        options,
        client_id,
        events: events_tx,
        input: input_rx,
        control: control_rx,
        stats: Arc::clone(&stats),
        terminate_by: None,
        reconnects: 0,
        last_inbound: Instant::now(),
        started: Instant::now(),
        unflushed: false,
        batching: false,
        reconnect_streak: 0,
        last_loss: String::new(),
    };
    tokio::spawn(driver.run(ws));
    Ok((
        SessionHandle {
            input: input_tx,
            control: control_tx,
            stats,
        },
        events_rx,
    ))
}
