//! Binary `ClientMessage` frames of the Session Manager data channel: bytes <-> frames.
//!
//! Pure: no I/O, no clocks except where a caller asks for "now". Layout and rules are in
//! `../shared/ssm-data-channel.md` §2; every integer is big-endian.

use sha2::{Digest, Sha256};
use thiserror::Error;
use uuid::Uuid;

/// Value the writer puts in HeaderLength: the offset of PayloadLength.
pub const HEADER_LENGTH: u32 = 116;
/// Bytes before the payload: header (116) plus the PayloadLength field (4).
pub const FRAME_OVERHEAD: usize = 120;
/// Width of the space-padded MessageType field.
const MESSAGE_TYPE_LEN: usize = 32;
/// Schema version every frame carries.
pub const SCHEMA_VERSION: u32 = 1;
/// Flags value of an acknowledge frame (SYN|FIN, as the official client sends it).
pub const ACK_FLAGS: u64 = 3;
/// Flag bit the agent sets on its first output frame.
pub const FLAG_SYN: u64 = 1;

const OFF_TYPE: usize = 4;
const OFF_SCHEMA: usize = 36;
const OFF_CREATED: usize = 40;
const OFF_SEQ: usize = 48;
const OFF_FLAGS: usize = 56;
const OFF_ID: usize = 64;
const OFF_DIGEST: usize = 80;
const OFF_PAYLOAD_TYPE: usize = 112;
const OFF_PAYLOAD_LEN: usize = 116;

/// What a frame is, from its MessageType field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// Client to agent data (keystrokes, handshake response, size, flags).
    InputStreamData,
    /// Agent to client data (output, handshake request/complete, exit code).
    OutputStreamData,
    /// Acknowledgement of one sequenced frame.
    Acknowledge,
    /// The service closed the channel.
    ChannelClosed,
    /// The service asks the sender to resume.
    StartPublication,
    /// The service asks the sender to pause.
    PausePublication,
    /// Agent to service state report.
    AgentSessionState,
}

impl MessageType {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            MessageType::InputStreamData => "input_stream_data",
            MessageType::OutputStreamData => "output_stream_data",
            MessageType::Acknowledge => "acknowledge",
            MessageType::ChannelClosed => "channel_closed",
            MessageType::StartPublication => "start_publication",
            MessageType::PausePublication => "pause_publication",
            MessageType::AgentSessionState => "agent_session_state",
        }
    }

    /// Parses a wire name; `None` for a name this protocol does not define.
    pub fn from_wire(s: &str) -> Option<Self> {
        Some(match s {
            "input_stream_data" => MessageType::InputStreamData,
            "output_stream_data" => MessageType::OutputStreamData,
            "acknowledge" => MessageType::Acknowledge,
            "channel_closed" => MessageType::ChannelClosed,
            "start_publication" => MessageType::StartPublication,
            "pause_publication" => MessageType::PausePublication,
            "agent_session_state" => MessageType::AgentSessionState,
            _ => return None,
        })
    }

    /// Publication messages bypass validation (the service fills them carelessly).
    pub fn is_publication(&self) -> bool {
        matches!(
            self,
            MessageType::StartPublication | MessageType::PausePublication
        )
    }
}

impl std::fmt::Display for MessageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The PayloadType field (§3 of the protocol notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadType {
    /// 0: used by acknowledge and other JSON control frames.
    Undefined,
    /// 1: raw terminal bytes.
    Output,
    /// 2: defined, unused.
    Error,
    /// 3: `{"cols":..,"rows":..}`.
    Size,
    /// 4: defined, unused.
    Parameter,
    /// 5: agent's handshake request.
    HandshakeRequest,
    /// 6: client's handshake response.
    HandshakeResponse,
    /// 7: agent's handshake complete.
    HandshakeComplete,
    /// 8: KMS challenge from the agent.
    EncChallengeRequest,
    /// 9: KMS challenge answer.
    EncChallengeResponse,
    /// 10: a 4-byte big-endian flag.
    Flag,
    /// 11: standard error bytes.
    StdErr,
    /// 12: `EXIT_CODE: <n>`.
    ExitCode,
    /// Any other number: kept so a caller can log it, never acted on.
    Unknown(u32),
}

impl PayloadType {
    /// Numeric wire value.
    pub fn to_u32(self) -> u32 {
        match self {
            PayloadType::Undefined => 0,
            PayloadType::Output => 1,
            PayloadType::Error => 2,
            PayloadType::Size => 3,
            PayloadType::Parameter => 4,
            PayloadType::HandshakeRequest => 5,
            PayloadType::HandshakeResponse => 6,
            PayloadType::HandshakeComplete => 7,
            PayloadType::EncChallengeRequest => 8,
            PayloadType::EncChallengeResponse => 9,
            PayloadType::Flag => 10,
            PayloadType::StdErr => 11,
            PayloadType::ExitCode => 12,
            PayloadType::Unknown(n) => n,
        }
    }

    /// From the numeric wire value.
    pub fn from_u32(n: u32) -> Self {
        match n {
            0 => PayloadType::Undefined,
            1 => PayloadType::Output,
            2 => PayloadType::Error,
            3 => PayloadType::Size,
            4 => PayloadType::Parameter,
            5 => PayloadType::HandshakeRequest,
            6 => PayloadType::HandshakeResponse,
            7 => PayloadType::HandshakeComplete,
            8 => PayloadType::EncChallengeRequest,
            9 => PayloadType::EncChallengeResponse,
            10 => PayloadType::Flag,
            11 => PayloadType::StdErr,
            12 => PayloadType::ExitCode,
            n => PayloadType::Unknown(n),
        }
    }
}

/// Values of a Flag (type 10) payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagValue {
    /// Client closed its local port connection.
    DisconnectToPort = 1,
    /// Client asks the agent to end the session.
    TerminateSession = 2,
    /// Agent could not connect to the port.
    ConnectToPortError = 3,
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage {
    /// Message type.
    pub message_type: MessageType,
    /// Schema version (1).
    pub schema_version: u32,
    /// Unix epoch milliseconds; never 0 on a valid frame.
    pub created_date: u64,
    /// Sequence number of sequenced streams; 0 for control frames.
    pub sequence_number: i64,
    /// Flags field (SYN bit 0, FIN bit 1).
    pub flags: u64,
    /// Message id (canonical form; the wire swaps its halves).
    pub message_id: Uuid,
    /// Payload type.
    pub payload_type: PayloadType,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

/// Why a frame was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    /// Fewer bytes than the fixed header.
    #[error("frame too short: {0} bytes, at least {FRAME_OVERHEAD} needed")]
    Short(usize),
    /// HeaderLength is zero, smaller than the fixed header, or points past the frame.
    #[error("bad header length {header_length} for a {frame_len}-byte frame")]
    BadHeaderLength {
        /// Value of the HeaderLength field.
        header_length: u32,
        /// Length of the whole frame.
        frame_len: usize,
    },
    /// MessageType is empty or not printable ASCII.
    #[error("message type field is empty or not ASCII")]
    BadMessageType,
    /// MessageType names no message of this protocol.
    #[error("unknown message type {0:?}")]
    UnknownMessageType(String),
    /// CreatedDate is zero.
    #[error("created date is zero")]
    ZeroCreatedDate,
    /// PayloadLength disagrees with the bytes present.
    #[error("payload length field says {declared} bytes, frame carries {actual}")]
    PayloadLengthMismatch {
        /// What the field says.
        declared: u32,
        /// What the frame holds.
        actual: usize,
    },
    /// SHA-256 of the payload is not the PayloadDigest field.
    #[error("payload digest mismatch")]
    BadDigest,
}

/// Writes a UUID in the wire's swapped-halves form.
pub fn uuid_to_wire(id: &Uuid) -> [u8; 16] {
    let b = id.as_bytes();
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&b[8..16]);
    out[8..].copy_from_slice(&b[..8]);
    out
}

/// Reads a UUID from the wire's swapped-halves form.
pub fn uuid_from_wire(w: &[u8; 16]) -> Uuid {
    // The swap is its own inverse.
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&w[8..16]);
    out[8..].copy_from_slice(&w[..8]);
    Uuid::from_bytes(out)
}

/// Milliseconds since the Unix epoch, never 0.
pub fn now_millis() -> u64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1);
    ms.max(1)
}

fn be_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_be_bytes(a)
}

impl ClientMessage {
    /// A new frame with a fresh random id and the current time.
    pub fn new(
        message_type: MessageType,
        sequence_number: i64,
        flags: u64,
        payload_type: PayloadType,
        payload: Vec<u8>,
    ) -> Self {
        ClientMessage {
            message_type,
            schema_version: SCHEMA_VERSION,
            created_date: now_millis(),
            sequence_number,
            flags,
            message_id: Uuid::new_v4(),
            payload_type,
            payload,
        }
    }

    /// Serialises the frame exactly as the official client does.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FRAME_OVERHEAD + self.payload.len());
        out.extend_from_slice(&HEADER_LENGTH.to_be_bytes());
        let mut ty = [b' '; MESSAGE_TYPE_LEN];
        let name = self.message_type.as_str().as_bytes();
        ty[..name.len()].copy_from_slice(name);
        out.extend_from_slice(&ty);
        out.extend_from_slice(&self.schema_version.to_be_bytes());
        out.extend_from_slice(&self.created_date.to_be_bytes());
        out.extend_from_slice(&self.sequence_number.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&uuid_to_wire(&self.message_id));
        out.extend_from_slice(&Sha256::digest(&self.payload));
        out.extend_from_slice(&self.payload_type.to_u32().to_be_bytes());
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Parses and validates one frame. Publication messages skip validation, as the
    /// official client does; everything else must be well formed.
    pub fn decode(frame: &[u8]) -> Result<Self, CodecError> {
        if frame.len() < FRAME_OVERHEAD {
            return Err(CodecError::Short(frame.len()));
        }
        let header_length = be_u32(frame, 0);
        let raw_type = &frame[OFF_TYPE..OFF_TYPE + MESSAGE_TYPE_LEN];
        let name: Vec<u8> = raw_type.iter().copied().filter(|&c| c != 0).collect();
        let name = std::str::from_utf8(&name)
            .map_err(|_| CodecError::BadMessageType)?
            .trim();
        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_graphic()) {
            return Err(CodecError::BadMessageType);
        }
        let message_type = MessageType::from_wire(name)
            .ok_or_else(|| CodecError::UnknownMessageType(name.to_string()))?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&frame[OFF_ID..OFF_ID + 16]);
        let created_date = be_u64(frame, OFF_CREATED);
        let publication = message_type.is_publication();

        // The official reader takes the payload from HeaderLength + 4, ignoring PayloadLength.
        let payload_start = header_length as usize + 4;
        let header_ok = header_length >= HEADER_LENGTH && payload_start <= frame.len();
        let payload = if header_ok {
            frame[payload_start..].to_vec()
        } else if publication {
            Vec::new()
        } else {
            return Err(CodecError::BadHeaderLength {
                header_length,
                frame_len: frame.len(),
            });
        };
        if !publication {
            if created_date == 0 {
                return Err(CodecError::ZeroCreatedDate);
            }
            let declared = be_u32(frame, OFF_PAYLOAD_LEN);
            if declared as usize != payload.len() {
                return Err(CodecError::PayloadLengthMismatch {
                    declared,
                    actual: payload.len(),
                });
            }
            if declared != 0
                && Sha256::digest(&payload).as_slice() != &frame[OFF_DIGEST..OFF_DIGEST + 32]
            {
                return Err(CodecError::BadDigest);
            }
        }
        Ok(ClientMessage {
            message_type,
            schema_version: be_u32(frame, OFF_SCHEMA),
            created_date,
            sequence_number: be_u64(frame, OFF_SEQ) as i64,
            flags: be_u64(frame, OFF_FLAGS),
            message_id: uuid_from_wire(&id),
            payload_type: PayloadType::from_u32(be_u32(frame, OFF_PAYLOAD_TYPE)),
            payload,
        })
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
