//! The local SSM-compatible lab: on one loopback port, the subset of the SSM JSON 1.1 API the
//! product calls plus the Session Manager data channel, over nodes that are real shells on
//! pseudo-terminals in scratch homes. The product reaches it through the real aws-sdk-ssm
//! client (`endpoint_url`) and its own data channel client, so the demo runs production code.
//!
//! Start one in-process with [`start`]; `sombrero lab` wraps it for the command line.
//!
//! # Agent behaviours it reproduces
//!
//! It behaves like the real SSM agent and service, not like our own client expects. "A" is
//! aws/amazon-ssm-agent, "P" aws/session-manager-plugin (see `../shared/ssm-data-channel.md`):
//! - handshake: HandshakeRequest on seq 0 with SYN, a four-part agent version, HandshakeComplete
//!   after the response (A `agent/session/datachannel/datachannel.go`);
//! - acks for every input frame, duplicates re-acked; unacked output resent oldest first
//!   (A `agent/session/datachannel/datachannel.go`, A `agent/session/config/config.go`);
//! - shell sessions (`Standard_Stream`) run in a PTY; when the shell exits the output is flushed,
//!   the session is Terminating and `channel_closed` follows, with **no** exit code
//!   (A `agent/session/shell/shell.go`, `executeCommandsWithPty`);
//! - `NonInteractiveCommands` sessions (`PinkSombrero-Command`) split the command line like shlex
//!   and run it without a shell and without stdin (A `agent/session/shell/shell_unix.go`,
//!   `StartCommandExecutor`); with `separateOutputStream: true` stdout goes as payload type 1,
//!   stderr as 11 and the exit code as 12 (`EXIT_CODE: N`) before closing
//!   (A `agent/session/shell/shell.go`, `processCommandsWithOutputStreamSeparate`, `sendExitCode`);
//!   resizes are ignored and Ctrl-C / Ctrl-\ in the input become SIGINT / SIGQUIT
//!   (A `agent/session/shell/shell_unix.go`, `InputStreamMessageHandler`; A `agent/appconfig`,
//!   `ByteControlSignalsLinux`);
//! - node environment: TERM `xterm-256color`, LANG `C.UTF-8` (A `agent/session/shell/shell_unix.go`);
//! - the Flag TerminateSession input ends the session (P `src/message/clientmessage.go`);
//! - API request and reply shapes follow the SSM service model (botocore
//!   `data/ssm/2014-11-06/service-2.json`), checked by `tests/lab/model.rs`.
//!
//! Where it differs: the shell is bash (or sh) started with `--norc` in a scratch home, not `sh`
//! as `ssm-user`; there is no KMS encryption, no session logging to S3 or CloudWatch, and no
//! `agent_session_state` frame reaches the client (the service consumes it there too).

mod agent;
mod api;
mod automation;
mod call;
mod command;
mod datachannel;
mod hooks;
mod inventory;
mod mailbox;
mod nodes;
mod outage;
mod sessions;
mod shell;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use thiserror::Error;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use automation::{OUTPUT_NEW_INSTANCE, OUTPUT_OLD_INSTANCE, REPLACE_DOCUMENT};
pub use hooks::Hooks;
pub use nodes::{AGENT_VERSION, NodeInfo};
pub use shell::ShellError;
pub use state::{ApiCall, SessionStatus};

use state::LabState;

/// How a lab is started.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Address to listen on; must be loopback (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Number of nodes registered at start.
    pub nodes: usize,
    /// Parent of the nodes' scratch directories; `None` makes a private temporary one that
    /// is deleted on shutdown.
    pub root_dir: Option<PathBuf>,
    /// How long a replacement stays InProgress before it completes.
    pub automation_delay: Duration,
    /// How long a session token may wait before opening a data channel.
    pub token_ttl: Duration,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            nodes: 3,
            root_dir: None,
            automation_delay: Duration::from_millis(500),
            token_ttl: Duration::from_secs(600),
        }
    }
}

/// Why a lab could not start.
#[derive(Debug, Error)]
pub enum LabError {
    /// The listen address is not loopback.
    #[error(
        "the lab listens on loopback only (it has no real authentication); {0} is not loopback: use 127.0.0.1:PORT"
    )]
    NotLoopback(SocketAddr),
    /// The port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A scratch directory could not be created.
    #[error("cannot create the lab's scratch directory {path}: {source}")]
    Scratch {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A running lab.
#[derive(Debug)]
pub struct Lab {
    state: Arc<LabState>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    owned_root: Option<PathBuf>,
}

fn scratch_root(cfg: &LabConfig) -> Result<(PathBuf, bool), LabError> {
    let (root, owned) = match &cfg.root_dir {
        Some(r) => (r.clone(), false),
        None => (
            std::env::temp_dir().join(format!(
                "sombrero-lab-{}-{}",
                std::process::id(),
                state::random_hex(8)
            )),
            true,
        ),
    };
    std::fs::create_dir_all(&root)
        .and_then(|_| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
        })
        .map_err(|source| LabError::Scratch {
            path: root.clone(),
            source,
        })?;
    Ok((root, owned))
}

/// Starts a lab: binds, registers `cfg.nodes` nodes and serves until [`Lab::shutdown`].
pub async fn start(cfg: LabConfig) -> Result<Lab, LabError> {
    if !cfg.listen.ip().is_loopback() {
        return Err(LabError::NotLoopback(cfg.listen));
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| LabError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| LabError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let (root, owned) = scratch_root(&cfg)?;
    let state = Arc::new(LabState::new(
        Hooks::default(),
        addr.to_string(),
        root.clone(),
        cfg.automation_delay,
        cfg.token_ttl,
    ));
    for _ in 0..cfg.nodes {
        state.add_node().map_err(|source| LabError::Scratch {
            path: root.clone(),
            source,
        })?;
    }
    let app = Router::new()
        .route("/", post(api::handle))
        .route("/v1/data-channel/{session_id}", get(datachannel::upgrade))
        .route("/lab/nodes/{id}/stop-agent", post(outage::stop_agent))
        .route("/lab/nodes/{id}/deregister", post(outage::deregister))
        .with_state(state.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        // Keystroke echo is one small frame each way: without TCP_NODELAY, Nagle's algorithm
        // holds it back for tens of milliseconds.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "cannot set TCP_NODELAY on a lab connection");
            }
        });
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "lab server stopped");
        }
    });
    tracing::info!(%addr, nodes = cfg.nodes, root = %root.display(), "lab listening");
    Ok(Lab {
        state,
        addr,
        stop: Some(stop),
        server: Some(server),
        owned_root: owned.then_some(root),
    })
}

impl Lab {
    /// The SSM endpoint URL, `http://127.0.0.1:PORT`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Fault injection for tests.
    pub fn hooks(&self) -> &Hooks {
        &self.state.hooks
    }

    /// Registered nodes with their tags, in registration order.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.state.lock().nodes.iter().map(|n| n.info()).collect()
    }

    /// Status of a session, if the lab knows it.
    pub fn session_status(&self, session_id: &str) -> Option<SessionStatus> {
        self.state
            .lock()
            .sessions
            .iter()
            .find(|s| s.id == session_id)
            .map(|s| s.status)
    }

    /// Stops a node's agent (see `outage`): its sessions end, their sockets drop, it is listed
    /// `ConnectionLost` and takes no new session. False if no such node is registered.
    pub fn stop_agent(&self, node_id: &str) -> bool {
        self.state.stop_agent(node_id)
    }

    /// Stops a node's agent and deregisters it: no longer listed, its tags gone. False if no
    /// such node is registered.
    pub fn deregister(&self, node_id: &str) -> bool {
        self.state.deregister(node_id)
    }

    /// The latest API calls the lab answered (at most 1000), oldest first: what the product
    /// and other clients sent, and what the lab replied.
    pub fn api_calls(&self) -> Vec<ApiCall> {
        self.state.api_calls()
    }

    /// Drops the session's websocket now, without a close frame (the session survives).
    pub fn drop_socket(&self, session_id: &str) -> bool {
        self.state
            .lock()
            .sessions
            .iter()
            .find(|s| s.id == session_id)
            .is_some_and(|s| s.agent.send(mailbox::AgentEvent::DropSocket).is_ok())
    }

    /// Ends every session (killing the shells), stops serving and deletes a scratch
    /// directory the lab created itself.
    pub async fn shutdown(mut self) {
        self.state.terminate_sessions(None);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        if let Some(root) = self.owned_root.take() {
            // Give the session tasks a moment to hang up their shells before the homes go.
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Err(e) = std::fs::remove_dir_all(&root) {
                tracing::warn!(error = %e, root = %root.display(), "cannot delete lab scratch directory");
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.state.terminate_sessions(None);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(root) = self.owned_root.take() {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}
