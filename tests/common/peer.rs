//! A scripted data-channel server peer for client tests: accepts one websocket on loopback and
//! lets a test drive the codec frame by frame, including frames a real server never sends.

#![allow(dead_code, clippy::result_large_err)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pink_sombrero::channel::codec::{ClientMessage, MessageType, PayloadType};
use pink_sombrero::channel::payload::{AcknowledgeContent, OpenDataChannelInput};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderMap;

/// Bound on any single wait, so a broken client fails the test instead of hanging it.
pub const WAIT: Duration = Duration::from_secs(10);

pub const HANDSHAKE_REQUEST: &[u8] = br#"{"AgentVersion":"3.3.40.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Standard_Stream","Properties":{}}}]}"#;
pub const HANDSHAKE_COMPLETE: &[u8] = br#"{"HandshakeTimeToComplete":1000,"CustomerMessage":""}"#;

pub struct Listener {
    pub listener: TcpListener,
    pub url: String,
}

impl Listener {
    pub async fn bind() -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        Listener {
            listener,
            url: format!("ws://127.0.0.1:{port}/v1/data-channel/s-1?role=publish_subscribe"),
        }
    }

    /// Accepts one connection and reads its open frame (answering the keepalive ping).
    pub async fn accept(&self) -> Peer {
        let (tcp, _) = tokio::time::timeout(WAIT, self.listener.accept())
            .await
            .unwrap()
            .unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut headers = HeaderMap::new();
        let ws = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, resp: Response| {
            headers = req.headers().clone();
            Ok(resp)
        })
        .await
        .unwrap();
        let mut peer = Peer {
            ws,
            headers,
            next_seq: 0,
            pings: Vec::new(),
            open: None,
        };
        let open = match peer.next_message().await {
            Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
            other => panic!("expected the open frame, got {other:?}"),
        };
        peer.open = Some(open);
        peer
    }
}

pub struct Peer {
    pub ws: WebSocketStream<TcpStream>,
    pub headers: HeaderMap,
    pub next_seq: i64,
    pub pings: Vec<Vec<u8>>,
    pub open: Option<OpenDataChannelInput>,
}

impl Peer {
    /// Next data message; pings are recorded (tungstenite answers them).
    pub async fn next_message(&mut self) -> Message {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("client went quiet")
                .expect("client closed")
                .expect("socket error");
            match msg {
                Message::Ping(p) => self.pings.push(p.to_vec()),
                Message::Pong(_) => {}
                other => return other,
            }
        }
    }

    /// Next binary frame, decoded.
    pub async fn next_frame(&mut self) -> ClientMessage {
        loop {
            match self.next_message().await {
                Message::Binary(b) => return ClientMessage::decode(&b).unwrap(),
                Message::Close(_) => panic!("client closed the socket"),
                _ => {}
            }
        }
    }

    /// Next `input_stream_data` frame; acks are skipped.
    pub async fn next_input(&mut self) -> ClientMessage {
        loop {
            let f = self.next_frame().await;
            if f.message_type == MessageType::InputStreamData {
                return f;
            }
        }
    }

    /// Next acknowledge frame's content; inputs are skipped.
    pub async fn next_ack(&mut self) -> AcknowledgeContent {
        loop {
            let f = self.next_frame().await;
            if f.message_type == MessageType::Acknowledge {
                assert_eq!((f.sequence_number, f.flags), (0, 3));
                assert_eq!(f.payload_type, PayloadType::Undefined);
                return serde_json::from_slice(&f.payload).unwrap();
            }
        }
    }

    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::Binary(bytes.into())).await.unwrap();
    }

    pub fn frame(seq: i64, pt: PayloadType, payload: &[u8]) -> Vec<u8> {
        ClientMessage::new(MessageType::OutputStreamData, seq, 0, pt, payload.to_vec()).encode()
    }

    /// Sends the next sequenced output frame; returns its sequence number.
    pub async fn send_out(&mut self, pt: PayloadType, payload: &[u8]) -> i64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.send_raw(Self::frame(seq, pt, payload)).await;
        seq
    }

    pub async fn ack(&mut self, msg: &ClientMessage) {
        self.send_raw(AcknowledgeContent::ack_frame_for(msg).encode())
            .await;
    }

    /// Runs the agent's side of the handshake; returns the Size frame the client sent.
    pub async fn handshake(&mut self) -> ClientMessage {
        self.send_out(PayloadType::HandshakeRequest, HANDSHAKE_REQUEST)
            .await;
        assert_eq!(self.next_ack().await.sequence_number, 0);
        let resp = self.next_input().await;
        assert_eq!(resp.payload_type, PayloadType::HandshakeResponse);
        self.ack(&resp).await;
        self.send_out(PayloadType::HandshakeComplete, HANDSHAKE_COMPLETE)
            .await;
        let size = self.next_input().await;
        assert_eq!(size.payload_type, PayloadType::Size);
        self.ack(&size).await;
        size
    }

    pub async fn close_channel(&mut self, output: &str) {
        let payload = serde_json::json!({"MessageType": "channel_closed", "SchemaVersion": 1, "Output": output});
        let msg = ClientMessage::new(
            MessageType::ChannelClosed,
            0,
            0,
            PayloadType::Undefined,
            payload.to_string().into_bytes(),
        );
        self.send_raw(msg.encode()).await;
    }
}
