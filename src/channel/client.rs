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

/// URL without its query, for messages (the query carries opaque routing data).
fn display_url(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// Opens one websocket and sends the keepalive ping and the open frame.
async fn dial(
    target: &SessionTarget,
    token: &str,
    client_id: &str,
    options: &ClientOptions,
) -> Result<Ws, ChannelError> {
    let url = &target.stream_url;
    let bad_url = |reason: String| ChannelError::BadUrl {
        url: display_url(url).to_string(),
        reason,
    };
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        return Err(bad_url("it must start with ws:// or wss://".into()));
    }
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| bad_url(e.to_string()))?;
    match &options.signing {
        // A presigned URL authenticates itself; a second signature would conflict with it.
        Some(_) if is_presigned(url) => debug!("presigned StreamUrl: upgrade not signed"),
        Some(signing) => sign_upgrade(&mut request, url, signing).await?,
        None => {}
    }
    let dial_err = |reason: String| ChannelError::Dial {
        url: display_url(url).to_string(),
        reason,
    };
    let (mut ws, _) = tokio::time::timeout(
        limits::DIAL_TIMEOUT,
        // Interactive traffic: no Nagle delay on keystrokes and acks.
        tokio_tungstenite::connect_async_with_config(request, None, true),
    )
    .await
    .map_err(|_| dial_err(format!("no answer within {:?}", limits::DIAL_TIMEOUT)))?
    .map_err(|e| dial_err(e.to_string()))?;
    let open = OpenDataChannelInput {
        message_schema_version: "1.0".into(),
        request_id: new_id(),
        token_value: token.to_string(),
        client_id: client_id.to_string(),
        client_version: Some(options.client_version.clone()),
    };
    let open = serde_json::to_string(&open).map_err(|e| dial_err(e.to_string()))?;
    // The open frame goes first: some servers (our lab among them) expect it before anything.
    ws.send(Message::text(open))
        .await
        .map_err(|e| dial_err(e.to_string()))?;
    ws.send(Message::Ping(limits::PING_PAYLOAD.into()))
        .await
        .map_err(|e| dial_err(e.to_string()))?;
    debug!(url = display_url(url), "data channel open");
    Ok(ws)
}

/// Whether the URL already carries a SigV4 query signature.
fn is_presigned(url: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|kv| kv.to_ascii_lowercase().starts_with("x-amz-signature="))
    })
}

/// SigV4-signs the upgrade: service `ssmmessages`, only Host (plus the date and any session
/// token) signed, empty-body payload hash. Signed afresh on every dial.
async fn sign_upgrade(
    request: &mut Request,
    url: &str,
    signing: &Signing,
) -> Result<(), ChannelError> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;

    let credentials = signing
        .credentials
        .provide_credentials()
        .await
        .map_err(|e| ChannelError::Sign(e.to_string()))?;
    let host = request
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| ChannelError::Sign("the request has no Host header".into()))?
        .to_string();
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&signing.region)
        .name("ssmmessages")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| ChannelError::Sign(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        "GET",
        url,
        std::iter::once(("host", host.as_str())),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| ChannelError::Sign(e.to_string()))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| ChannelError::Sign(e.to_string()))?
        .into_parts();
    let (headers, _) = instructions.into_parts();
    for header in headers {
        let value =
            HeaderValue::from_str(header.value()).map_err(|e| ChannelError::Sign(e.to_string()))?;
        request.headers_mut().insert(header.name(), value);
    }
    Ok(())
}

/// Whether the driver loop goes on.
enum Flow {
    Continue,
    /// Socket lost: reconnect or end.
    Lost(String),
    /// Session over: close the socket, report this, stop.
    End(SessionEvent),
}

/// The session task: owns the socket and the session core.
struct Driver {
    session: Session,
    target: SessionTarget,
    options: ClientOptions,
    client_id: String,
    events: mpsc::Sender<SessionEvent>,
    input: mpsc::Receiver<Vec<u8>>,
    control: mpsc::UnboundedReceiver<Control>,
    stats: Arc<Mutex<Stats>>,
    terminate_by: Option<Instant>,
    reconnects: u64,
    /// When the server last sent anything (any websocket message).
    last_inbound: Instant,
    /// When the session task started (for the handshake deadline).
    started: Instant,
    /// Reconnect attempts since the server last sent a binary frame.
    reconnect_streak: u32,
    /// Why the connection was last lost or a reconnect failed.
    last_loss: String,
    /// Frames were fed to the socket but not flushed yet.
    unflushed: bool,
    /// Inside a read batch: flushing is left to the end of the batch.
    batching: bool,
}

/// Delay before reconnect attempt `n` (from 0): uniform in [base, 2 base), doubled per attempt.
fn backoff(n: u32) -> Duration {
    let base = limits::RECONNECT_BASE.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(base..2 * base)) * 2u32.saturating_pow(n)
}

/// The end reported when nobody listens to events any more.
fn abandoned() -> SessionEvent {
    SessionEvent::Closed {
        reason: "abandoned by the caller".into(),
    }
}

impl Driver {
    async fn run(mut self, mut ws: Ws) {
        let mut resend = tokio::time::interval(limits::RESEND_TICK);
        let mut ping = tokio::time::interval_at(
            tokio::time::Instant::now() + limits::PING_INTERVAL,
            limits::PING_INTERVAL,
        );
        let mut input_open = true;
        let mut control_open = true;
        loop {
            let accepts = input_open && self.session.accepts_input();
            let flow = tokio::select! {
                msg = ws.next() => self.on_socket_batch(&mut ws, msg).await,
                data = self.input.recv(), if accepts => match data {
                    Some(data) => {
                        // A resize queued before this input must reach the agent first.
                        let mut flow = Flow::Continue;
                        while matches!(flow, Flow::Continue)
                            && let Ok(ctl) = self.control.try_recv()
                        {
                            flow = self.on_control(&mut ws, ctl).await;
                        }
                        if matches!(flow, Flow::Continue) {
                            let fx = self.session.send_input(&data, Instant::now());
                            self.apply(&mut ws, fx).await
                        } else {
                            flow
                        }
                    }
                    None => {
                        input_open = false;
                        Flow::Continue
                    }
                },
                ctl = self.control.recv(), if control_open => match ctl {
                    Some(ctl) => self.on_control(&mut ws, ctl).await,
                    None => {
                        control_open = false;
                        Flow::Continue
                    }
                },
                _ = resend.tick() => {
                    let now = Instant::now();
                    let fx = self.session.tick(now);
                    match self.apply(&mut ws, fx).await {
                        Flow::Continue => self
                            .check_handshake(now)
                            .or_else(|| self.check_stall(now))
                            .unwrap_or_else(|| self.check_terminate(now)),
                        other => other,
                    }
                }
                _ = ping.tick() => match ws.send(Message::Ping(limits::PING_PAYLOAD.into())).await {
                    Ok(()) => Flow::Continue,
                    Err(e) => Flow::Lost(e.to_string()),
                },
            };
            self.publish_stats();
            match flow {
                Flow::Continue => {}
                // The service already closed the channel: the socket going away ends the
                // linger, not the session's chance to resume.
                Flow::Lost(why) if self.session.phase() == Phase::Closing => {
                    debug!(reason = %why, "socket gone after channel_closed");
                    let fx = self.session.close_now();
                    let reason = fx
                        .into_iter()
                        .find_map(|e| match e {
                            Effect::Closed(r) => Some(r),
                            _ => None,
                        })
                        .unwrap_or_default();
                    self.finish(None, SessionEvent::Closed { reason }).await;
                    return;
                }
                Flow::Lost(why) => match self.reconnect(&why).await {
                    Ok(new_ws) => ws = new_ws,
                    Err(end) => {
                        self.finish(None, end).await;
                        return;
                    }
                },
                Flow::End(end) => {
                    self.finish(Some(ws), end).await;
                    return;
                }
            }
        }
    }

    fn publish_stats(&self) {
        if let Ok(mut s) = self.stats.lock() {
            *s = Stats {
                counters: self.session.counters(),
                reconnects: self.reconnects,
            };
        }
    }

    async fn finish(&mut self, ws: Option<Ws>, end: SessionEvent) {
        self.publish_stats();
        if let Some(mut ws) = ws {
            // Best effort and bounded: the peer may already be gone or stop reading.
            let _ = tokio::time::timeout(limits::TERMINATE_GRACE, ws.close(None)).await;
        }
        info!(event = ?end, "data channel session ended");
        let _ = self.events.send(end).await;
    }

    async fn on_socket(
        &mut self,
        ws: &mut Ws,
        msg: Option<Result<Message, tungstenite::Error>>,
    ) -> Flow {
        if let Some(Ok(_)) = &msg {
            self.last_inbound = Instant::now();
        }
        match msg {
            Some(Ok(Message::Binary(bytes))) => {
                self.reconnect_streak = 0;
                let fx = self.session.on_frame(&bytes, Instant::now());
                self.apply(ws, fx).await
            }
            Some(Ok(Message::Ping(_))) => {
                // tungstenite queued the pong; flushing sends it now.
                match ws.flush().await {
                    Ok(()) => Flow::Continue,
                    Err(e) => Flow::Lost(e.to_string()),
                }
            }
            Some(Ok(Message::Text(t))) => {
                debug!(len = t.len(), "text frame from server ignored");
                Flow::Continue
            }
            Some(Ok(Message::Pong(_) | Message::Frame(_))) => Flow::Continue,
            Some(Ok(Message::Close(frame))) => Flow::Lost(format!("server closed: {frame:?}")),
            Some(Err(e)) => Flow::Lost(e.to_string()),
            None => Flow::Lost("connection closed".into()),
        }
    }

    async fn on_control(&mut self, ws: &mut Ws, ctl: Control) -> Flow {
        let now = Instant::now();
        match ctl {
            Control::Resize(size) => {
                let fx = self.session.resize(size, now);
                self.apply(ws, fx).await
            }
            Control::Terminate => {
                // Input queued before the terminate request goes first.
                while self.session.accepts_input() {
                    let Ok(data) = self.input.try_recv() else {
                        break;
                    };
                    let fx = self.session.send_input(&data, now);
                    if let flow @ (Flow::Lost(_) | Flow::End(_)) = self.apply(ws, fx).await {
                        return flow;
                    }
                }
                let fx = self.session.terminate(now);
                if fx.is_empty() {
                    return Flow::End(SessionEvent::Closed {
                        reason: "terminated by the client before the session started".into(),
                    });
                }
                self.terminate_by = Some(now + limits::TERMINATE_GRACE);
                self.apply(ws, fx).await
            }
        }
    }

    /// The agent never completed the handshake: the session cannot start.
    fn check_handshake(&self, now: Instant) -> Option<Flow> {
        let waited = now.saturating_duration_since(self.started);
        (self.session.phase() == Phase::Handshake && waited >= self.options.handshake_timeout).then(
            || {
                Flow::End(SessionEvent::Failed {
                    error: format!(
                        "the agent did not complete the session handshake within {}s; check \
                         that the SSM agent on the target is running and up to date",
                        waited.as_secs()
                    ),
                })
            },
        )
    }

    /// Input is waiting but the server has been silent too long: treat the socket as lost.
    fn check_stall(&self, now: Instant) -> Option<Flow> {
        let silent = now.saturating_duration_since(self.last_inbound);
        (self.session.unacked_len() > 0 && silent >= self.options.stall_timeout).then(|| {
            Flow::Lost(format!(
                "nothing received for {}s while input waits for an ack",
                silent.as_secs()
            ))
        })
    }

    /// After a terminate request: close once the flag is acked or the grace time is over.
    fn check_terminate(&self, now: Instant) -> Flow {
        match self.terminate_by {
            Some(by) if self.session.unacked_len() == 0 || now >= by => {
                Flow::End(SessionEvent::Closed {
                    reason: "terminated by the client".into(),
                })
            }
            _ => Flow::Continue,
        }
    }

    /// Performs effects: frames go to the socket (one flush), the rest to the caller in order.
    async fn apply(&mut self, ws: &mut Ws, fx: Vec<Effect>) -> Flow {
        let mut wrote = false;
        let mut events = Vec::new();
        for effect in fx {
            match effect {
                Effect::Send(bytes) => {
                    if let Err(e) = ws.feed(Message::Binary(bytes.into())).await {
                        return Flow::Lost(e.to_string());
                    }
                    wrote = true;
                }
                Effect::Output(b) => events.push(SessionEvent::Output(b)),
                Effect::Stderr(b) => events.push(SessionEvent::Stderr(b)),
                Effect::ExitCode(c) => events.push(SessionEvent::ExitCode(c)),
                Effect::Notice(n) => events.push(SessionEvent::Notice(n)),
                Effect::Closed(reason) => events.push(SessionEvent::Closed { reason }),
                Effect::Failed(e) => events.push(SessionEvent::Failed {
                    error: e.to_string(),
                }),
            }
        }
        self.unflushed |= wrote;
        if !self.batching
            && let Err(e) = self.flush(ws).await
        {
            return Flow::Lost(e.to_string());
        }
        for event in events {
            if matches!(
                event,
                SessionEvent::Closed { .. } | SessionEvent::Failed { .. }
            ) {
                return Flow::End(event);
            }
            let event = match self.events.try_send(event) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Full(event)) => event,
                Err(mpsc::error::TrySendError::Closed(_)) => return Flow::End(abandoned()),
            };
            // The caller is behind: acks already fed must not wait for it, or the agent
            // would resend what we have.
            if let Err(e) = self.flush(ws).await {
                return Flow::Lost(e.to_string());
            }
            if self.events.send(event).await.is_err() {
                return Flow::End(abandoned());
            }
        }
        Flow::Continue
    }

    async fn flush(&mut self, ws: &mut Ws) -> Result<(), tungstenite::Error> {
        if self.unflushed {
            ws.flush().await?;
            self.unflushed = false;
        }
        Ok(())
    }

    /// Handles one socket message plus those already buffered behind it, then writes all
    /// their acks with one flush (one syscall per batch instead of per frame).
    async fn on_socket_batch(
        &mut self,
        ws: &mut Ws,
        msg: Option<Result<Message, tungstenite::Error>>,
    ) -> Flow {
        self.batching = true;
        let mut flow = self.on_socket(ws, msg).await;
        for _ in 1..limits::READ_BATCH {
            if !matches!(flow, Flow::Continue) {
                break;
            }
            match ws.next().now_or_never() {
                Some(msg) => flow = self.on_socket(ws, msg).await,
                None => break,
            }
        }
        self.batching = false;
        match (flow, self.flush(ws).await) {
            (Flow::Continue, Err(e)) => Flow::Lost(e.to_string()),
            (flow, _) => flow,
        }
    }

    /// Resumes the session and dials the original StreamUrl again, with backoff.
    async fn reconnect(&mut self, why: &str) -> Result<Ws, SessionEvent> {
        warn!(reason = why, "data channel connection lost");
        self.last_loss = why.to_string();
        let Some(resume) = self.options.resume.clone() else {
            return Err(SessionEvent::Failed {
                error: format!("the data channel connection was lost ({why})"),
            });
        };
        if self.terminate_by.is_some() {
            return Err(SessionEvent::Closed {
                reason: "terminated by the client".into(),
            });
        }
        // One notice per outage, not per attempt.
        let notice = SessionEvent::Notice("connection lost; reconnecting".into());
        if self.reconnect_streak == 0 && self.events.send(notice).await.is_err() {
            return Err(abandoned());
        }
        // The budget spans reconnects that "succeed" but die before the server sends a
        // single frame (e.g. it refuses the open frame); a frame resets it.
        while self.reconnect_streak < limits::RECONNECT_ATTEMPTS {
            let attempt = self.reconnect_streak;
            self.reconnect_streak += 1;
            tokio::time::sleep(backoff(attempt)).await;
            let token = match resume.resume(&self.target.session_id).await {
                Ok(Some(token)) => token,
                Ok(None) => {
                    return Err(SessionEvent::Closed {
                        reason: "the session can no longer be resumed (timed out or ended)".into(),
                    });
                }
                Err(e) => {
                    warn!(attempt, error = %e, "ResumeSession failed");
                    self.last_loss = e.to_string();
                    continue;
                }
            };
            match dial(&self.target, &token, &self.client_id, &self.options).await {
                Ok(mut ws) => {
                    self.reconnects += 1;
                    self.last_inbound = Instant::now();
                    info!(attempt, "data channel reconnected");
                    let fx = self.session.on_reconnected(Instant::now());
                    match self.apply(&mut ws, fx).await {
                        Flow::Continue => return Ok(ws),
                        Flow::End(end) => return Err(end),
                        Flow::Lost(e) => self.last_loss = e,
                    }
                }
                Err(e) => {
                    warn!(attempt, error = %e, "reconnect failed");
                    self.last_loss = e.to_string();
                }
            }
        }
        let last = &self.last_loss;
        Err(SessionEvent::Failed {
            error: format!(
                "the data channel connection was lost and {} reconnect attempts failed \
                 (last: {last})",
                limits::RECONNECT_ATTEMPTS
            ),
        })
    }
}
