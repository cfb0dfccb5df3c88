//! The lab's data channel server, observed frame by frame through a raw peer built from the
//! codec, with sessions started through the real aws-sdk-ssm client.

use crate::common::lab::*;
use pink_sombrero::channel::codec::{FLAG_SYN, MessageType, PayloadType};
use pink_sombrero::lab::{AGENT_VERSION, SessionStatus};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_command_output_then_terminating_and_channel_closed_without_exit_code() {
    let lab = lab(1).await;
    let ssm = client(&lab).await;
    let node = first_node(&ssm).await;
    let (sid, token, url) = start_session(&ssm, &node).await;
    assert!(url.ends_with(&format!("/v1/data-channel/{sid}?role=publish_subscribe")));
    let mut peer = Peer::connect(&url, &token).await;
    let (first, req) = peer.handshake().await;
    assert_eq!(first.sequence_number, 0);
    assert_eq!(first.flags & FLAG_SYN, FLAG_SYN, "seq 0 carries SYN");
    assert_eq!(req.agent_version, AGENT_VERSION);
    assert_eq!(req.agent_version.split('.').count(), 4);
    assert_eq!(req.requested_client_actions[0].action_type, "SessionType");
    assert_eq!(peer.acks, vec![0], "the handshake response is acked");
    assert_eq!(lab.session_status(&sid), Some(SessionStatus::Connected));

    peer.resize(100, 30).await;
    peer.type_text("echo h''i\r").await;
    peer.until_output("hi\r\n").await;
    peer.type_text("hostname; pwd\r").await;
    let home = lab.nodes()[0].home.display().to_string();
    peer.until_output(&home).await;
    assert!(
        peer.text().contains(&format!("{node}\r\n")),
        "hostname names the node: {}",
        peer.text()
    );

    peer.type_text("exit 3\r").await;
    peer.until_end().await;
    // A shell (Standard_Stream) session reports no status: agent/session/shell/shell.go sends
    // an exit code only from processCommandsWithOutputStreamSeparate.
    assert_eq!(peer.exit_code, None);
    assert!(peer.closed.is_some(), "channel_closed arrives");
    assert!(
        !peer
            .arrivals
            .iter()
            .any(|m| m.payload_type == PayloadType::ExitCode),
        "no ExitCode frame in a shell session"
    );
    assert!(!peer.text().contains("EXIT_CODE"));
    // Every input frame was acked exactly once.
    let mut acked = peer.acks.clone();
    acked.sort();
    assert_eq!(acked, (0..peer.out_seq).collect::<Vec<_>>());
    assert_eq!(lab.session_status(&sid), Some(SessionStatus::Terminated));
    let hist = ssm
        .describe_sessions()
        .state(aws_sdk_ssm::types::SessionState::History)
        .send()
        .await
        .unwrap();
    assert_eq!(hist.sessions()[0].session_id(), Some(sid.as_str()));
    assert!(hist.sessions()[0].end_date().is_some());
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_input_is_reacked_and_applied_once_and_out_of_order_input_is_ordered() {
    let Opened { lab, mut peer, .. } = opened(1).await;

    let dup = peer.input(PayloadType::Output, b"echo dup$((40+2))\r".to_vec());
    peer.send_frame(&dup).await;
    peer.send_frame(&dup).await;
    peer.until("two acks of the duplicate", |p| {
        p.acks.iter().filter(|s| **s == dup.sequence_number).count() == 2
    })
    .await;
    peer.until_output("dup42\r\n").await;

    // Out of order: the second half arrives first and is buffered.
    let a = peer.input(PayloadType::Output, b"echo or".to_vec());
    let b = peer.input(PayloadType::Output, b"der$((1+1))\r".to_vec());
    peer.send_frame(&b).await;
    peer.send_frame(&a).await;
    peer.until_output("order2\r\n").await;
    peer.type_text("echo end\r").await;
    peer.until_output("end\r\n").await;
    assert_eq!(
        peer.text().matches("dup42\r\n").count(),
        1,
        "duplicate applied once"
    );
    assert!(peer.acks.contains(&a.sequence_number) && peer.acks.contains(&b.sequence_number));
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_output_is_resent_with_same_seq_and_id() {
    let Opened { lab, mut peer, .. } = opened(1).await;
    peer.auto_ack = false;
    peer.type_text("echo resend\r").await;
    let first = peer.arrivals.len();
    peer.until("a resent frame", |p| {
        let fresh = &p.arrivals[first..];
        fresh.iter().enumerate().any(|(i, m)| {
            fresh[..i]
                .iter()
                .any(|o| o.sequence_number == m.sequence_number)
        })
    })
    .await;
    let fresh = &peer.arrivals[first..];
    let again = fresh
        .iter()
        .enumerate()
        .find(|(i, m)| {
            fresh[..*i]
                .iter()
                .any(|o| o.sequence_number == m.sequence_number)
        })
        .unwrap()
        .1
        .clone();
    let orig = fresh
        .iter()
        .find(|m| m.sequence_number == again.sequence_number)
        .unwrap();
    assert_eq!(
        orig.message_id, again.message_id,
        "a resend is the identical frame"
    );
    assert_eq!(orig.payload, again.payload);
    // Once acked, everything is delivered and the stream continues.
    peer.auto_ack = true;
    let pending: Vec<_> = peer.arrivals[first..].to_vec();
    for m in &pending {
        peer.ack(m).await;
    }
    peer.until_output("resend\r\n").await;
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_reaches_the_terminal() {
    let Opened { lab, mut peer, .. } = opened(1).await;
    peer.resize(123, 45).await;
    peer.type_text("stty size\r").await;
    peer.until_output("45 123\r\n").await;
    peer.resize(77, 20).await;
    peer.type_text("stty size\r").await;
    peer.until_output("20 77\r\n").await;
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_reorder_duplicate_and_lose_output_yet_the_stream_is_whole() {
    let Opened { lab, mut peer, .. } = opened(1).await;
    peer.type_text("stty -echo\r").await;
    peer.type_text("echo ready\r").await;
    peer.until_output("ready\r\n").await;

    let start = peer.arrivals.len();
    lab.hooks().reorder_output(3);
    peer.type_text("for i in 1 2 3 4; do echo line$i; sleep 0.1; done\r")
        .await;
    peer.until_output("line4\r\n").await;
    let seqs: Vec<i64> = peer.arrivals[start..]
        .iter()
        .map(|m| m.sequence_number)
        .collect();
    assert!(
        seqs.windows(2).any(|w| w[1] < w[0]),
        "arrived out of order: {seqs:?}"
    );
    let text = peer.text();
    let pos: Vec<usize> = (1..=4)
        .map(|i| text.find(&format!("line{i}")).unwrap())
        .collect();
    assert!(
        pos.windows(2).all(|w| w[0] < w[1]),
        "delivered in order: {text:?}"
    );

    let start = peer.arrivals.len();
    lab.hooks().duplicate_output(2);
    peer.type_text("echo twice\r").await;
    peer.until_output("twice\r\n").await;
    // Each duplicate is the identical frame, back to back.
    peer.until("a duplicate", |p| {
        p.arrivals[start..].windows(2).any(|w| w[0] == w[1])
    })
    .await;
    let acks_before = peer.acks.len();
    assert_eq!(text.matches("twice").count(), 0);
    assert_eq!(
        peer.text().matches("twice\r\n").count(),
        1,
        "duplicates delivered once"
    );

    lab.hooks().lose_output(1);
    peer.type_text("echo lost-and-found\r").await;
    peer.until_output("lost-and-found\r\n").await;
    assert!(peer.acks.len() > acks_before);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_socket_then_resume_continues_the_session() {
    let Opened {
        lab,
        ssm,
        sid,
        token,
        url,
        mut peer,
        ..
    } = opened(1).await;
    peer.type_text("export MARK=kept\r").await;
    peer.type_text("(sleep 0.5; echo while-away)\r").await;
    // This raw peer does not resend input, so let the lab take it before the drop.
    peer.until("input acked", |p| p.acks.contains(&(p.out_seq - 1)))
        .await;
    assert!(lab.drop_socket(&sid));
    peer.until_end().await;
    assert!(
        peer.closed.is_none(),
        "a dropped socket is not channel_closed"
    );

    // The old token no longer opens the channel once resumed.
    let resumed = ssm.resume_session().session_id(&sid).send().await.unwrap();
    let new_token = resumed.token_value().unwrap().to_string();
    assert_ne!(new_token, token);
    let mut stale = Peer::connect(&url, &token).await;
    match stale.next_raw().await {
        Some(Message::Close(Some(f))) => assert_eq!(u16::from(f.code), 1008),
        other => panic!("stale token accepted: {other:?}"),
    }

    let mut again = Peer::connect(&url, &new_token).await;
    again.out_seq = peer.out_seq;
    again.expected = peer.expected;
    again.type_text("echo $MARK\r").await;
    again.until_output("while-away").await;
    again.until_output("kept\r\n").await;
    assert!(
        again
            .arrivals
            .iter()
            .all(|m| m.payload_type != PayloadType::HandshakeRequest),
        "no second handshake"
    );
    // Acks and output are separate frames: the ack for the last input may follow its echo.
    let last = again.out_seq - 1;
    again
        .until(
            "the ack of the last input (input sequence carried on)",
            |p| p.acks.contains(&last),
        )
        .await;

    // The drop hook does the same after N output frames.
    lab.hooks().drop_socket_after_output(1);
    again.type_text("echo bye\r").await;
    again.until_end().await;
    assert_eq!(lab.session_status(&sid), Some(SessionStatus::Disconnected));
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_by_api_and_by_flag_close_the_channel() {
    let lab = lab(1).await;
    let ssm = client(&lab).await;
    let node = first_node(&ssm).await;

    let (sid, token, url) = start_session(&ssm, &node).await;
    let mut peer = Peer::connect(&url, &token).await;
    peer.handshake().await;
    ssm.terminate_session()
        .session_id(&sid)
        .send()
        .await
        .unwrap();
    peer.until_end().await;
    assert!(peer.closed.is_some());
    assert_eq!(lab.session_status(&sid), Some(SessionStatus::Terminated));

    let (sid, token, url) = start_session(&ssm, &node).await;
    let mut peer = Peer::connect(&url, &token).await;
    peer.handshake().await;
    peer.send_input(PayloadType::Flag, 2u32.to_be_bytes().to_vec())
        .await;
    peer.until_end().await;
    assert!(peer.closed.is_some());
    assert_eq!(lab.session_status(&sid), Some(SessionStatus::Terminated));
    // A terminated session's token opens nothing.
    let mut late = Peer::connect(&url, &token).await;
    assert!(matches!(
        late.next_raw().await,
        Some(Message::Close(_)) | None
    ));
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_or_no_open_frame_is_refused() {
    let lab = lab(1).await;
    let ssm = client(&lab).await;
    let node = first_node(&ssm).await;
    let (_sid, _token, url) = start_session(&ssm, &node).await;
    let mut peer = Peer::connect(&url, "not-the-token").await;
    match peer.next_raw().await {
        Some(Message::Close(Some(f))) => {
            assert_eq!(u16::from(f.code), 1008);
            assert!(f.reason.contains("token"));
        }
        other => panic!("wrong token accepted: {other:?}"),
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_document_kills_the_shell_and_registers_a_new_pristine_node() {
    let Opened {
        lab,
        ssm,
        node: old,
        sid,
        mut peer,
        ..
    } = opened(2).await;
    peer.type_text("touch tainted-file; echo touched\r").await;
    peer.until_output("touched\r\n").await;

    let exec = ssm
        .start_automation_execution()
        .document_name(pink_sombrero::lab::REPLACE_DOCUMENT)
        .parameters("InstanceId", vec![old.clone()])
        .send()
        .await
        .unwrap();
    let exec_id = exec.automation_execution_id().unwrap().to_string();
    peer.until_end().await;
    assert!(peer.closed.is_some(), "the old node's session is closed");
    let done = loop {
        let e = ssm
            .get_automation_execution()
            .automation_execution_id(&exec_id)
            .send()
            .await
            .unwrap();
        let e = e.automation_execution().unwrap().clone();
        if e.automation_execution_status()
            != Some(&aws_sdk_ssm::types::AutomationExecutionStatus::Inprogress)
        {
            break e;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        done.automation_execution_status(),
        Some(&aws_sdk_ssm::types::AutomationExecutionStatus::Success)
    );
    let new = done.outputs().unwrap()[pink_sombrero::lab::OUTPUT_NEW_INSTANCE][0].clone();
    assert!(new.starts_with("mi-") && new != old);
    let ids: Vec<String> = ssm
        .describe_instance_information()
        .send()
        .await
        .unwrap()
        .instance_information_list()
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect();
    assert!(!ids.contains(&old), "old node deregistered");
    assert!(ids.contains(&new), "new node registered");
    assert_eq!(ids.len(), 2);
    assert_eq!(lab.session_status(&sid), Some(SessionStatus::Terminated));
    let info = lab.nodes().into_iter().find(|n| n.id == new).unwrap();
    assert_eq!(
        std::fs::read_dir(&info.home).unwrap().count(),
        0,
        "pristine home"
    );

    let (_sid, token, url) = start_session(&ssm, &new).await;
    let mut peer = Peer::connect(&url, &token).await;
    peer.handshake().await;
    peer.type_text("ls -a; hostname\r").await;
    peer.until_output(&format!("{new}\r\n")).await;
    assert!(!peer.text().contains("tainted-file"));
    let err = ssm.start_session().target(&old).send().await.unwrap_err();
    assert_eq!(
        err.into_service_error().meta().code(),
        Some("TargetNotConnected")
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_complete_is_sequenced_output_seq_1_without_syn() {
    let Opened { lab, peer, .. } = opened(1).await;
    let complete = peer
        .arrivals
        .iter()
        .find(|m| m.payload_type == PayloadType::HandshakeComplete)
        .unwrap();
    assert_eq!(complete.sequence_number, 1);
    assert_eq!(complete.message_type, MessageType::OutputStreamData);
    assert_eq!(complete.flags, 0);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_are_dropped_unacked_and_the_session_goes_on() {
    let Opened { lab, mut peer, .. } = opened(1).await;
    let good = peer.input(PayloadType::Output, b"echo still-alive\r".to_vec());
    let mut bad_digest = good.encode();
    let last = bad_digest.len() - 1;
    bad_digest[last] ^= 0xff;
    for garbage in [vec![0u8; 10], vec![0xff; 200], bad_digest] {
        peer.send_bytes(garbage).await;
    }
    peer.send_frame(&good).await;
    peer.until_output("still-alive\r\n").await;
    let acked_good = peer
        .acks
        .iter()
        .filter(|s| **s == good.sequence_number)
        .count();
    assert_eq!(acked_good, 1, "only the well-formed frame is acked");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused() {
    let lab = pink_sombrero::lab::start(pink_sombrero::lab::LabConfig {
        nodes: 1,
        token_ttl: std::time::Duration::ZERO,
        ..Default::default()
    })
    .await
    .unwrap();
    let ssm = client(&lab).await;
    let node = first_node(&ssm).await;
    let (_sid, token, url) = start_session(&ssm, &node).await;
    let mut peer = Peer::connect(&url, &token).await;
    match peer.next_raw().await {
        Some(Message::Close(Some(f))) => assert!(f.reason.contains("expired"), "{f:?}"),
        other => panic!("expired token accepted: {other:?}"),
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_session_sends_stdout_stderr_and_the_exit_code_before_closing() {
    let lab = lab(1).await;
    let ssm = client(&lab).await;
    let node = first_node(&ssm).await;
    let s = ssm
        .start_session()
        .target(&node)
        .document_name("PinkSombrero-Command")
        .parameters(
            "command",
            vec!["sh -c 'echo out; echo err >&2; hostname; exit 3'".to_string()],
        )
        .send()
        .await
        .unwrap();
    let mut peer = Peer::connect(s.stream_url().unwrap(), s.token_value().unwrap()).await;
    let (_, req) = peer.handshake().await;
    let params = &req.requested_client_actions[0].action_parameters;
    assert_eq!(params["SessionType"], "NonInteractiveCommands");
    assert_eq!(params["Properties"]["separateOutputStream"], true);
    peer.until_end().await;
    let stream = |t: PayloadType| -> String {
        let mut frames: Vec<_> = peer
            .arrivals
            .iter()
            .filter(|m| m.payload_type == t)
            .collect();
        frames.sort_by_key(|m| m.sequence_number);
        frames.dedup_by_key(|m| m.sequence_number);
        frames
            .iter()
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .collect()
    };
    // No terminal: plain \n, and each stream on its own payload type.
    assert_eq!(stream(PayloadType::Output), format!("out\n{node}\n"));
    assert_eq!(stream(PayloadType::StdErr), "err\n");
    assert_eq!(peer.exit_code, Some(3));
    assert!(peer.exit_before_close, "ExitCode precedes channel_closed");

    // A command line the document's pattern refuses never starts.
    let refused = ssm
        .start_session()
        .target(&node)
        .document_name("PinkSombrero-Command")
        .parameters("command", vec!["two\nlines".to_string()])
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        refused.as_service_error().and_then(|e| e.meta().code()),
        Some("InvalidDocument")
    );
    lab.shutdown().await;
}
