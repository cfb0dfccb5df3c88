//! JSON payloads carried inside data-channel frames, with field names and order exactly as the
//! official client writes them (Go `encoding/json` struct order).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{ACK_FLAGS, ClientMessage, MessageType, PayloadType};

/// The first (text) frame a client sends after connecting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OpenDataChannelInput {
    /// Always "1.0".
    pub message_schema_version: String,
    /// Fresh per connection.
    pub request_id: String,
    /// The StartSession/ResumeSession token.
    pub token_value: String,
    /// Stable per client process.
    pub client_id: String,
    /// Absent in older clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
}

/// Payload of an `acknowledge` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcknowledgeContent {
    /// Type of the frame acknowledged.
    #[serde(rename = "AcknowledgedMessageType")]
    pub message_type: String,
    /// Canonical id of the frame acknowledged.
    #[serde(rename = "AcknowledgedMessageId")]
    pub message_id: String,
    /// Sequence number of the frame acknowledged: the only field a receiver matches on.
    #[serde(rename = "AcknowledgedMessageSequenceNumber")]
    pub sequence_number: i64,
    /// Always true, even for buffered out-of-order frames.
    #[serde(rename = "IsSequentialMessage")]
    pub is_sequential_message: bool,
}

impl AcknowledgeContent {
    /// The acknowledge frame for `msg`: seq 0, flags 3, payload type 0, new id.
    pub fn ack_frame_for(msg: &ClientMessage) -> ClientMessage {
        let content = AcknowledgeContent {
            message_type: msg.message_type.as_str().to_string(),
            message_id: msg.message_id.to_string(),
            sequence_number: msg.sequence_number,
            is_sequential_message: true,
        };
        // Serialising a plain struct of strings and numbers cannot fail.
        let payload = serde_json::to_vec(&content).unwrap_or_default();
        ClientMessage::new(
            MessageType::Acknowledge,
            0,
            ACK_FLAGS,
            PayloadType::Undefined,
            payload,
        )
    }
}

/// One action the agent asks the client to process during the handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestedClientAction {
    /// `SessionType` or `KMSEncryption`.
    #[serde(rename = "ActionType")]
    pub action_type: String,
    /// Action-specific parameters.
    #[serde(rename = "ActionParameters", default)]
    pub action_parameters: serde_json::Value,
}

/// Payload type 5, agent to client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandshakeRequest {
    /// Four-part agent version, e.g. `3.3.40.0`.
    #[serde(rename = "AgentVersion")]
    pub agent_version: String,
    /// What the client must do.
    #[serde(rename = "RequestedClientActions", default)]
    pub requested_client_actions: Vec<RequestedClientAction>,
}

/// Status numbers of a processed action.
pub mod action_status {
    /// The action succeeded.
    pub const SUCCESS: i32 = 1;
    /// The action failed.
    pub const FAILED: i32 = 2;
    /// The client does not support the action.
    pub const UNSUPPORTED: i32 = 3;
}

/// One action as the client reports it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessedClientAction {
    /// Same as the request's.
    #[serde(rename = "ActionType")]
    pub action_type: String,
    /// See [`action_status`].
    #[serde(rename = "ActionStatus")]
    pub action_status: i32,
    /// Action result (null for SessionType).
    #[serde(rename = "ActionResult")]
    pub action_result: serde_json::Value,
    /// Error text, empty on success.
    #[serde(rename = "Error")]
    pub error: String,
}

/// Payload type 6, client to agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandshakeResponse {
    /// Client version string.
    #[serde(rename = "ClientVersion")]
    pub client_version: String,
    /// One entry per requested action.
    #[serde(rename = "ProcessedClientActions")]
    pub processed_client_actions: Vec<ProcessedClientAction>,
    /// Null when there are none.
    #[serde(rename = "Errors")]
    pub errors: Option<Vec<String>>,
}

/// Payload type 7, agent to client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeComplete {
    /// Nanoseconds the handshake took.
    #[serde(rename = "HandshakeTimeToComplete")]
    pub handshake_time_to_complete: i64,
    /// Printed to the user when not empty.
    #[serde(rename = "CustomerMessage", default)]
    pub customer_message: String,
}

/// Payload type 3, client to agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeData {
    /// Columns.
    pub cols: u32,
    /// Rows.
    pub rows: u32,
}

/// Payload of a `channel_closed` frame; only `Output` matters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ChannelClosed {
    /// Id of the closing message.
    #[serde(rename = "MessageId", default)]
    pub message_id: String,
    /// Creation time, as text.
    #[serde(rename = "CreatedDate", default)]
    pub created_date: String,
    /// Destination id.
    #[serde(rename = "DestinationId", default)]
    pub destination_id: String,
    /// Session id.
    #[serde(rename = "SessionId", default)]
    pub session_id: String,
    /// Always `channel_closed`.
    #[serde(rename = "MessageType", default)]
    pub message_type: String,
    /// Schema version.
    #[serde(rename = "SchemaVersion", default)]
    pub schema_version: i64,
    /// Text for the user.
    #[serde(rename = "Output", default)]
    pub output: String,
}

/// Parses `EXIT_CODE: <n>` (payload type 12).
pub fn parse_exit_code(payload: &[u8]) -> Option<i32> {
    let s = std::str::from_utf8(payload).ok()?;
    s.trim().strip_prefix("EXIT_CODE:")?.trim().parse().ok()
}

/// Formats an exit code payload as the agent does.
pub fn exit_code_payload(code: i32) -> Vec<u8> {
    format!("EXIT_CODE: {code}").into_bytes()
}

/// A fresh random v4 id as a string.
pub fn new_id() -> String {
    Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_json_matches_official_client_exactly() {
        let content = AcknowledgeContent {
            message_type: "output_stream_data".into(),
            message_id: "00112233-4455-6677-8899-aabbccddeeff".into(),
            sequence_number: 7,
            is_sequential_message: true,
        };
        assert_eq!(
            serde_json::to_string(&content).expect("json"),
            r#"{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"00112233-4455-6677-8899-aabbccddeeff","AcknowledgedMessageSequenceNumber":7,"IsSequentialMessage":true}"#
        );
    }

    #[test]
    fn ack_frame_has_official_header_fields() {
        let out = ClientMessage::new(
            MessageType::OutputStreamData,
            42,
            0,
            PayloadType::Output,
            b"x".to_vec(),
        );
        let ack = AcknowledgeContent::ack_frame_for(&out);
        assert_eq!(ack.message_type, MessageType::Acknowledge);
        assert_eq!(ack.sequence_number, 0);
        assert_eq!(ack.flags, 3);
        assert_eq!(ack.payload_type, PayloadType::Undefined);
        assert_ne!(ack.message_id, out.message_id);
        let c: AcknowledgeContent = serde_json::from_slice(&ack.payload).expect("ack json");
        assert_eq!(c.sequence_number, 42);
        assert_eq!(c.message_id, out.message_id.to_string());
    }

    #[test]
    fn handshake_payloads_match_vectors() {
        let resp = HandshakeResponse {
            client_version: "1.2.0.0".into(),
            processed_client_actions: vec![ProcessedClientAction {
                action_type: "SessionType".into(),
                action_status: action_status::SUCCESS,
                action_result: serde_json::Value::Null,
                error: String::new(),
            }],
            errors: None,
        };
        assert_eq!(
            serde_json::to_string(&resp).expect("json"),
            r#"{"ClientVersion":"1.2.0.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}"#
        );
        let done: HandshakeComplete = serde_json::from_str(
            r#"{"HandshakeTimeToComplete":1500000000,"CustomerMessage":"hi"}"#,
        )
        .expect("complete json");
        assert_eq!(done.customer_message, "hi");
        assert_eq!(
            serde_json::to_string(&SizeData { cols: 80, rows: 24 }).expect("json"),
            r#"{"cols":80,"rows":24}"#
        );
        let open = OpenDataChannelInput {
            message_schema_version: "1.0".into(),
            request_id: "r".into(),
            token_value: "t".into(),
            client_id: "c".into(),
            client_version: Some("1.2.0.0".into()),
        };
        assert_eq!(
            serde_json::to_string(&open).expect("json"),
            r#"{"MessageSchemaVersion":"1.0","RequestId":"r","TokenValue":"t","ClientId":"c","ClientVersion":"1.2.0.0"}"#
        );
        let old: OpenDataChannelInput = serde_json::from_str(
            r#"{"MessageSchemaVersion":"1.0","RequestId":"r","TokenValue":"t","ClientId":"c"}"#,
        )
        .expect("older clients omit ClientVersion");
        assert_eq!(old.client_version, None);
    }

    #[test]
    fn exit_codes_parse() {
        assert_eq!(parse_exit_code(b"EXIT_CODE: 3"), Some(3));
        assert_eq!(parse_exit_code(&exit_code_payload(-1)), Some(-1));
        assert_eq!(parse_exit_code(b"EXIT_CODE: x"), None);
        assert_eq!(parse_exit_code(b"\xff"), None);
    }
}
