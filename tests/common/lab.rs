//! Shared by the lab tests: a lab, a real aws-sdk-ssm client pointed at it, and a raw data
//! channel peer built from the codec (it speaks the client side by hand so each protocol
//! rule of the server can be observed frame by frame).
#![allow(dead_code)] // also compiled alone by benches/channel.rs

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use futures_util::{SinkExt, StreamExt};
use pink_sombrero::channel::codec::{ClientMessage, MessageType, PayloadType};
use pink_sombrero::channel::payload::{
    AcknowledgeContent, ChannelClosed, HandshakeRequest, HandshakeResponse, OpenDataChannelInput,
    ProcessedClientAction, SizeData, action_status, parse_exit_code,
};
use pink_sombrero::lab::{Lab, LabConfig};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Guard against a hung test; never an assertion about speed.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub async fn lab(nodes: usize) -> Lab {
    // RUST_LOG=pink_sombrero=debug shows the lab's side of a failing test.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    pink_sombrero::lab::start(LabConfig {
        nodes,
        automation_delay: Duration::from_millis(50),
        ..LabConfig::default()
    })
    .await
    .unwrap()
}

pub async fn client(lab: &Lab) -> aws_sdk_ssm::Client {
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("lab", "lab-secret", None, None, "test"))
        .endpoint_url(lab.endpoint_url())
        .load()
        .await;
    aws_sdk_ssm::Client::new(&conf)
}

pub async fn first_node(ssm: &aws_sdk_ssm::Client) -> String {
    let out = ssm.describe_instance_information().send().await.unwrap();
    out.instance_information_list()[0]
        .instance_id()
        .unwrap()
        .to_string()
}

/// Starts a session on `target`: (session id, token, stream url).
pub async fn start_session(ssm: &aws_sdk_ssm::Client, target: &str) -> (String, String, String) {
    let s = ssm
        .start_session()
        .target(target)
        .reason("pink sombrero test")
        .send()
        .await
        .unwrap();
    (
        s.session_id().unwrap().to_string(),
        s.token_value().unwrap().to_string(),
        s.stream_url().unwrap().to_string(),
    )
}

/// A lab with a session open and handshaken on its first node.
pub struct Opened {
    pub lab: Lab,
    pub ssm: aws_sdk_ssm::Client,
    pub node: String,
    pub sid: String,
    pub token: String,
    pub url: String,
    pub peer: Peer,
}

pub async fn opened(nodes: usize) -> Opened {
    let lab = lab(nodes).await;
    let ssm = client(&lab).await;
    let node = first_node(&ssm).await;
    let (sid, token, url) = start_session(&ssm, &node).await;
    let mut peer = Peer::connect(&url, &token).await;
    peer.handshake().await;
    Opened {
        lab,
        ssm,
        node,
        sid,
        token,
        url,
        peer,
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A hand-driven data channel client.
pub struct Peer {
    ws: Ws,
    /// Next input sequence number.
    pub out_seq: i64,
    /// Next output sequence number to deliver.
    pub expected: i64,
    buffer: BTreeMap<i64, ClientMessage>,
    /// Every output_stream_data frame in arrival order (duplicates included).
    pub arrivals: Vec<ClientMessage>,
    /// Terminal bytes delivered in order.
    pub output: Vec<u8>,
    /// Sequence numbers the server acknowledged, in arrival order.
    pub acks: Vec<i64>,
    pub exit_code: Option<i32>,
    /// Set when channel_closed arrived; the second field says whether ExitCode came first.
    pub closed: Option<ChannelClosed>,
    pub exit_before_close: bool,
    /// Websocket ended (close frame or drop).
    pub ended: bool,
    /// When false, output frames are not acked (to watch resends).
    pub auto_ack: bool,
}

impl Peer {
    pub async fn connect(url: &str, token: &str) -> Peer {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let open = OpenDataChannelInput {
            message_schema_version: "1.0".into(),
            request_id: uuid::Uuid::new_v4().to_string(),
            token_value: token.into(),
            client_id: "test-client".into(),
            client_version: Some("1.2.0.0".into()),
        };
        // As the official plugin does: a keepalive ping first, then the open frame.
        ws.send(Message::Ping(b"keepalive".to_vec().into()))
            .await
            .unwrap();
        ws.send(Message::Text(serde_json::to_string(&open).unwrap().into()))
            .await
            .unwrap();
        Peer {
            ws,
            out_seq: 0,
            expected: 0,
            buffer: BTreeMap::new(),
            arrivals: Vec::new(),
            output: Vec::new(),
            acks: Vec::new(),
            exit_code: None,
            closed: None,
            exit_before_close: false,
            ended: false,
            auto_ack: true,
        }
    }

    /// Next websocket message of interest (binary frame or close), None when the socket ends.
    pub async fn next_raw(&mut self) -> Option<Message> {
        loop {
            let m = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("timed out waiting for the lab");
            match m {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(m)) => return Some(m),
                _ => return None,
            }
        }
    }

    pub async fn send_frame(&mut self, msg: &ClientMessage) {
        self.send_bytes(msg.encode()).await;
    }

    pub async fn send_bytes(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::Binary(bytes.into())).await.unwrap();
    }

    /// Builds the next input frame (not sent).
    pub fn input(&mut self, payload_type: PayloadType, payload: Vec<u8>) -> ClientMessage {
        let m = ClientMessage::new(
            MessageType::InputStreamData,
            self.out_seq,
            0,
            payload_type,
            payload,
        );
        self.out_seq += 1;
        m
    }

    pub async fn send_input(&mut self, payload_type: PayloadType, payload: Vec<u8>) {
        let m = self.input(payload_type, payload);
        self.send_frame(&m).await;
    }

    pub async fn type_text(&mut self, text: &str) {
        self.send_input(PayloadType::Output, text.as_bytes().to_vec())
            .await;
    }

    pub async fn resize(&mut self, cols: u32, rows: u32) {
        let p = serde_json::to_vec(&SizeData { cols, rows }).unwrap();
        self.send_input(PayloadType::Size, p).await;
    }

    pub async fn ack(&mut self, m: &ClientMessage) {
        let ack = AcknowledgeContent::ack_frame_for(m);
        self.send_frame(&ack).await;
    }

    /// Processes one frame: records it, acks output, delivers in order. False when the
    /// socket ended.
    pub async fn step(&mut self) -> bool {
        let Some(m) = self.next_raw().await else {
            self.ended = true;
            return false;
        };
        let bytes = match m {
            Message::Binary(b) => b.to_vec(),
            Message::Close(_) => {
                self.ended = true;
                return false;
            }
            _ => return true,
        };
        let msg = ClientMessage::decode(&bytes).unwrap();
        match msg.message_type {
            MessageType::OutputStreamData => {
                self.arrivals.push(msg.clone());
                if self.auto_ack {
                    // The lab may already be closing the socket; a lost ack is then harmless.
                    let ack = AcknowledgeContent::ack_frame_for(&msg);
                    let _ = self.ws.send(Message::Binary(ack.encode().into())).await;
                }
                if msg.sequence_number >= self.expected {
                    self.buffer.insert(msg.sequence_number, msg);
                }
                while let Some(m) = self.buffer.remove(&self.expected) {
                    self.deliver(m);
                    self.expected += 1;
                }
            }
            MessageType::Acknowledge => {
                let a: AcknowledgeContent = serde_json::from_slice(&msg.payload).unwrap();
                assert_eq!(msg.flags, 3, "acks carry flags 3");
                assert_eq!(msg.sequence_number, 0, "acks carry seq 0");
                self.acks.push(a.sequence_number);
            }
            MessageType::ChannelClosed => {
                self.exit_before_close = self.exit_code.is_some();
                self.closed = Some(serde_json::from_slice(&msg.payload).unwrap());
            }
            _ => {}
        }
        true
    }

    fn deliver(&mut self, m: ClientMessage) {
        match m.payload_type {
            PayloadType::Output | PayloadType::StdErr => self.output.extend_from_slice(&m.payload),
            PayloadType::ExitCode => self.exit_code = parse_exit_code(&m.payload),
            _ => {}
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    /// Steps until `pred` holds; panics if the socket ends first.
    pub async fn until(&mut self, what: &str, pred: impl Fn(&Peer) -> bool) {
        while !pred(self) {
            assert!(
                self.step().await,
                "socket ended while waiting for {what}; output so far: {:?}",
                self.text()
            );
        }
    }

    /// Steps until the output contains `needle`.
    pub async fn until_output(&mut self, needle: &str) {
        let n = needle.to_string();
        self.until(needle, move |p| p.text().contains(&n)).await;
    }

    /// Steps until the socket ends.
    pub async fn until_end(&mut self) {
        while self.step().await {}
    }

    /// The client side of the handshake; returns the agent's HandshakeRequest.
    pub async fn handshake(&mut self) -> (ClientMessage, HandshakeRequest) {
        let first = loop {
            let Some(Message::Binary(b)) = self.next_raw().await else {
                panic!("socket ended before the handshake");
            };
            let m = ClientMessage::decode(&b).unwrap();
            if m.message_type == MessageType::OutputStreamData {
                break m;
            }
        };
        assert_eq!(first.payload_type, PayloadType::HandshakeRequest);
        let req: HandshakeRequest = serde_json::from_slice(&first.payload).unwrap();
        self.ack(&first).await;
        self.expected = 1;
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
        self.send_input(
            PayloadType::HandshakeResponse,
            serde_json::to_vec(&resp).unwrap(),
        )
        .await;
        self.until("handshake complete", |p| {
            p.arrivals
                .iter()
                .any(|m| m.payload_type == PayloadType::HandshakeComplete)
        })
        .await;
        (first, req)
    }
}

/// Sends a raw HTTP/1.1 POST to the lab and returns (status, headers+body text).
pub async fn raw_post(lab: &Lab, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(lab.local_addr()).await.unwrap();
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n",
        lab.local_addr(),
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    (status, resp)
}
