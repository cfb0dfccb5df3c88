//! What a session task ([`super::agent`]) is sent, and what it sends each websocket: the
//! messages between the task and the lab's state, API and data channel.

use tokio::sync::mpsc::UnboundedSender;

/// Input to a session task.
#[derive(Debug)]
pub(crate) enum AgentEvent {
    /// A websocket passed the token check; frames for it go to `tx`.
    Attach {
        conn: u64,
        tx: UnboundedSender<WsOut>,
    },
    /// A binary frame arrived.
    Frame { data: Vec<u8> },
    /// Connection `conn` is gone.
    Detach { conn: u64 },
    /// TerminateSession (API, replacement or lab shutdown).
    Terminate,
    /// Test hook: drop the current websocket without a close frame.
    DropSocket,
    /// The node's agent went away: the shell dies and the socket drops without a close frame.
    AgentLost,
}

/// Output to one websocket connection.
#[derive(Debug)]
pub(crate) enum WsOut {
    /// A binary frame.
    Frame(Vec<u8>),
    /// Send a normal close and end the connection.
    Close,
    /// End the connection abruptly (no close frame).
    Abort,
}
