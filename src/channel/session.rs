//! The pure session core of the data channel client: sequencing, acks, resends, reordering,
//! the handshake and session end. No I/O and no clock of its own: every call takes `now`
//! and returns what to do as [`Effect`]s, which the websocket task (`client.rs`) performs.
//!
//! Rules (see `../shared/ssm-data-channel.md` §3-§5) and where we deliberately differ from the
//! official plugin:
//! - duplicates (seq < expected, or already buffered) are re-acked, so the agent stops resending;
//! - output is accepted as soon as it arrives, also right after HandshakeComplete (the plugin
//!   drops it until its handler is registered) and from old agents that skip the handshake;
//! - buffered handshake frames are routed to the handshake code (the plugin stalls on them);
//! - a resent frame restarts its timer (the plugin resends the front frame on every tick once it
//!   timed out) and resent frames give no RTT sample (Karn's rule);
//! - a full unacked list stops input (back-pressure) instead of discarding the oldest frame;
//! - after `channel_closed` the session lingers ([`limits::CLOSE_LINGER`]) while no exit code
//!   has come or frames wait in the reorder buffer, so a late exit code or output frame is kept
//!   (the plugin stops reading at `channel_closed`);
//! - KMS encryption is refused in the handshake: it needs a KMS data key bound to the session,
//!   which this client cannot obtain, so the session ends with [`SessionError::KmsUnsupported`].

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use thiserror::Error;
use tracing::{debug, warn};

use super::codec::{ClientMessage, FlagValue, MessageType, PayloadType};
use super::limits;
use super::payload::{
    AcknowledgeContent, ChannelClosed, HandshakeComplete, HandshakeRequest, HandshakeResponse,
    ProcessedClientAction, SizeData, action_status, parse_exit_code,
};

mod handshake;
mod rto;

pub use rto::RtoEstimator;

/// Something the driver must do after a call into the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Write this encoded frame to the socket as a binary message.
    Send(Vec<u8>),
    /// Remote terminal output, in order.
    Output(Vec<u8>),
    /// Remote standard error, in order.
    Stderr(Vec<u8>),
    /// The remote shell's exit status.
    ExitCode(i32),
    /// A message for the person at the terminal (e.g. the agent's customer message).
    Notice(String),
    /// The service closed the channel; the text is its `Output` (may be empty).
    Closed(String),
    /// The session cannot continue.
    Failed(SessionError),
}

/// Why a session cannot continue.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SessionError {
    /// The agent asked for KMS encryption.
    #[error(
        "the session requires KMS encryption, which pink-sombrero does not support: \
         remove kmsKeyId from the Session Manager preferences for this target"
    )]
    KmsUnsupported,
    /// The agent's handshake request could not be read, so it cannot be answered.
    #[error("the agent's handshake request is unreadable ({0}); the session cannot start")]
    HandshakeUnreadable(String),
    /// Input stayed unacknowledged too long.
    #[error("the agent has not acknowledged input for {0:?}; the session is considered lost")]
    AgentUnresponsive(Duration),
    /// The peer sends nothing but frames that fail to decode.
    #[error("{0} consecutive malformed frames from the server (last: {1}); giving up")]
    TooManyMalformed(u32, String),
}

/// Frame counters, for logs, tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames dropped because they failed to decode or their payload was unreadable.
    pub malformed: u64,
    /// Output frames received again (seq below expected or already buffered); re-acked.
    pub duplicates: u64,
    /// Output frames buffered because they arrived ahead of the expected sequence number.
    pub out_of_order: u64,
    /// Output frames dropped unacked because the reorder buffer was full.
    pub buffer_full_drops: u64,
    /// Input frames sent again after their retransmission timeout.
    pub resends: u64,
    /// Acknowledge frames sent.
    pub acks_sent: u64,
    /// Valid frames with nothing to do (publication control, unexpected types).
    pub ignored: u64,
}

/// Where the session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the agent's handshake to complete; input is held back.
    Handshake,
    /// Data flows both ways.
    Ready,
    /// `channel_closed` arrived; output still in flight is taken until the linger ends.
    Closing,
    /// Closed or failed; every further call is a no-op.
    Ended,
}

/// One sent input frame awaiting its ack.
#[derive(Debug)]
struct Unacked {
    seq: i64,
    bytes: Vec<u8>,
    first_sent: Instant,
    last_sent: Instant,
    resent: bool,
}

/// The client side of one data channel session.
#[derive(Debug)]
pub struct Session {
    phase: Phase,
    client_version: String,
    next_out_seq: i64,
    unacked: VecDeque<Unacked>,
    rto: RtoEstimator,
    expected_in_seq: i64,
    reorder: BTreeMap<i64, ClientMessage>,
    handshake_seen: bool,
    pending_input: VecDeque<Vec<u8>>,
    size: SizeData,
    sent_size: Option<SizeData>,
    consecutive_malformed: u32,
    counters: Counters,
    /// An exit-code frame was delivered.
    exit_seen: bool,
    /// In [`Phase::Closing`]: the service's close text and when the linger ends.
    closing: Option<(String, Instant)>,
}

impl Session {
    /// A session that will report `initial_size` once the handshake completes.
    pub fn new(initial_size: SizeData, client_version: &str) -> Self {
        Session {
            phase: Phase::Handshake,
            client_version: client_version.to_string(),
            next_out_seq: 0,
            unacked: VecDeque::new(),
            rto: RtoEstimator::default(),
            expected_in_seq: 0,
            reorder: BTreeMap::new(),
            handshake_seen: false,
            pending_input: VecDeque::new(),
            size: initial_size,
            sent_size: None,
            consecutive_malformed: 0,
            counters: Counters::default(),
            exit_seen: false,
            closing: None,
        }
    }

    /// Current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The retransmission timer.
    pub fn rto(&self) -> RtoEstimator {
        self.rto
    }

    /// Input frames sent and not yet acknowledged.
    pub fn unacked_len(&self) -> usize {
        self.unacked.len()
    }

    /// Whether the driver should read more input now (ready, and the unacked list has room).
    pub fn accepts_input(&self) -> bool {
        self.phase == Phase::Ready && self.unacked.len() < limits::MAX_UNACKED
    }

    /// Handles one binary frame from the socket.
    pub fn on_frame(&mut self, bytes: &[u8], now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.phase == Phase::Ended {
            return fx;
        }
        let msg = match ClientMessage::decode(bytes) {
            Ok(msg) => {
                self.consecutive_malformed = 0;
                msg
            }
            Err(e) => {
                self.counters.malformed += 1;
                self.consecutive_malformed += 1;
                warn!(error = %e, len = bytes.len(), "dropping malformed data channel frame");
                if self.consecutive_malformed >= limits::MAX_CONSECUTIVE_MALFORMED {
                    self.fail(
                        &mut fx,
                        SessionError::TooManyMalformed(self.consecutive_malformed, e.to_string()),
                    );
                }
                return fx;
            }
        };
        match msg.message_type {
            MessageType::OutputStreamData => {
                self.on_output_frame(msg, now, &mut fx);
                if self.phase == Phase::Closing {
                    self.end_if_settled(&mut fx);
                }
            }
            MessageType::Acknowledge => self.on_ack(&msg, now),
            MessageType::ChannelClosed if self.phase == Phase::Closing => {
                debug!("repeated channel_closed ignored");
            }
            MessageType::ChannelClosed => {
                let closed: ChannelClosed =
                    serde_json::from_slice(&msg.payload).unwrap_or_else(|e| {
                        warn!(error = %e, "channel_closed payload unreadable; closing anyway");
                        ChannelClosed::default()
                    });
                if self.phase == Phase::Handshake {
                    self.phase = Phase::Ended;
                    fx.push(Effect::Closed(closed.output));
                } else {
                    self.phase = Phase::Closing;
                    self.closing = Some((closed.output, now + limits::CLOSE_LINGER));
                    self.end_if_settled(&mut fx);
                }
            }
            MessageType::StartPublication | MessageType::PausePublication => {
                // The plugin ignores both and keeps sending; so do we. Not fatal before the
                // handshake either (the service may send them before the agent joins).
                debug!(kind = %msg.message_type, "publication control ignored");
                self.counters.ignored += 1;
            }
            MessageType::InputStreamData | MessageType::AgentSessionState => {
                debug!(kind = %msg.message_type, "frame not meant for a client ignored");
                self.counters.ignored += 1;
            }
        }
        fx
    }

    /// Queues terminal input; it is sent in chunks of at most [`limits::INPUT_CHUNK`] bytes once
    /// the handshake is complete.
    pub fn send_input(&mut self, data: &[u8], now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        if matches!(self.phase, Phase::Ended | Phase::Closing) {
            return fx;
        }
        for chunk in data.chunks(limits::INPUT_CHUNK) {
            if self.phase == Phase::Ready {
                self.send_sequenced(PayloadType::Output, chunk.to_vec(), now, &mut fx);
            } else {
                self.pending_input.push_back(chunk.to_vec());
            }
        }
        fx
    }

    /// Records a new terminal size and sends it if the session is ready and it changed.
    pub fn resize(&mut self, size: SizeData, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.size = size;
        if self.phase == Phase::Ready && self.sent_size != Some(size) {
            self.send_size(now, &mut fx);
        }
        fx
    }

    /// Asks the agent to end the session (Flag TerminateSession). Returns nothing before the
    /// handshake completes: there is no agent session to end yet, the driver just closes.
    pub fn terminate(&mut self, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.phase == Phase::Closing {
            return self.close_now();
        }
        if self.phase == Phase::Ready {
            let flag = (FlagValue::TerminateSession as u32).to_be_bytes().to_vec();
            self.send_sequenced(PayloadType::Flag, flag, now, &mut fx);
        }
        fx
    }

    /// Timer tick: resends input whose retransmission timeout has passed, and gives up when
    /// the oldest input has waited [`limits::RESEND_GIVE_UP`].
    pub fn tick(&mut self, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.phase == Phase::Ended {
            return fx;
        }
        if self.phase == Phase::Closing {
            // The channel is closed: nothing sent now can be acked, so nothing is resent.
            if self.closing.as_ref().is_some_and(|(_, by)| now >= *by) {
                return self.close_now();
            }
            return fx;
        }
        if let Some(front) = self.unacked.front() {
            let waited = now.saturating_duration_since(front.first_sent);
            if waited >= limits::RESEND_GIVE_UP {
                self.fail(&mut fx, SessionError::AgentUnresponsive(waited));
                return fx;
            }
        }
        let rto = self.rto.rto();
        let mut resent = 0;
        for frame in self.unacked.iter_mut() {
            if resent == limits::MAX_RESENDS_PER_TICK {
                break;
            }
            if now.saturating_duration_since(frame.last_sent) >= rto {
                frame.last_sent = now;
                frame.resent = true;
                fx.push(Effect::Send(frame.bytes.clone()));
                resent += 1;
            }
        }
        self.counters.resends += resent as u64;
        fx
    }

    /// After a reconnect: everything unacked may have been lost with the old socket, so it is
    /// all resent at once, in order; then the size again (the same one), so the remote side
    /// redraws its prompt or screen after the notice that interrupted it.
    pub fn on_reconnected(&mut self, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.phase == Phase::Ended {
            return fx;
        }
        for frame in self.unacked.iter_mut() {
            frame.last_sent = now;
            frame.resent = true;
            fx.push(Effect::Send(frame.bytes.clone()));
        }
        self.counters.resends += self.unacked.len() as u64;
        if self.phase == Phase::Ready {
            self.send_size(now, &mut fx);
        }
        fx
    }

    /// Ends a session in [`Phase::Closing`] at once (linger over, or the socket went away)
    /// with the service's close text; nothing for a session in another phase.
    pub fn close_now(&mut self) -> Vec<Effect> {
        if self.phase != Phase::Closing {
            return Vec::new();
        }
        self.phase = Phase::Ended;
        let reason = self.closing.take().map(|(r, _)| r).unwrap_or_default();
        vec![Effect::Closed(reason)]
    }

    /// In [`Phase::Closing`]: ends now when nothing more is expected (an exit code came and no
    /// frame waits for a gap to fill).
    fn end_if_settled(&mut self, fx: &mut Vec<Effect>) {
        if self.phase == Phase::Closing && self.exit_seen && self.reorder.is_empty() {
            fx.extend(self.close_now());
        }
    }

    fn fail(&mut self, fx: &mut Vec<Effect>, err: SessionError) {
        warn!(error = %err, "data channel session failed");
        self.phase = Phase::Ended;
        fx.push(Effect::Failed(err));
    }

    fn send_sequenced(
        &mut self,
        payload_type: PayloadType,
        payload: Vec<u8>,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let seq = self.next_out_seq;
        self.next_out_seq += 1;
        let bytes = ClientMessage::new(MessageType::InputStreamData, seq, 0, payload_type, payload)
            .encode();
        fx.push(Effect::Send(bytes.clone()));
        self.unacked.push_back(Unacked {
            seq,
            bytes,
            first_sent: now,
            last_sent: now,
            resent: false,
        });
    }

    fn send_size(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let size = self.size;
        // A struct of two integers always serialises.
        let payload = serde_json::to_vec(&size).unwrap_or_default();
        self.send_sequenced(PayloadType::Size, payload, now, fx);
        self.sent_size = Some(size);
    }

    fn ack(&mut self, msg: &ClientMessage, fx: &mut Vec<Effect>) {
        self.counters.acks_sent += 1;
        fx.push(Effect::Send(
            AcknowledgeContent::ack_frame_for(msg).encode(),
        ));
    }

    fn on_ack(&mut self, msg: &ClientMessage, now: Instant) {
        let content: AcknowledgeContent = match serde_json::from_slice(&msg.payload) {
            Ok(c) => c,
            Err(e) => {
                self.counters.malformed += 1;
                warn!(error = %e, "dropping acknowledge with unreadable payload");
                return;
            }
        };
        // Acks are not cumulative: only the frame with exactly this sequence number goes.
        let Ok(pos) = self
            .unacked
            .binary_search_by_key(&content.sequence_number, |u| u.seq)
        else {
            debug!(seq = content.sequence_number, "ack for no unacked frame");
            return;
        };
        if let Some(frame) = self.unacked.remove(pos)
            && !frame.resent
        {
            self.rto
                .sample(now.saturating_duration_since(frame.first_sent));
        }
    }

    fn on_output_frame(&mut self, msg: ClientMessage, now: Instant, fx: &mut Vec<Effect>) {
        let seq = msg.sequence_number;
        if seq < self.expected_in_seq || self.reorder.contains_key(&seq) {
            self.counters.duplicates += 1;
            debug!(
                seq,
                expected = self.expected_in_seq,
                "duplicate output re-acked"
            );
            self.ack(&msg, fx);
            return;
        }
        if seq > self.expected_in_seq {
            if self.reorder.len() >= limits::MAX_BUFFERED {
                self.counters.buffer_full_drops += 1;
                warn!(
                    seq,
                    "reorder buffer full; dropping frame unacked for a resend"
                );
                return;
            }
            self.counters.out_of_order += 1;
            self.ack(&msg, fx);
            self.reorder.insert(seq, msg);
            return;
        }
        self.ack(&msg, fx);
        self.process(msg, now, fx);
        self.expected_in_seq += 1;
        while self.phase != Phase::Ended {
            let Some(next) = self.reorder.remove(&self.expected_in_seq) else {
                break;
            };
            self.process(next, now, fx);
            self.expected_in_seq += 1;
        }
    }

    /// Acts on one in-order output frame (already acked).
    fn process(&mut self, msg: ClientMessage, now: Instant, fx: &mut Vec<Effect>) {
        match msg.payload_type {
            PayloadType::HandshakeRequest => self.on_handshake_request(&msg, now, fx),
            PayloadType::HandshakeComplete => self.on_handshake_complete(&msg, now, fx),
            PayloadType::EncChallengeRequest => self.fail(fx, SessionError::KmsUnsupported),
            PayloadType::Output => {
                if self.phase == Phase::Handshake && !self.handshake_seen {
                    // Agents too old for the handshake start straight with output.
                    self.become_ready(now, fx);
                }
                fx.push(Effect::Output(msg.payload));
            }
            PayloadType::StdErr => fx.push(Effect::Stderr(msg.payload)),
            PayloadType::ExitCode => match parse_exit_code(&msg.payload) {
                Some(code) => {
                    self.exit_seen = true;
                    fx.push(Effect::ExitCode(code));
                }
                None => {
                    self.counters.malformed += 1;
                    warn!(payload = ?String::from_utf8_lossy(&msg.payload), "unreadable exit code");
                }
            },
            PayloadType::Flag => match <[u8; 4]>::try_from(msg.payload.as_slice()) {
                Ok(b) if u32::from_be_bytes(b) == FlagValue::ConnectToPortError as u32 => {
                    fx.push(Effect::Notice(
                        "the agent could not connect to the remote port".to_string(),
                    ));
                }
                Ok(b) => {
                    debug!(flag = u32::from_be_bytes(b), "flag from agent ignored");
                    self.counters.ignored += 1;
                }
                Err(_) => {
                    self.counters.malformed += 1;
                    warn!(len = msg.payload.len(), "flag payload is not 4 bytes");
                }
            },
            other => {
                debug!(payload_type = other.to_u32(), "output payload type ignored");
                self.counters.ignored += 1;
            }
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
