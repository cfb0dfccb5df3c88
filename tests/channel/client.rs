//! The data channel client against a scripted server peer on loopback: the wire behaviour,
//! including malformed, out-of-order and duplicate frames and a dropped socket with resume.

use std::sync::{Arc, Mutex};

use crate::common::peer::{Listener, Peer, WAIT};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use futures_util::SinkExt;
use futures_util::future::BoxFuture;
use pink_sombrero::channel::client::{
    ChannelError, ClientOptions, Resume, ResumeError, SessionEvent, SessionHandle, SessionTarget,
    Signing, connect, resume_fn,
};
use pink_sombrero::channel::codec::PayloadType;
use pink_sombrero::channel::grant::{GrantOutcome, enforce_grant};
use pink_sombrero::channel::payload::{SizeData, exit_code_payload};
use tokio::sync::mpsc;

fn target(url: &str, token: &str) -> SessionTarget {
    SessionTarget {
        stream_url: url.to_string(),
        token: token.to_string(),
        session_id: "s-1".to_string(),
    }
}

fn options() -> ClientOptions {
    ClientOptions {
        initial_size: SizeData { cols: 80, rows: 24 },
        ..ClientOptions::default()
    }
}

async fn next_event(events: &mut mpsc::Receiver<SessionEvent>) -> SessionEvent {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("no event")
        .expect("event channel closed")
}

/// Collects output events until `want` bytes arrived.
async fn read_output(events: &mut mpsc::Receiver<SessionEvent>, want: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < want {
        match next_event(events).await {
            SessionEvent::Output(b) => out.extend(b),
            SessionEvent::Notice(_) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    out
}

type Connected = (Listener, Peer, SessionHandle, mpsc::Receiver<SessionEvent>);

/// Connects a client to a fresh peer (open frame read, no handshake yet).
async fn connected(token: &str, opts: ClientOptions) -> Connected {
    let listener = Listener::bind().await;
    let (client, peer) = tokio::join!(
        connect(target(&listener.url, token), opts),
        listener.accept()
    );
    let (handle, events) = client.unwrap();
    (listener, peer, handle, events)
}

/// Connects a client to a fresh peer and completes the handshake.
async fn started(opts: ClientOptions) -> Connected {
    let (listener, mut peer, handle, events) = connected("tok-1", opts).await;
    peer.handshake().await;
    (listener, peer, handle, events)
}

#[tokio::test]
async fn open_frame_handshake_io_exit_code_and_close() {
    let (_listener, mut peer, handle, mut events) = connected("tok-1", options()).await;
    let open = peer.open.clone().unwrap();
    assert_eq!(open.message_schema_version, "1.0");
    assert_eq!(open.token_value, "tok-1");
    assert_eq!(open.client_version.as_deref(), Some("1.2.0.0"));
    assert!(uuid::Uuid::parse_str(&open.request_id).is_ok());
    assert!(peer.headers.get("authorization").is_none());

    let size = peer.handshake().await;
    assert_eq!(peer.pings, vec![b"keepalive".to_vec()]);
    assert_eq!(size.payload, br#"{"cols":80,"rows":24}"#);
    assert_eq!(size.sequence_number, 1);

    handle.send_input(b"hostname\n".to_vec()).await.unwrap();
    let input = peer.next_input().await;
    assert_eq!(input.sequence_number, 2);
    assert_eq!(input.payload_type, PayloadType::Output);
    assert_eq!(input.payload, b"hostname\n");
    peer.ack(&input).await;

    let seq = peer.send_out(PayloadType::Output, b"node-1\r\n").await;
    assert_eq!(peer.next_ack().await.sequence_number, seq);
    assert_eq!(read_output(&mut events, 8).await, b"node-1\r\n");
    peer.send_out(PayloadType::StdErr, b"warn").await;
    assert_eq!(
        next_event(&mut events).await,
        SessionEvent::Stderr(b"warn".to_vec())
    );
    peer.send_out(PayloadType::ExitCode, &exit_code_payload(3))
        .await;
    assert_eq!(next_event(&mut events).await, SessionEvent::ExitCode(3));
    peer.close_channel("Exited with code 3").await;
    assert_eq!(
        next_event(&mut events).await,
        SessionEvent::Closed {
            reason: "Exited with code 3".into()
        }
    );
    assert!(events.recv().await.is_none());
    assert!(matches!(
        handle.send_input(b"x".to_vec()).await,
        Err(ChannelError::Ended)
    ));
}

#[tokio::test]
async fn an_exit_code_sent_just_after_channel_closed_is_kept() {
    let (_listener, mut peer, _handle, mut events) = started(options()).await;
    peer.send_out(PayloadType::Output, b"tail of output\r\n")
        .await;
    peer.close_channel("").await;
    // A hostile (or slow) endpoint: the exit code comes 1 ms after channel_closed, and then
    // the socket goes away without a close frame.
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    peer.send_out(PayloadType::ExitCode, &exit_code_payload(3))
        .await;
    drop(peer);
    assert_eq!(read_output(&mut events, 16).await, b"tail of output\r\n");
    assert_eq!(next_event(&mut events).await, SessionEvent::ExitCode(3));
    assert!(matches!(
        next_event(&mut events).await,
        SessionEvent::Closed { .. }
    ));
}

#[tokio::test]
async fn a_shell_end_without_exit_code_closes_after_a_short_linger() {
    let (_listener, mut peer, _handle, mut events) = started(options()).await;
    peer.send_out(PayloadType::Output, b"bye\r\n").await;
    peer.close_channel("done").await;
    let t0 = std::time::Instant::now();
    assert_eq!(read_output(&mut events, 5).await, b"bye\r\n");
    assert_eq!(
        next_event(&mut events).await,
        SessionEvent::Closed {
            reason: "done".into()
        }
    );
    // The linger (250 ms) passed with the socket still open; bounded, not a timing claim.
    assert!(t0.elapsed() < std::time::Duration::from_secs(2));
    drop(peer);
}

#[tokio::test]
async fn a_handshake_that_never_completes_fails_the_session() {
    let opts = ClientOptions {
        handshake_timeout: std::time::Duration::from_millis(300),
        ..options()
    };
    let (_listener, mut peer, _handle, mut events) = connected("t", opts).await;
    peer.send_out(
        PayloadType::HandshakeRequest,
        crate::common::peer::HANDSHAKE_REQUEST,
    )
    .await;
    match next_event(&mut events).await {
        SessionEvent::Failed { error } => assert!(error.contains("handshake"), "{error}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn output_right_after_handshake_complete_is_not_lost() {
    let (_listener, mut peer, _handle, mut events) = connected("t", options()).await;
    peer.send_out(
        PayloadType::HandshakeRequest,
        crate::common::peer::HANDSHAKE_REQUEST,
    )
    .await;
    peer.send_out(
        PayloadType::HandshakeComplete,
        crate::common::peer::HANDSHAKE_COMPLETE,
    )
    .await;
    peer.send_out(PayloadType::Output, b"$ ").await;
    assert_eq!(read_output(&mut events, 2).await, b"$ ");
}

#[tokio::test]
async fn malformed_frames_are_dropped_and_counted_without_ending_the_session() {
    let (_l, mut peer, handle, mut events) = started(options()).await;
    let good = Peer::frame(2, PayloadType::Output, b"ok");
    let mut bad_digest = good.clone();
    bad_digest[120] ^= 1;
    let mut bad_header = good.clone();
    bad_header[..4].copy_from_slice(&9999u32.to_be_bytes());
    let mut garbage_type = good.clone();
    garbage_type[4..36].copy_from_slice(&[0xfe; 32]);
    let mut unknown_type = good.clone();
    unknown_type[4..9].copy_from_slice(b"bogus");
    for bad in [
        vec![1, 2, 3],
        good[..119].to_vec(),
        bad_digest,
        bad_header,
        garbage_type,
        unknown_type,
    ] {
        peer.send_raw(bad).await;
    }
    peer.ws
        .send(tokio_tungstenite::tungstenite::Message::text("stray text"))
        .await
        .unwrap();
    peer.send_raw(good).await;
    assert_eq!(peer.next_ack().await.sequence_number, 2);
    assert_eq!(read_output(&mut events, 2).await, b"ok");
    assert_eq!(handle.stats().counters.malformed, 6);
}

#[tokio::test]
async fn out_of_order_and_duplicates_are_acked_and_delivered_once_in_order() {
    let (_l, mut peer, handle, mut events) = started(options()).await;
    peer.send_raw(Peer::frame(4, PayloadType::Output, b"c"))
        .await;
    assert_eq!(peer.next_ack().await.sequence_number, 4);
    peer.send_raw(Peer::frame(3, PayloadType::Output, b"b"))
        .await;
    assert_eq!(peer.next_ack().await.sequence_number, 3);
    // Buffered duplicate is re-acked.
    peer.send_raw(Peer::frame(4, PayloadType::Output, b"c"))
        .await;
    assert_eq!(peer.next_ack().await.sequence_number, 4);
    peer.send_raw(Peer::frame(2, PayloadType::Output, b"a"))
        .await;
    assert_eq!(peer.next_ack().await.sequence_number, 2);
    assert_eq!(read_output(&mut events, 3).await, b"abc");
    // Below expected: re-acked, not delivered again.
    peer.send_raw(Peer::frame(3, PayloadType::Output, b"b"))
        .await;
    assert_eq!(peer.next_ack().await.sequence_number, 3);
    peer.send_raw(Peer::frame(5, PayloadType::Output, b"d"))
        .await;
    assert_eq!(read_output(&mut events, 1).await, b"d");
    let c = handle.stats().counters;
    assert_eq!((c.duplicates, c.out_of_order), (2, 2));
}

#[tokio::test]
async fn unacked_input_is_resent_with_the_same_bytes_until_acked() {
    let (_l, mut peer, handle, _events) = started(options()).await;
    handle.send_input(b"ls\r".to_vec()).await.unwrap();
    let first = peer.next_input().await;
    let again = peer.next_input().await;
    assert_eq!(again, first);
    peer.ack(&again).await;
    handle.send_input(b"pwd\r".to_vec()).await.unwrap();
    let next = peer.next_input().await;
    assert_eq!(next.sequence_number, first.sequence_number + 1);
    assert!(handle.stats().counters.resends >= 1);
}

#[tokio::test]
async fn large_input_is_sent_in_chunks_of_at_most_1024_bytes() {
    let (_l, mut peer, handle, _events) = started(options()).await;
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    handle.send_input(data.clone()).await.unwrap();
    let mut got = Vec::new();
    while got.len() < data.len() {
        let f = peer.next_input().await;
        assert!(f.payload.len() <= 1024);
        peer.ack(&f).await;
        got.extend(f.payload);
    }
    assert_eq!(got, data);
}

#[tokio::test]
async fn resize_sends_size_and_terminate_sends_the_flag_then_closes() {
    let (_l, mut peer, handle, mut events) = started(options()).await;
    handle.resize(132, 43).unwrap();
    let size = peer.next_input().await;
    assert_eq!(size.payload_type, PayloadType::Size);
    assert_eq!(size.payload, br#"{"cols":132,"rows":43}"#);
    peer.ack(&size).await;
    handle.terminate().unwrap();
    let flag = peer.next_input().await;
    assert_eq!(flag.payload_type, PayloadType::Flag);
    assert_eq!(flag.payload, 2u32.to_be_bytes());
    peer.ack(&flag).await;
    assert_eq!(
        next_event(&mut events).await,
        SessionEvent::Closed {
            reason: "terminated by the client".into()
        }
    );
}

#[tokio::test]
async fn the_grant_deadline_warns_then_terminates() {
    let (_l, mut peer, handle, mut events) = started(options()).await;
    let end = tokio::time::Instant::now() + std::time::Duration::from_millis(200);
    let warned = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&warned);
    let enforcer = tokio::spawn(enforce_grant(handle.clone(), end, move |left| {
        *seen.lock().unwrap() = Some(left);
    }));
    let flag = peer.next_input().await;
    assert_eq!(flag.payload_type, PayloadType::Flag);
    assert_eq!(flag.payload, 2u32.to_be_bytes());
    assert!(tokio::time::Instant::now() >= end);
    peer.ack(&flag).await;
    assert_eq!(enforcer.await.unwrap(), GrantOutcome::Terminated);
    let left = warned.lock().unwrap().expect("warned before the end");
    assert!(left <= std::time::Duration::from_millis(200));
    assert!(matches!(
        next_event(&mut events).await,
        SessionEvent::Closed { .. }
    ));
    // Once the session is gone there is nothing left to terminate.
    assert!(events.recv().await.is_none());
    let late = enforce_grant(handle, tokio::time::Instant::now(), |_| {}).await;
    assert_eq!(late, GrantOutcome::SessionGone);
}

#[tokio::test]
async fn server_pings_are_answered() {
    let (_l, mut peer, _handle, _events) = started(options()).await;
    peer.ws
        .send(tokio_tungstenite::tungstenite::Message::Ping(
            b"hi".to_vec().into(),
        ))
        .await
        .unwrap();
    use futures_util::StreamExt;
    let pong = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(Ok(tokio_tungstenite::tungstenite::Message::Pong(p))) = peer.ws.next().await
            {
                return p;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(pong.as_ref(), b"hi");
}

/// Resume stub standing in for the ResumeSession API call: hands out scripted tokens.
struct ScriptedResume {
    tokens: Mutex<Vec<Option<String>>>,
    calls: Mutex<Vec<String>>,
}

impl Resume for ScriptedResume {
    fn resume<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ResumeError>> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(session_id.to_string());
            let mut tokens = self.tokens.lock().unwrap();
            if tokens.is_empty() {
                return Err("no more tokens".into());
            }
            Ok(tokens.remove(0))
        })
    }
}

fn resume_with(tokens: Vec<Option<String>>) -> Arc<ScriptedResume> {
    Arc::new(ScriptedResume {
        tokens: Mutex::new(tokens),
        calls: Mutex::new(Vec::new()),
    })
}

#[tokio::test]
async fn dropped_socket_resumes_on_the_original_url_without_a_new_handshake() {
    let resume = resume_with(vec![Some("tok-2".into())]);
    let opts = ClientOptions {
        resume: Some(resume.clone()),
        ..options()
    };
    let (listener, mut peer, handle, mut events) = started(opts).await;
    let first_open = peer.open.clone().unwrap();
    handle.send_input(b"echo hi\r".to_vec()).await.unwrap();
    let lost = peer.next_input().await;
    // The server loses the socket before acking.
    drop(peer);
    let mut peer = listener.accept().await;
    let open = peer.open.clone().unwrap();
    assert_eq!(open.token_value, "tok-2");
    assert_eq!(open.client_id, first_open.client_id);
    assert_ne!(open.request_id, first_open.request_id);
    assert_eq!(*resume.calls.lock().unwrap(), vec!["s-1".to_string()]);
    // Unacked input is resent as is; no handshake, sequence numbers carry on.
    let resent = peer.next_input().await;
    assert_eq!(resent, lost);
    peer.ack(&resent).await;
    // Then the same size again, so the remote side redraws after the reconnect notice.
    let redraw = peer.next_input().await;
    assert_eq!(redraw.payload_type, PayloadType::Size);
    assert_eq!(redraw.payload, br#"{"cols":80,"rows":24}"#);
    assert_eq!(redraw.sequence_number, lost.sequence_number + 1);
    peer.ack(&redraw).await;
    peer.next_seq = 2;
    peer.send_out(PayloadType::Output, b"hi\r\n").await;
    assert_eq!(read_output(&mut events, 4).await, b"hi\r\n");
    handle.send_input(b"x".to_vec()).await.unwrap();
    assert_eq!(
        peer.next_input().await.sequence_number,
        lost.sequence_number + 2
    );
    assert_eq!(handle.stats().reconnects, 1);
}

/// Starts a session with `resume`, drops the server side, and returns the event that ends it.
async fn end_after_socket_loss(resume: Arc<ScriptedResume>) -> SessionEvent {
    let opts = ClientOptions {
        resume: Some(resume),
        ..options()
    };
    let (_listener, peer, _handle, mut events) = started(opts).await;
    drop(peer);
    assert_eq!(
        next_event(&mut events).await,
        SessionEvent::Notice("connection lost; reconnecting".into())
    );
    next_event(&mut events).await
}

#[tokio::test]
async fn a_silent_server_with_input_pending_triggers_a_resume() {
    let calls = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&calls);
    let opts = ClientOptions {
        resume: Some(resume_fn(move |_id| {
            *counted.lock().unwrap() += 1;
            async { Ok(Some("tok-2".to_string())) }
        })),
        stall_timeout: std::time::Duration::from_millis(500),
        ..options()
    };
    let (listener, mut peer, handle, _events) = started(opts).await;
    handle.send_input(b"k".to_vec()).await.unwrap();
    let pending = peer.next_input().await;
    // The old socket stays open but the server says nothing more (black hole).
    let mut fresh = listener.accept().await;
    assert_eq!(fresh.open.as_ref().unwrap().token_value, "tok-2");
    assert_eq!(fresh.next_input().await, pending);
    assert_eq!(*calls.lock().unwrap(), 1);
    drop(peer);
}

#[tokio::test]
async fn a_session_that_cannot_be_resumed_closes_with_a_reason() {
    match end_after_socket_loss(resume_with(vec![None])).await {
        SessionEvent::Closed { reason } => assert!(reason.contains("no longer be resumed")),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn failing_resume_gives_up_after_the_retry_limit() {
    let resume = resume_with(vec![]);
    match end_after_socket_loss(resume.clone()).await {
        SessionEvent::Failed { error } => assert!(error.contains("5 reconnect attempts")),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(resume.calls.lock().unwrap().len(), 5);
}

#[tokio::test]
async fn reconnects_that_die_before_any_frame_use_up_the_retry_budget() {
    let resume = resume_with(vec![Some("t".into()); 10]);
    let opts = ClientOptions {
        resume: Some(resume.clone()),
        ..options()
    };
    let (listener, peer, _handle, mut events) = started(opts).await;
    drop(peer);
    let refuse = tokio::spawn(async move {
        // Accept each reconnect, read its open frame, hang up without sending a frame.
        loop {
            drop(listener.accept().await);
        }
    });
    assert!(matches!(
        next_event(&mut events).await,
        SessionEvent::Notice(_)
    ));
    let end = tokio::time::timeout(std::time::Duration::from_secs(30), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(end, SessionEvent::Failed { .. }), "{end:?}");
    assert_eq!(resume.calls.lock().unwrap().len(), 5);
    refuse.abort();
}

#[tokio::test]
async fn without_resume_a_lost_socket_fails_the_session() {
    let (_listener, peer, _handle, mut events) = started(options()).await;
    drop(peer);
    assert!(matches!(
        next_event(&mut events).await,
        SessionEvent::Failed { .. }
    ));
}

fn signing_options() -> ClientOptions {
    let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("tok".into()), None, "test");
    ClientOptions {
        signing: Some(Signing {
            credentials: SharedCredentialsProvider::new(creds),
            region: "eu-west-1".into(),
        }),
        ..options()
    }
}

#[tokio::test]
async fn the_upgrade_is_sigv4_signed_when_credentials_are_given() {
    let (_listener, peer, _handle, _events) = connected("t", signing_options()).await;
    let auth = peer.headers.get("authorization").unwrap().to_str().unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
        "{auth}"
    );
    assert!(
        auth.contains("/eu-west-1/ssmmessages/aws4_request"),
        "{auth}"
    );
    assert!(
        auth.contains("SignedHeaders=host;x-amz-date;x-amz-security-token"),
        "{auth}"
    );
    assert!(peer.headers.get("x-amz-date").is_some());
    assert_eq!(peer.headers.get("x-amz-security-token").unwrap(), "tok");
}

#[tokio::test]
async fn a_presigned_stream_url_is_not_signed_again() {
    let listener = Listener::bind().await;
    let url = format!("{}&X-Amz-Signature=abc", listener.url);
    let (client, peer) = tokio::join!(
        connect(target(&url, "t"), signing_options()),
        listener.accept()
    );
    client.unwrap();
    assert!(peer.headers.get("authorization").is_none());
}

#[tokio::test]
async fn bad_and_unreachable_urls_are_clear_errors() {
    let err = connect(target("https://example.com/x", "t"), options())
        .await
        .unwrap_err();
    assert!(matches!(err, ChannelError::BadUrl { .. }), "{err}");
    let listener = Listener::bind().await;
    let url = listener.url.clone();
    drop(listener);
    let err = connect(target(&url, "t"), options()).await.unwrap_err();
    assert!(matches!(err, ChannelError::Dial { .. }), "{err}");
    assert!(!err.to_string().contains("role="), "{err}");
}
