//! The lab's shared state: nodes, sessions with their tokens, automation executions.
//! One std mutex, never held across an await.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc::UnboundedSender;

use super::hooks::Hooks;
use super::mailbox::AgentEvent;
use super::nodes::Node;

/// Session states, named as DescribeSessions reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// Started, no data channel yet.
    Connecting,
    /// A data channel is attached.
    Connected,
    /// The data channel dropped; ResumeSession can reattach.
    Disconnected,
    /// Being torn down.
    Terminating,
    /// Over.
    Terminated,
}

impl SessionStatus {
    /// The AWS name.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Connecting => "Connecting",
            SessionStatus::Connected => "Connected",
            SessionStatus::Disconnected => "Disconnected",
            SessionStatus::Terminating => "Terminating",
            SessionStatus::Terminated => "Terminated",
        }
    }

    /// Listed under State=Active (else History).
    pub fn is_active(self) -> bool {
        self != SessionStatus::Terminated
    }
}

/// One session as the API knows it.
#[derive(Debug)]
pub(crate) struct SessionRecord {
    pub id: String,
    pub target: String,
    pub owner: String,
    pub reason: Option<String>,
    pub document: Option<String>,
    pub start: SystemTime,
    pub end: Option<SystemTime>,
    pub status: SessionStatus,
    /// The one token that currently opens the data channel, and when it was issued.
    pub token: Option<(String, Instant)>,
    pub agent: UnboundedSender<AgentEvent>,
}

/// One execution.
#[derive(Debug, Clone)]
pub(crate) struct Automation {
    pub id: String,
    pub parameters: BTreeMap<String, Vec<String>>,
    pub executed_by: String,
    pub start: SystemTime,
    pub end: Option<SystemTime>,
    pub status: &'static str,
    pub outputs: BTreeMap<String, Vec<String>>,
    pub failure: Option<String>,
}

/// Everything behind the lock.
#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub nodes: Vec<Node>,
    /// In start order.
    pub sessions: Vec<SessionRecord>,
    pub automations: HashMap<String, Automation>,
    next_ip: u8,
}

/// Shared by the HTTP handlers, the data channel and the session tasks.
#[derive(Debug)]
pub(crate) struct LabState {
    inner: Mutex<Inner>,
    pub hooks: Hooks,
    /// `127.0.0.1:PORT`.
    pub authority: String,
    /// Parent of every node directory.
    pub root: PathBuf,
    /// How long a replacement takes (visible as InProgress meanwhile).
    pub automation_delay: Duration,
    /// How long a token may wait before it opens a data channel.
    pub token_ttl: Duration,
    next_conn: AtomicU64,
    /// The latest API calls, for checks against the service model.
    api_log: Mutex<std::collections::VecDeque<ApiCall>>,
}

/// Most API calls [`LabState::log_call`] keeps (the oldest go first).
const API_LOG_MAX: usize = 1000;

/// One API call the lab answered: what was asked and what was answered.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiCall {
    /// The operation, e.g. `StartSession`.
    pub operation: String,
    /// The request body.
    pub request: serde_json::Value,
    /// HTTP status of the answer.
    pub status: u16,
    /// The answer's body (an output shape, or `__type` and `message`).
    pub response: serde_json::Value,
}

/// Why a data channel was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    UnknownToken,
    ExpiredToken,
    SessionOver,
}

impl Refusal {
    pub(crate) fn message(self) -> &'static str {
        match self {
            Refusal::UnknownToken => "unknown token for this session",
            Refusal::ExpiredToken => "token expired; call ResumeSession for a new one",
            Refusal::SessionOver => "session is terminated",
        }
    }
}

/// Unix epoch seconds with milliseconds, as AWS JSON 1.1 timestamps.
pub(crate) fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or(0.0)
}

/// A random lowercase hex string of `n` digits.
pub(crate) fn random_hex(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

impl LabState {
    pub(crate) fn new(
        hooks: Hooks,
        authority: String,
        root: PathBuf,
        automation_delay: Duration,
        token_ttl: Duration,
    ) -> Self {
        LabState {
            inner: Mutex::new(Inner::default()),
            hooks,
            authority,
            root,
            automation_delay,
            token_ttl,
            next_conn: AtomicU64::new(1),
            api_log: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// Keeps one answered API call (bounded: the oldest is dropped first).
    pub(crate) fn log_call(&self, call: ApiCall) {
        let mut log = self.api_log.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() == API_LOG_MAX {
            log.pop_front();
        }
        log.push_back(call);
    }

    /// The API calls kept, oldest first.
    pub(crate) fn api_calls(&self) -> Vec<ApiCall> {
        let log = self.api_log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().cloned().collect()
    }

    /// The lock; a panic elsewhere never makes the lab unusable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a fresh node with a pristine home.
    pub(crate) fn add_node(&self) -> std::io::Result<String> {
        let mut inner = self.lock();
        // 127.0.0.1 is the lab itself; nodes take .2 onwards, wrapping before .255.
        inner.next_ip = if inner.next_ip >= 254 {
            2
        } else {
            inner.next_ip.max(1) + 1
        };
        let node = Node::create(&self.root, inner.next_ip)?;
        let id = node.id.clone();
        inner.nodes.push(node);
        Ok(id)
    }

    /// A connection id, unique for the lab's life.
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Records a session's new status (Terminated also stamps the end and voids the token).
    pub(crate) fn set_status(&self, session_id: &str, status: SessionStatus) {
        let mut inner = self.lock();
        if let Some(s) = inner.sessions.iter_mut().find(|s| s.id == session_id) {
            if s.status == SessionStatus::Terminated {
                return;
            }
            s.status = status;
            if status == SessionStatus::Terminated {
                s.end = Some(SystemTime::now());
                s.token = None;
            }
        }
    }

    /// Checks a data-channel open frame's token; on success returns the session's task.
    pub(crate) fn authorize(
        &self,
        session_id: &str,
        token: &str,
    ) -> Result<UnboundedSender<AgentEvent>, Refusal> {
        let inner = self.lock();
        let s = inner
            .sessions
            .iter()
            .find(|s| s.id == session_id)
            .ok_or(Refusal::UnknownToken)?;
        if s.status == SessionStatus::Terminated {
            return Err(Refusal::SessionOver);
        }
        match &s.token {
            Some((t, issued)) if t == token => {
                if issued.elapsed() > self.token_ttl {
                    Err(Refusal::ExpiredToken)
                } else {
                    Ok(s.agent.clone())
                }
            }
            _ => Err(Refusal::UnknownToken),
        }
    }

    /// Asks every live session on `node_id` (or all nodes, with `None`) to end.
    /// They are Terminated at once (as TerminateSession reports), and their tasks close.
    pub(crate) fn terminate_sessions(&self, node_id: Option<&str>) {
        let mut inner = self.lock();
        for s in inner.sessions.iter_mut() {
            if s.status.is_active() && node_id.is_none_or(|n| n == s.target) {
                s.status = SessionStatus::Terminated;
                s.end = Some(SystemTime::now());
                s.token = None;
                let _ = s.agent.send(AgentEvent::Terminate);
            }
        }
    }
}
