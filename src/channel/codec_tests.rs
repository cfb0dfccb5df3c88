//! Unit tests of [`super`] (`codec.rs`), kept apart so the module reads as product code.

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
