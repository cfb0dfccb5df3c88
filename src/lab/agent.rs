//! The server side of one session's data channel (the SSM agent and the message gateway in
//! one): handshake, acks for every input frame (duplicates too), in-order delivery of input
//! to the node's PTY or command, sequenced output with resend of the oldest unacked frame,
//! and the end the agent gives each session type (see the module doc of `lab` for sources):
//! a shell that exits is flushed, marked Terminating and closed with `channel_closed`, with no
//! exit code; a command session sends its exit code (payload type 12) before that. The task
//! outlives websocket connections so ResumeSession can reattach with sequence numbers carried
//! on; output produced while detached waits in the unacked list.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use crate::channel::codec::{ClientMessage, FLAG_SYN, FlagValue, MessageType, PayloadType};
use crate::channel::payload::{
    AcknowledgeContent, ChannelClosed, HandshakeComplete, HandshakeRequest, HandshakeResponse,
    RequestedClientAction, SizeData, action_status, exit_code_payload,
};

use super::command::{self, Running};
use super::hooks::OutputAction;
use super::mailbox::{AgentEvent, WsOut};
use super::nodes::AGENT_VERSION;
use super::shell::{self, Shell, ShellEvent, ShellSpec};
use super::state::{LabState, SessionStatus};

/// How often the resend timer looks at the oldest unacked frame.
const RESEND_TICK: Duration = Duration::from_millis(100);
/// Age after which an unacked frame is sent again.
const RESEND_AFTER: Duration = Duration::from_millis(200);
/// Unacked output frames before the lab stops reading the shell (back-pressure).
const OUTPUT_WINDOW: usize = 10_000;
/// Out-of-order input frames kept; beyond this they are dropped unacked.
const INPUT_BUFFER: usize = 10_000;
/// How long the last output (and a command's ExitCode) may wait for acks before the channel
/// closes anyway.
const EXIT_FLUSH: Duration = Duration::from_secs(5);
/// Terminal size until the client sends one.
const DEFAULT_SIZE: SizeData = SizeData { cols: 80, rows: 24 };

/// What a session runs, from its document's `sessionType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionKind {
    /// `Standard_Stream`: an interactive shell on a terminal.
    Shell,
    /// `NonInteractiveCommands` with `separateOutputStream: true`: this command line.
    Command(String),
}

#[derive(Debug)]
struct Pending {
    bytes: Vec<u8>,
    created: Instant,
    sent_at: Option<Instant>,
}

struct Agent {
    session_id: String,
    state: Arc<LabState>,
    spec: ShellSpec,
    kind: SessionKind,
    conn: Option<(u64, UnboundedSender<WsOut>)>,
    out_seq: i64,
    unacked: BTreeMap<i64, Pending>,
    /// Output frames held back by the reorder hook.
    held: Vec<i64>,
    in_expected: i64,
    in_buffer: BTreeMap<i64, ClientMessage>,
    handshake_sent: Option<Instant>,
    handshake_done: bool,
    size: SizeData,
    shell: Option<Shell>,
    command: Option<Running>,
    new_shell_rx: Option<mpsc::Receiver<ShellEvent>>,
    exit_deadline: Option<Instant>,
    done: bool,
}

/// Starts the task of session `session_id` on the node described by `spec`.
pub(crate) fn spawn(
    state: Arc<LabState>,
    session_id: String,
    spec: ShellSpec,
    kind: SessionKind,
) -> UnboundedSender<AgentEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    let agent = Agent {
        session_id,
        state,
        spec,
        kind,
        conn: None,
        out_seq: 0,
        unacked: BTreeMap::new(),
        held: Vec::new(),
        in_expected: 0,
        in_buffer: BTreeMap::new(),
        handshake_sent: None,
        handshake_done: false,
        size: DEFAULT_SIZE,
        shell: None,
        command: None,
        new_shell_rx: None,
        exit_deadline: None,
        done: false,
    };
    tokio::spawn(agent.run(rx));
    tx
}

async fn recv_shell(rx: &mut Option<mpsc::Receiver<ShellEvent>>) -> Option<ShellEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Agent {
    async fn run(mut self, mut events: UnboundedReceiver<AgentEvent>) {
        let mut tick = tokio::time::interval(RESEND_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut shell_rx: Option<mpsc::Receiver<ShellEvent>> = None;
        while !self.done {
            let read_shell = shell_rx.is_some() && self.unacked.len() < OUTPUT_WINDOW;
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => self.on_event(ev),
                    None => self.terminate(),
                },
                ev = recv_shell(&mut shell_rx), if read_shell => {
                    if self.on_shell(ev) {
                        shell_rx = None;
                    }
                }
                _ = tick.tick() => self.on_tick(),
            }
            if let Some(rx) = self.new_shell_rx.take() {
                shell_rx = Some(rx);
            }
        }
        tracing::info!(session = %self.session_id, "session ended");
    }

    fn set_status(&self, status: SessionStatus) {
        self.state.set_status(&self.session_id, status);
    }

    fn on_event(&mut self, ev: AgentEvent) {
        match ev {
            AgentEvent::Attach { conn, tx } => {
                if let Some((_, old)) = self.conn.replace((conn, tx)) {
                    let _ = old.send(WsOut::Abort);
                }
                self.set_status(SessionStatus::Connected);
                if self.handshake_sent.is_none() {
                    self.handshake_sent = Some(Instant::now());
                    self.push_output(PayloadType::HandshakeRequest, handshake_request(&self.kind));
                } else {
                    // A resumed connection: everything unacked goes again, in order.
                    self.held.clear();
                    let seqs: Vec<i64> = self.unacked.keys().copied().collect();
                    for seq in seqs {
                        self.transmit(seq);
                    }
                }
            }
            AgentEvent::Frame { data } => self.on_frame(&data),
            AgentEvent::Detach { conn } => {
                if self.conn.as_ref().is_some_and(|(c, _)| *c == conn) {
                    self.conn = None;
                    self.set_status(SessionStatus::Disconnected);
                }
            }
            AgentEvent::Terminate => self.terminate(),
            AgentEvent::DropSocket => self.abort_socket(),
            AgentEvent::AgentLost => {
                self.abort_socket();
                if let Some(shell) = self.shell.take() {
                    shell.kill();
                }
                self.done = true;
                self.set_status(SessionStatus::Terminated);
            }
        }
    }

    /// Handles shell output or exit; true when the shell is finished.
    fn on_shell(&mut self, ev: Option<ShellEvent>) -> bool {
        match ev {
            Some(ShellEvent::Output(bytes)) => {
                self.push_output(PayloadType::Output, bytes);
                false
            }
            Some(ShellEvent::Stderr(bytes)) => {
                self.push_output(PayloadType::StdErr, bytes);
                false
            }
            Some(ShellEvent::Exited(code)) => {
                tracing::info!(session = %self.session_id, code, "node shell or command exited");
                // The agent reports a status only for command sessions with separate output
                // streams; a shell's end is Terminating then channel_closed, nothing more.
                if matches!(self.kind, SessionKind::Command(_)) {
                    self.push_output(PayloadType::ExitCode, exit_code_payload(code));
                }
                self.set_status(SessionStatus::Terminating);
                self.exit_deadline = Some(Instant::now() + EXIT_FLUSH);
                self.maybe_finish();
                true
            }
            None => {
                self.exit_deadline = Some(Instant::now());
                self.maybe_finish();
                true
            }
        }
    }

    fn on_tick(&mut self) {
        let held_due = self
            .held
            .first()
            .and_then(|s| self.unacked.get(s))
            .is_some_and(|p| p.created.elapsed() >= RESEND_AFTER);
        if held_due {
            self.state.hooks.end_reorder();
            self.flush_held();
        }
        let oldest = self
            .unacked
            .iter()
            .next()
            .filter(|(seq, _)| !self.held.contains(seq))
            .filter(|(_, p)| p.sent_at.is_none_or(|t| t.elapsed() >= RESEND_AFTER))
            .map(|(seq, _)| *seq);
        if let Some(seq) = oldest {
            self.transmit(seq);
        }
        self.maybe_finish();
    }

    fn on_frame(&mut self, data: &[u8]) {
        let msg = match ClientMessage::decode(data) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(session = %self.session_id, error = %e, "dropped malformed frame");
                return;
            }
        };
        match msg.message_type {
            MessageType::InputStreamData => self.on_input(msg),
            MessageType::Acknowledge => {
                match serde_json::from_slice::<AcknowledgeContent>(&msg.payload) {
                    Ok(ack) => {
                        self.unacked.remove(&ack.sequence_number);
                        self.held.retain(|s| *s != ack.sequence_number);
                        self.maybe_finish();
                    }
                    Err(e) => tracing::warn!(error = %e, "dropped unreadable acknowledge"),
                }
            }
            other => tracing::debug!(message_type = %other, "ignored frame"),
        }
    }

    fn on_input(&mut self, msg: ClientMessage) {
        let seq = msg.sequence_number;
        if seq > self.in_expected && self.in_buffer.len() >= INPUT_BUFFER {
            tracing::warn!(seq, "input buffer full; frame dropped unacked");
            return;
        }
        // Every accepted frame is acked, duplicates included, so the client stops resending.
        self.send_control(AcknowledgeContent::ack_frame_for(&msg).encode());
        if seq < self.in_expected {
            tracing::debug!(seq, "duplicate input re-acked");
            return;
        }
        if seq > self.in_expected {
            self.in_buffer.insert(seq, msg);
            return;
        }
        self.apply(msg);
        self.in_expected += 1;
        while let Some(next) = self.in_buffer.remove(&self.in_expected) {
            self.apply(next);
            self.in_expected += 1;
        }
    }

    fn apply(&mut self, msg: ClientMessage) {
        if self.done {
            return;
        }
        match msg.payload_type {
            PayloadType::HandshakeResponse => self.on_handshake_response(&msg.payload),
            PayloadType::Output => match (&self.shell, &self.command) {
                (Some(shell), _) => shell.write(msg.payload),
                // A command has no stdin: control bytes become signals, the rest is dropped.
                (None, Some(cmd)) => {
                    if let Some(sig) = msg.payload.iter().find_map(|b| command::control_signal(*b))
                    {
                        cmd.signal(sig);
                    }
                }
                (None, None) => tracing::debug!("input before the shell started; dropped"),
            },
            PayloadType::Size if self.command.is_some() => {
                tracing::debug!("resize ignored: a command session has no terminal");
            }
            PayloadType::Size => match serde_json::from_slice::<SizeData>(&msg.payload) {
                Ok(size) => {
                    self.size = size;
                    if let Some(shell) = &self.shell {
                        shell.resize(size);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "unreadable size payload"),
            },
            PayloadType::Flag => {
                if msg.payload == (FlagValue::TerminateSession as u32).to_be_bytes() {
                    self.terminate();
                }
            }
            other => tracing::debug!(payload_type = other.to_u32(), "ignored input payload"),
        }
    }

    fn on_handshake_response(&mut self, payload: &[u8]) {
        if self.handshake_done {
            return;
        }
        let ok = serde_json::from_slice::<HandshakeResponse>(payload).is_ok_and(|r| {
            r.processed_client_actions.iter().any(|a| {
                a.action_type == "SessionType" && a.action_status == action_status::SUCCESS
            })
        });
        if !ok {
            tracing::warn!(session = %self.session_id, "handshake response refused the session type");
            self.close_channel("handshake failed: the client did not accept the shell session");
            return;
        }
        let took = self
            .handshake_sent
            .map(|t| t.elapsed().as_nanos() as i64)
            .unwrap_or(0);
        let complete = HandshakeComplete {
            handshake_time_to_complete: took,
            customer_message: String::new(),
        };
        self.push_output(
            PayloadType::HandshakeComplete,
            serde_json::to_vec(&complete).unwrap_or_default(),
        );
        self.handshake_done = true;
        let started = match &self.kind {
            SessionKind::Shell => shell::spawn(&self.spec, self.size).map(|(shell, rx)| {
                self.shell = Some(shell);
                rx
            }),
            SessionKind::Command(line) => command::spawn(&self.spec, line).map(|(cmd, rx)| {
                self.command = Some(cmd);
                rx
            }),
        };
        match started {
            Ok(rx) => self.new_shell_rx = Some(rx),
            Err(e) => {
                tracing::error!(error = %e, "cannot start node shell");
                self.close_channel(&e.to_string());
            }
        }
    }

    fn push_output(&mut self, payload_type: PayloadType, payload: Vec<u8>) {
        let seq = self.out_seq;
        self.out_seq += 1;
        let flags = if seq == 0 { FLAG_SYN } else { 0 };
        let bytes = ClientMessage::new(
            MessageType::OutputStreamData,
            seq,
            flags,
            payload_type,
            payload,
        )
        .encode();
        self.unacked.insert(
            seq,
            Pending {
                bytes,
                created: Instant::now(),
                sent_at: None,
            },
        );
        // Faults are injected only after the handshake: a handshake frame out of order stalls
        // the official client, which is not what these hooks are for.
        let (action, drop_after) = if self.handshake_done {
            self.state.hooks.next_output_action()
        } else {
            (OutputAction::Send, false)
        };
        match action {
            OutputAction::Send => self.transmit(seq),
            OutputAction::Duplicate => {
                self.transmit(seq);
                self.transmit(seq);
            }
            OutputAction::Lose => {
                if let Some(p) = self.unacked.get_mut(&seq) {
                    p.sent_at = Some(Instant::now());
                }
            }
            OutputAction::Hold { last } => {
                self.held.push(seq);
                if last {
                    self.flush_held();
                }
            }
        }
        if drop_after {
            self.abort_socket();
        }
    }

    fn flush_held(&mut self) {
        let held: Vec<i64> = self.held.drain(..).rev().collect();
        for seq in held {
            self.transmit(seq);
        }
    }

    /// Sends unacked frame `seq` on the current connection, if there is one.
    fn transmit(&mut self, seq: i64) {
        let (Some((_, tx)), Some(p)) = (&self.conn, self.unacked.get_mut(&seq)) else {
            return;
        };
        let _ = tx.send(WsOut::Frame(p.bytes.clone()));
        p.sent_at = Some(Instant::now());
    }

    fn send_control(&self, bytes: Vec<u8>) {
        if let Some((_, tx)) = &self.conn {
            let _ = tx.send(WsOut::Frame(bytes));
        }
    }

    fn abort_socket(&mut self) {
        if let Some((_, tx)) = self.conn.take() {
            tracing::info!(session = %self.session_id, "dropping the websocket (test hook)");
            let _ = tx.send(WsOut::Abort);
            self.set_status(SessionStatus::Disconnected);
        }
    }

    /// After the shell exited: close once the ExitCode is acked or its grace period ran out.
    fn maybe_finish(&mut self) {
        if let Some(deadline) = self.exit_deadline
            && !self.done
            && (self.unacked.is_empty() || Instant::now() >= deadline)
        {
            self.close_channel("");
        }
    }

    fn terminate(&mut self) {
        if self.done {
            return;
        }
        self.set_status(SessionStatus::Terminating);
        if let Some(shell) = self.shell.take() {
            shell.kill();
        }
        if let Some(cmd) = self.command.take() {
            cmd.kill();
        }
        self.close_channel("session terminated");
    }

    /// Sends `channel_closed` and ends the session.
    fn close_channel(&mut self, output: &str) {
        let body = ChannelClosed {
            message_id: uuid::Uuid::new_v4().to_string(),
            created_date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            destination_id: self.spec.node_id.clone(),
            session_id: self.session_id.clone(),
            message_type: MessageType::ChannelClosed.as_str().to_string(),
            schema_version: 1,
            output: output.to_string(),
        };
        let frame = ClientMessage::new(
            MessageType::ChannelClosed,
            0,
            0,
            PayloadType::Undefined,
            serde_json::to_vec(&body).unwrap_or_default(),
        );
        self.send_control(frame.encode());
        if let Some((_, tx)) = self.conn.take() {
            let _ = tx.send(WsOut::Close);
        }
        self.shell = None;
        self.command = None;
        self.done = true;
        self.set_status(SessionStatus::Terminated);
    }
}

fn handshake_request(kind: &SessionKind) -> Vec<u8> {
    let parameters = match kind {
        SessionKind::Shell => serde_json::json!({
            "SessionType": "Standard_Stream",
            "Properties": {}
        }),
        SessionKind::Command(line) => serde_json::json!({
            "SessionType": "NonInteractiveCommands",
            "Properties": { "commands": line, "separateOutputStream": true }
        }),
    };
    let req = HandshakeRequest {
        agent_version: AGENT_VERSION.to_string(),
        requested_client_actions: vec![RequestedClientAction {
            action_type: "SessionType".into(),
            action_parameters: parameters,
        }],
    };
    serde_json::to_vec(&req).unwrap_or_default()
}
