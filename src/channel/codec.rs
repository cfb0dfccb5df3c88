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
mod tests {
    use super::*;

    const VECTOR_UUID: &str = "00112233-4455-6677-8899-aabbccddeeff";

    /// Parses a hexdump block of `../shared/ssm-vectors.txt` ("0000  hex...").
    fn hexdump(s: &str) -> Vec<u8> {
        s.lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .flat_map(|h| hex::decode(h).unwrap_or_default())
            .collect()
    }

    const INPUT_LS: &str = "0000  00000074696e7075745f73747265616d
0010  5f646174612020202020202020202020
0020  20202020000000010000018bcfe5687b
0030  00000000000000050000000000000000
0040  8899aabbccddeeff0011223344556677
0050  1d887ce0f8672e4914d9000e801cd74e
0060  cd805dd9366c0bc42dc16adc0197dc2f
0070  00000001000000036c730d";

    const ACK: &str = "0000  0000007461636b6e6f776c6564676520
0010  20202020202020202020202020202020
0020  20202020000000010000018bcfe5687b
0030  00000000000000000000000000000003
0040  8899aabbccddeeff0011223344556677
0050  62d57ca2dfb7aa0eee6a8e12491c3e9f
0060  effd166f2b0f36b96eba41866669e854
0070  00000000000000b07b2241636b6e6f77
0080  6c65646765644d657373616765547970
0090  65223a226f75747075745f7374726561
00a0  6d5f64617461222c2241636b6e6f776c
00b0  65646765644d6573736167654964223a
00c0  2230303131323233332d343435352d36
00d0  3637372d383839392d61616262636364
00e0  6465656666222c2241636b6e6f776c65
00f0  646765644d6573736167655365717565
0100  6e63654e756d626572223a372c224973
0110  53657175656e7469616c4d6573736167
0120  65223a747275657d";

    const FLAG_TERMINATE: &str = "0000  00000074696e7075745f73747265616d
0010  5f646174612020202020202020202020
0020  20202020000000010000000000000001
0030  00000000000000000000000000000000
0040  8899aabbccddeeff0011223344556677
0050  433ebf5bc03dffa38536673207a21281
0060  612cef5faa9bc7a4d5b9be2fdb12cf1a
0070  0000000a0000000400000002";

    fn vector_id() -> Uuid {
        Uuid::parse_str(VECTOR_UUID).expect("vector uuid")
    }

    #[test]
    fn encodes_input_vector_byte_for_byte() {
        let msg = ClientMessage {
            message_type: MessageType::InputStreamData,
            schema_version: 1,
            created_date: 1_700_000_000_123,
            sequence_number: 5,
            flags: 0,
            message_id: vector_id(),
            payload_type: PayloadType::Output,
            payload: b"ls\r".to_vec(),
        };
        let wire = msg.encode();
        assert_eq!(wire.len(), 123);
        assert_eq!(wire, hexdump(INPUT_LS));
        assert_eq!(ClientMessage::decode(&wire), Ok(msg));
    }

    #[test]
    fn decodes_ack_vector() {
        let wire = hexdump(ACK);
        assert_eq!(wire.len(), 296);
        let msg = ClientMessage::decode(&wire).expect("ack vector decodes");
        assert_eq!(msg.message_type, MessageType::Acknowledge);
        assert_eq!(msg.flags, ACK_FLAGS);
        assert_eq!(msg.sequence_number, 0);
        assert_eq!(msg.payload_type, PayloadType::Undefined);
        assert_eq!(msg.message_id.to_string(), VECTOR_UUID);
        assert_eq!(
            std::str::from_utf8(&msg.payload).expect("utf8"),
            r#"{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"00112233-4455-6677-8899-aabbccddeeff","AcknowledgedMessageSequenceNumber":7,"IsSequentialMessage":true}"#
        );
        assert_eq!(msg.encode(), wire);
    }

    #[test]
    fn decodes_terminate_flag_vector() {
        let wire = hexdump(FLAG_TERMINATE);
        assert_eq!(wire.len(), 124);
        let msg = ClientMessage::decode(&wire).expect("flag vector decodes");
        assert_eq!(msg.payload_type, PayloadType::Flag);
        assert_eq!(msg.created_date, 1);
        assert_eq!(msg.sequence_number, 0);
        assert_eq!(
            msg.payload,
            (FlagValue::TerminateSession as u32).to_be_bytes()
        );
        assert_eq!(msg.encode(), wire);
    }

    #[test]
    fn uuid_halves_swap_and_back() {
        let id = vector_id();
        let w = uuid_to_wire(&id);
        assert_eq!(hex::encode(w), "8899aabbccddeeff0011223344556677");
        assert_eq!(uuid_from_wire(&w), id);
    }

    #[test]
    fn round_trips_every_payload_type_and_sizes() {
        for pt in 0..=13u32 {
            for len in [0usize, 1, 1023, 1024, 70_000] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 7 + pt as usize) as u8).collect();
                let msg = ClientMessage::new(
                    MessageType::OutputStreamData,
                    i64::from(pt) * 1000 + len as i64,
                    FLAG_SYN,
                    PayloadType::from_u32(pt),
                    payload,
                );
                let back = ClientMessage::decode(&msg.encode()).expect("round trip");
                assert_eq!(back, msg);
            }
        }
    }

    #[test]
    fn short_frames_are_rejected_not_panicking() {
        let wire = hexdump(INPUT_LS);
        for n in 0..FRAME_OVERHEAD {
            assert_eq!(ClientMessage::decode(&wire[..n]), Err(CodecError::Short(n)));
        }
    }

    #[test]
    fn truncated_payload_is_rejected() {
        let wire = hexdump(INPUT_LS);
        assert!(matches!(
            ClientMessage::decode(&wire[..122]),
            Err(CodecError::PayloadLengthMismatch {
                declared: 3,
                actual: 2
            })
        ));
    }

    #[test]
    fn bad_digest_is_rejected() {
        let mut wire = hexdump(INPUT_LS);
        wire[120] ^= 0x01; // flip a payload bit
        assert_eq!(ClientMessage::decode(&wire), Err(CodecError::BadDigest));
        let mut wire = hexdump(INPUT_LS);
        wire[OFF_DIGEST] ^= 0x80; // flip a digest bit
        assert_eq!(ClientMessage::decode(&wire), Err(CodecError::BadDigest));
    }

    #[test]
    fn bad_header_lengths_are_rejected() {
        for hl in [0u32, 1, 115, 200, u32::MAX] {
            let mut wire = hexdump(INPUT_LS);
            wire[..4].copy_from_slice(&hl.to_be_bytes());
            assert_eq!(
                ClientMessage::decode(&wire),
                Err(CodecError::BadHeaderLength {
                    header_length: hl,
                    frame_len: 123
                })
            );
        }
    }

    #[test]
    fn garbage_and_unknown_types_are_rejected() {
        let mut wire = hexdump(INPUT_LS);
        wire[OFF_TYPE..OFF_TYPE + 32].copy_from_slice(&[b' '; 32]);
        assert_eq!(
            ClientMessage::decode(&wire),
            Err(CodecError::BadMessageType)
        );
        let mut wire = hexdump(INPUT_LS);
        wire[OFF_TYPE] = 0xff;
        assert_eq!(
            ClientMessage::decode(&wire),
            Err(CodecError::BadMessageType)
        );
        let mut wire = hexdump(INPUT_LS);
        wire[OFF_TYPE..OFF_TYPE + 5].copy_from_slice(b"bogus");
        assert!(matches!(
            ClientMessage::decode(&wire),
            Err(CodecError::UnknownMessageType(_))
        ));
    }

    #[test]
    fn nul_padded_type_is_accepted() {
        let mut wire = hexdump(INPUT_LS);
        for b in &mut wire[OFF_TYPE + 17..OFF_TYPE + 32] {
            *b = 0;
        }
        let msg = ClientMessage::decode(&wire).expect("NUL padding accepted");
        assert_eq!(msg.message_type, MessageType::InputStreamData);
    }

    #[test]
    fn zero_created_date_is_rejected() {
        let mut wire = hexdump(INPUT_LS);
        wire[OFF_CREATED..OFF_CREATED + 8].copy_from_slice(&[0; 8]);
        assert_eq!(
            ClientMessage::decode(&wire),
            Err(CodecError::ZeroCreatedDate)
        );
    }

    #[test]
    fn publication_messages_skip_validation() {
        let mut msg = ClientMessage::new(
            MessageType::PausePublication,
            0,
            0,
            PayloadType::Undefined,
            b"{}".to_vec(),
        );
        msg.created_date = 0;
        let mut wire = msg.encode();
        // Garbage PayloadLength (little-endian) and digest, as the service is known to send.
        wire[OFF_PAYLOAD_LEN..OFF_PAYLOAD_LEN + 4].copy_from_slice(&2u32.to_le_bytes());
        wire[OFF_DIGEST] ^= 0xff;
        let back = ClientMessage::decode(&wire).expect("publication accepted");
        assert_eq!(back.message_type, MessageType::PausePublication);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: mutate the vector at every offset with several values.
        let base = hexdump(ACK);
        for off in 0..base.len() {
            for v in [0u8, 0x20, 0x7f, 0xff] {
                let mut w = base.clone();
                w[off] = v;
                let _ = ClientMessage::decode(&w);
            }
        }
    }
}
