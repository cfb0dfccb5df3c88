//! The terminal bridge over in-memory local streams against the scripted server peer.

use crate::common::peer::{Listener, Peer};
use pink_sombrero::channel::client::{ClientOptions, SessionTarget, connect};
use pink_sombrero::channel::codec::PayloadType;
use pink_sombrero::channel::payload::exit_code_payload;
use pink_sombrero::channel::terminal::{
    BridgeError, EndReason, InputMode, LocalIo, SessionEnd, bridge,
};
use tokio::io::{AsyncReadExt, DuplexStream, duplex};
use tokio::sync::mpsc;

struct Local {
    keyboard: mpsc::Sender<Vec<u8>>,
    screen: DuplexStream,
    notices: DuplexStream,
}

/// Starts a session against a fresh peer and a bridge over in-memory streams; returns the
/// peer after the handshake, the far ends of the local streams and the bridge task.
async fn bridged(
    mode: InputMode,
) -> (
    Listener,
    Peer,
    Local,
    tokio::task::JoinHandle<(Result<SessionEnd, BridgeError>, Vec<u8>, Vec<u8>)>,
) {
    let listener = Listener::bind().await;
    let target = SessionTarget {
        stream_url: listener.url.clone(),
        token: "t".into(),
        session_id: "s-1".into(),
    };
    let (client, mut peer) =
        tokio::join!(connect(target, ClientOptions::default()), listener.accept());
    let (handle, events) = client.unwrap();
    peer.handshake().await;
    let (keyboard, input) = mpsc::channel(16);
    let (output, screen) = duplex(1 << 20);
    let (notice_out, notices) = duplex(4096);
    let io = LocalIo {
        input,
        output,
        notices: notice_out,
        mode,
    };
    let task = tokio::spawn(async move {
        let mut seen_out = Vec::new();
        let mut seen_in = Vec::new();
        let end = bridge(
            handle,
            events,
            io,
            |b| seen_out.extend_from_slice(b),
            |b| seen_in.extend_from_slice(b),
        )
        .await;
        (end, seen_out, seen_in)
    });
    let local = Local {
        keyboard,
        screen,
        notices,
    };
    (listener, peer, local, task)
}

#[tokio::test]
async fn piped_script_runs_and_the_exit_code_comes_back() {
    let (_l, mut peer, mut local, task) = bridged(InputMode::Piped).await;
    local
        .keyboard
        .send(
            b"hostname
"
            .to_vec(),
        )
        .await
        .unwrap();
    local
        .keyboard
        .send(
            b"exit 3
"
            .to_vec(),
        )
        .await
        .unwrap();
    drop(local.keyboard);
    // The script waits for the shell's first output (its prompt): typed ahead, a terminal
    // would echo it once and the shell's line editor again.
    let early =
        tokio::time::timeout(std::time::Duration::from_millis(300), peer.next_frame()).await;
    assert!(
        early.is_err(),
        "input sent before the shell spoke: {early:?}"
    );
    peer.send_out(PayloadType::Output, b"$ ").await;
    let mut sent = Vec::new();
    while !sent.ends_with(&[0x04]) {
        let f = peer.next_input().await;
        peer.ack(&f).await;
        sent.extend(f.payload);
    }
    assert_eq!(sent, b"hostname\nexit 3\n\x04");
    peer.send_out(PayloadType::Output, b"node-1\r\n").await;
    peer.send_out(PayloadType::StdErr, b"bye\r\n").await;
    peer.send_out(PayloadType::ExitCode, &exit_code_payload(3))
        .await;
    peer.close_channel("done").await;
    let (end, seen_out, seen_in) = task.await.unwrap();
    assert_eq!(
        end.unwrap(),
        SessionEnd {
            exit_code: Some(3),
            reason: EndReason::Closed("done".into())
        }
    );
    assert_eq!(seen_out, b"$ node-1\r\nbye\r\n");
    assert_eq!(seen_in, b"hostname\nexit 3\n\x04");
    let mut screen = vec![0; seen_out.len()];
    local.screen.read_exact(&mut screen).await.unwrap();
    assert_eq!(screen, seen_out);
}

#[tokio::test]
async fn notices_go_to_the_notice_stream_and_failures_are_reported() {
    let (_l, mut peer, mut local, task) = bridged(InputMode::Interactive).await;
    peer.send_out(PayloadType::Flag, &3u32.to_be_bytes()).await;
    let mut notice = vec![0; 64];
    let n = local.notices.read(&mut notice).await.unwrap();
    let notice = String::from_utf8_lossy(&notice[..n]).to_string();
    assert!(notice.starts_with("\r\n[sombrero] "), "{notice:?}");
    // An encryption challenge (KMS) cannot be answered: the session fails with a reason.
    peer.send_out(PayloadType::EncChallengeRequest, b"{}").await;
    let (end, _, _) = task.await.unwrap();
    match end.unwrap().reason {
        EndReason::Failed(e) => assert!(e.contains("KMS"), "{e}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_closed_local_output_terminates_the_session() {
    let (_l, mut peer, local, task) = bridged(InputMode::Interactive).await;
    drop(local.screen);
    peer.send_out(PayloadType::Output, b"anyone there?").await;
    let flag = loop {
        let f = peer.next_input().await;
        if f.payload_type == PayloadType::Flag {
            break f;
        }
    };
    assert_eq!(flag.payload, 2u32.to_be_bytes());
    let (end, _, _) = task.await.unwrap();
    assert!(matches!(end, Err(BridgeError::Output(_))));
}
