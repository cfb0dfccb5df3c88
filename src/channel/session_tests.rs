//! Rule-by-rule tests of the session core, with a fake clock (`t0` plus offsets).

use super::*;
use crate::channel::codec::{ClientMessage, MessageType, PayloadType};
use crate::channel::payload::{AcknowledgeContent, HandshakeResponse, exit_code_payload};
use std::time::{Duration, Instant};

const SIZE: SizeData = SizeData {
    cols: 120,
    rows: 40,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn agent(seq: i64, pt: PayloadType, payload: &[u8]) -> Vec<u8> {
    ClientMessage::new(MessageType::OutputStreamData, seq, 0, pt, payload.to_vec()).encode()
}

fn request(actions: &str) -> Vec<u8> {
    format!(r#"{{"AgentVersion":"3.3.40.0","RequestedClientActions":[{actions}]}}"#).into_bytes()
}

const SESSION_TYPE: &str = r#"{"ActionType":"SessionType","ActionParameters":{"SessionType":"Standard_Stream","Properties":{}}}"#;
const COMPLETE: &[u8] = br#"{"HandshakeTimeToComplete":1000,"CustomerMessage":""}"#;

fn sent(fx: &[Effect]) -> Vec<ClientMessage> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Send(b) => Some(ClientMessage::decode(b).unwrap()),
            _ => None,
        })
        .collect()
}

fn acked_seqs(fx: &[Effect]) -> Vec<i64> {
    sent(fx)
        .iter()
        .filter(|m| m.message_type == MessageType::Acknowledge)
        .map(|m| {
            serde_json::from_slice::<AcknowledgeContent>(&m.payload)
                .unwrap()
                .sequence_number
        })
        .collect()
}

fn inputs(fx: &[Effect]) -> Vec<ClientMessage> {
    sent(fx)
        .into_iter()
        .filter(|m| m.message_type == MessageType::InputStreamData)
        .collect()
}

fn outputs(fx: &[Effect]) -> Vec<u8> {
    fx.iter()
        .flat_map(|e| match e {
            Effect::Output(b) => b.clone(),
            _ => Vec::new(),
        })
        .collect()
}

fn ack_for(seq: i64) -> Vec<u8> {
    let input = ClientMessage::new(
        MessageType::InputStreamData,
        seq,
        0,
        PayloadType::Output,
        vec![],
    );
    AcknowledgeContent::ack_frame_for(&input).encode()
}

/// A session past the handshake (agent seq 0 and 1 consumed, client seq 0 and 1 acked).
fn ready(t0: Instant) -> Session {
    let mut s = Session::new(SIZE, "1.2.0.0");
    s.on_frame(
        &agent(0, PayloadType::HandshakeRequest, &request(SESSION_TYPE)),
        t0,
    );
    s.on_frame(&agent(1, PayloadType::HandshakeComplete, COMPLETE), t0);
    s.on_frame(&ack_for(0), t0);
    s.on_frame(&ack_for(1), t0);
    assert_eq!(s.phase(), Phase::Ready);
    assert_eq!(s.unacked_len(), 0);
    s
}

#[test]
fn handshake_request_is_acked_before_it_is_answered() {
    let t0 = Instant::now();
    let mut s = Session::new(SIZE, "1.2.0.0");
    let fx = s.on_frame(
        &agent(0, PayloadType::HandshakeRequest, &request(SESSION_TYPE)),
        t0,
    );
    let frames = sent(&fx);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].message_type, MessageType::Acknowledge);
    assert_eq!(frames[0].flags, 3);
    assert_eq!(frames[0].sequence_number, 0);
    assert_eq!(frames[0].payload_type, PayloadType::Undefined);
    assert_eq!(frames[1].message_type, MessageType::InputStreamData);
    assert_eq!(frames[1].sequence_number, 0);
    assert_eq!(frames[1].payload_type, PayloadType::HandshakeResponse);
    assert_eq!(
        String::from_utf8(frames[1].payload.clone()).unwrap(),
        r#"{"ClientVersion":"1.2.0.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}"#
    );
    assert_eq!(s.phase(), Phase::Handshake);
}

#[test]
fn handshake_complete_sends_size_then_held_input() {
    let t0 = Instant::now();
    let mut s = Session::new(SIZE, "1.2.0.0");
    s.on_frame(
        &agent(0, PayloadType::HandshakeRequest, &request(SESSION_TYPE)),
        t0,
    );
    assert!(!s.accepts_input());
    assert!(sent(&s.send_input(b"early", t0)).is_empty());
    let fx = s.on_frame(&agent(1, PayloadType::HandshakeComplete, COMPLETE), t0);
    assert_eq!(acked_seqs(&fx), vec![1]);
    let ins = inputs(&fx);
    assert_eq!(ins.len(), 2);
    assert_eq!(ins[0].sequence_number, 1);
    assert_eq!(ins[0].payload_type, PayloadType::Size);
    assert_eq!(ins[0].payload, br#"{"cols":120,"rows":40}"#);
    assert_eq!(ins[1].sequence_number, 2);
    assert_eq!(ins[1].payload, b"early");
    assert!(s.accepts_input());
}

#[test]
fn customer_message_becomes_a_notice() {
    let t0 = Instant::now();
    let mut s = Session::new(SIZE, "1.2.0.0");
    s.on_frame(
        &agent(0, PayloadType::HandshakeRequest, &request(SESSION_TYPE)),
        t0,
    );
    let done = br#"{"HandshakeTimeToComplete":1,"CustomerMessage":"be careful"}"#;
    let fx = s.on_frame(&agent(1, PayloadType::HandshakeComplete, done), t0);
    assert!(fx.contains(&Effect::Notice("be careful".into())));
}

#[test]
fn output_right_after_handshake_complete_is_delivered_and_acked() {
    let t0 = Instant::now();
    let mut s = Session::new(SIZE, "1.2.0.0");
    s.on_frame(
        &agent(0, PayloadType::HandshakeRequest, &request(SESSION_TYPE)),
        t0,
    );
    s.on_frame(&agent(1, PayloadType::HandshakeComplete, COMPLETE), t0);
    let fx = s.on_frame(&agent(2, PayloadType::Output, b"$ "), t0);
    assert_eq!(acked_seqs(&fx), vec![2]);
    assert_eq!(outputs(&fx), b"$ ");
}

#[test]
fn kms_encryption_is_refused_with_a_clear_error() {
    let t0 = Instant::now();
    let mut s = Session::new(SIZE, "1.2.0.0");
    let kms = r#"{"ActionType":"KMSEncryption","ActionParameters":{"KMSKeyId":"arn:aws:kms:x"}}"#;
    let fx = s.on_frame(
        &agent(
            0,
            PayloadType::HandshakeRequest,
            &request(&format!("{SESSION_TYPE},{kms}")),
        ),
        t0,
    );
    let resp: HandshakeResponse = serde_json::from_slice(&inputs(&fx)[0].payload).unwrap();
    assert_eq!(resp.processed_client_actions[0].action_status, 1);
    assert_eq!(resp.processed_client_actions[1].action_status, 2);
    assert!(resp.processed_client_actions[1].error.contains("KMS"));
    assert_eq!(resp.errors.as_ref().map(Vec::len), Some(1));
    assert_eq!(
        fx.last(),
        Some(&Effect::Failed(SessionError::KmsUnsupported))
    );
    assert_eq!(s.phase(), Phase::Ended);
}

#[test]
fn enc_challenge_without_kms_ends_the_session() {
    let t0 = Instant::now();
    let mut s = Session::new(SIZE, "1.2.0.0");
    s.on_frame(
        &agent(0, PayloadType::HandshakeRequest, &request(SESSION_TYPE)),
        t0,
    );
    let fx = s.on_frame(&agent(1, PayloadType::EncChallengeRequest, b"{}"), t0);
    assert_eq!(acked_seqs(&fx), vec![1]);
    assert_eq!(
        fx.last(),
        Some(&Effect::Failed(SessionError::KmsUnsupported))
    );
}

#[test]
fn unknown_actions_are_reported_unsupported_in_action_status() {
    let t0 = Instant::now();
    let mut s = Session::new(SIZE, "1.2.0.0");
    let odd = r#"{"ActionType":"Teleport","ActionParameters":{}}"#;
    let fx = s.on_frame(
        &agent(
            0,
            PayloadType::HandshakeRequest,
            &request(&format!("{SESSION_TYPE},{odd}")),
        ),
        t0,
    );
    let resp: HandshakeResponse = serde_json::from_slice(&inputs(&fx)[0].payload).unwrap();
    assert_eq!(resp.processed_client_actions[1].action_status, 3);
    assert_eq!(
        resp.processed_client_actions[1].action_result,
        serde_json::Value::Null
    );
    assert_eq!(s.phase(), Phase::Handshake);
}

#[test]
fn unreadable_handshake_request_ends_the_session() {
    let t0 = Instant::now();
    let mut s = Session::new(SIZE, "1.2.0.0");
    let fx = s.on_frame(&agent(0, PayloadType::HandshakeRequest, b"not json"), t0);
    assert_eq!(acked_seqs(&fx), vec![0]);
    assert!(matches!(
        fx.last(),
        Some(Effect::Failed(SessionError::HandshakeUnreadable(_)))
    ));
}

#[test]
fn handshake_frames_arriving_out_of_order_still_complete_the_handshake() {
    let t0 = Instant::now();
    let mut s = Session::new(SIZE, "1.2.0.0");
    let fx = s.on_frame(&agent(1, PayloadType::HandshakeComplete, COMPLETE), t0);
    assert_eq!(acked_seqs(&fx), vec![1]);
    assert!(inputs(&fx).is_empty());
    let fx = s.on_frame(
        &agent(0, PayloadType::HandshakeRequest, &request(SESSION_TYPE)),
        t0,
    );
    let ins = inputs(&fx);
    assert_eq!(ins[0].payload_type, PayloadType::HandshakeResponse);
    assert_eq!(ins[1].payload_type, PayloadType::Size);
    assert_eq!(s.phase(), Phase::Ready);
}

#[test]
fn old_agents_without_handshake_start_with_output() {
    let t0 = Instant::now();
    let mut s = Session::new(SIZE, "1.2.0.0");
    let fx = s.on_frame(&agent(0, PayloadType::Output, b"hello"), t0);
    assert_eq!(s.phase(), Phase::Ready);
    assert_eq!(outputs(&fx), b"hello");
    assert_eq!(inputs(&fx)[0].payload_type, PayloadType::Size);
}

#[test]
fn out_of_order_output_is_acked_buffered_and_delivered_in_order() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let fx = s.on_frame(&agent(4, PayloadType::Output, b"d"), t0);
    assert_eq!(acked_seqs(&fx), vec![4]);
    assert!(outputs(&fx).is_empty());
    let fx = s.on_frame(&agent(3, PayloadType::Output, b"c"), t0);
    assert_eq!(acked_seqs(&fx), vec![3]);
    assert!(outputs(&fx).is_empty());
    let fx = s.on_frame(&agent(2, PayloadType::Output, b"ab"), t0);
    assert_eq!(acked_seqs(&fx), vec![2]);
    assert_eq!(outputs(&fx), b"abcd");
    assert_eq!(s.counters().out_of_order, 2);
}

#[test]
fn duplicates_are_re_acked_and_not_delivered_twice() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    s.on_frame(&agent(2, PayloadType::Output, b"x"), t0);
    s.on_frame(&agent(4, PayloadType::Output, b"z"), t0);
    // Below expected.
    let fx = s.on_frame(&agent(2, PayloadType::Output, b"x"), t0);
    assert_eq!(acked_seqs(&fx), vec![2]);
    assert!(outputs(&fx).is_empty());
    // Already buffered.
    let fx = s.on_frame(&agent(4, PayloadType::Output, b"z"), t0);
    assert_eq!(acked_seqs(&fx), vec![4]);
    assert!(outputs(&fx).is_empty());
    assert_eq!(s.counters().duplicates, 2);
    let fx = s.on_frame(&agent(3, PayloadType::Output, b"y"), t0);
    assert_eq!(outputs(&fx), b"yz");
}

#[test]
fn full_reorder_buffer_drops_unacked() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    for seq in 3..3 + limits::MAX_BUFFERED as i64 {
        s.on_frame(&agent(seq, PayloadType::Output, b"."), t0);
    }
    let fx = s.on_frame(&agent(20_000, PayloadType::Output, b"!"), t0);
    assert!(fx.is_empty());
    assert_eq!(s.counters().buffer_full_drops, 1);
    // The gap fills and everything buffered drains in order.
    let fx = s.on_frame(&agent(2, PayloadType::Output, b"<"), t0);
    assert_eq!(outputs(&fx).len(), 1 + limits::MAX_BUFFERED);
}

#[test]
fn stderr_exit_code_and_flags_are_delivered() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let fx = s.on_frame(&agent(2, PayloadType::StdErr, b"oops"), t0);
    assert!(fx.contains(&Effect::Stderr(b"oops".to_vec())));
    let fx = s.on_frame(&agent(3, PayloadType::ExitCode, &exit_code_payload(7)), t0);
    assert!(fx.contains(&Effect::ExitCode(7)));
    let fx = s.on_frame(&agent(4, PayloadType::Flag, &3u32.to_be_bytes()), t0);
    assert!(matches!(fx.last(), Some(Effect::Notice(_))));
    let fx = s.on_frame(&agent(5, PayloadType::Flag, &[1, 2]), t0);
    assert_eq!(acked_seqs(&fx), vec![5]);
    let fx = s.on_frame(&agent(6, PayloadType::ExitCode, b"EXIT_CODE: x"), t0);
    assert_eq!(acked_seqs(&fx), vec![6]);
    assert_eq!(s.counters().malformed, 2);
    let fx = s.on_frame(&agent(7, PayloadType::Unknown(99), b"?"), t0);
    assert_eq!(acked_seqs(&fx), vec![7]);
    assert_eq!(s.counters().ignored, 1);
}

#[test]
fn publication_frames_are_ignored_even_malformed_and_before_handshake() {
    let t0 = Instant::now();
    let mut s = Session::new(SIZE, "1.2.0.0");
    for kind in [MessageType::PausePublication, MessageType::StartPublication] {
        let mut m = ClientMessage::new(kind, 0, 0, PayloadType::Undefined, b"{}".to_vec());
        m.created_date = 0;
        let mut wire = m.encode();
        wire[80] ^= 0xff; // bad digest
        assert!(s.on_frame(&wire, t0).is_empty());
    }
    assert_eq!(s.counters().ignored, 2);
    assert_eq!(s.counters().malformed, 0);
    assert_eq!(s.phase(), Phase::Handshake);
}

fn closed_frame(output: &str) -> Vec<u8> {
    let body =
        format!(r#"{{"MessageType":"channel_closed","SchemaVersion":1,"Output":"{output}"}}"#);
    ClientMessage::new(
        MessageType::ChannelClosed,
        0,
        0,
        PayloadType::Undefined,
        body.into_bytes(),
    )
    .encode()
}

#[test]
fn channel_closed_ends_the_session_with_its_output_after_the_linger() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    // A shell session never gets an exit code: the client lingers for a late frame.
    assert!(s.on_frame(&closed_frame("bye"), t0).is_empty());
    assert_eq!(s.phase(), Phase::Closing);
    assert!(s.send_input(b"x", t0).is_empty());
    let fx = s.on_frame(&agent(2, PayloadType::Output, b"late"), t0 + ms(1));
    assert_eq!(acked_seqs(&fx), vec![2]);
    assert_eq!(outputs(&fx), b"late");
    assert!(s.tick(t0 + limits::CLOSE_LINGER - ms(1)).is_empty());
    assert_eq!(
        s.tick(t0 + limits::CLOSE_LINGER),
        vec![Effect::Closed("bye".into())]
    );
    assert_eq!(s.phase(), Phase::Ended);
    assert!(
        s.on_frame(&agent(3, PayloadType::Output, b"later"), t0)
            .is_empty()
    );
    assert!(s.send_input(b"x", t0).is_empty());
    assert!(s.tick(t0 + ms(10_000)).is_empty());
}

#[test]
fn an_exit_code_after_channel_closed_is_kept_and_ends_the_linger() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    assert!(s.on_frame(&closed_frame(""), t0).is_empty());
    let fx = s.on_frame(
        &agent(2, PayloadType::ExitCode, &exit_code_payload(3)),
        t0 + ms(1),
    );
    assert_eq!(
        fx[1..],
        [Effect::ExitCode(3), Effect::Closed(String::new())]
    );
    assert_eq!(s.phase(), Phase::Ended);
}

#[test]
fn channel_closed_after_the_exit_code_ends_at_once_unless_a_gap_is_open() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    s.on_frame(&agent(2, PayloadType::ExitCode, &exit_code_payload(0)), t0);
    assert_eq!(
        s.on_frame(&closed_frame("done"), t0),
        vec![Effect::Closed("done".into())]
    );

    // Output 3 is missing while 4 waits: the close waits for the gap to fill.
    let mut s = ready(t0);
    s.on_frame(&agent(2, PayloadType::ExitCode, &exit_code_payload(0)), t0);
    s.on_frame(&agent(4, PayloadType::Output, b"b"), t0);
    assert!(s.on_frame(&closed_frame("done"), t0).is_empty());
    let fx = s.on_frame(&agent(3, PayloadType::Output, b"a"), t0);
    assert_eq!(outputs(&fx), b"ab");
    assert_eq!(fx.last(), Some(&Effect::Closed("done".into())));
    // Terminating while lingering ends with the service's text, sending nothing.
    let mut s = ready(t0);
    s.on_frame(&closed_frame("x"), t0);
    assert_eq!(s.terminate(t0), vec![Effect::Closed("x".into())]);
}

#[test]
fn channel_closed_with_unreadable_payload_still_closes() {
    let t0 = Instant::now();
    let mut s = Session::new(SIZE, "1.2.0.0");
    let closed = ClientMessage::new(
        MessageType::ChannelClosed,
        0,
        0,
        PayloadType::Undefined,
        b"garbage".to_vec(),
    );
    assert_eq!(
        s.on_frame(&closed.encode(), t0),
        vec![Effect::Closed(String::new())]
    );
}

#[test]
fn malformed_frames_are_counted_and_dropped() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let mut bad_digest = agent(2, PayloadType::Output, b"x");
    bad_digest[120] ^= 1;
    let mut bad_header = agent(2, PayloadType::Output, b"x");
    bad_header[3] = 0;
    let mut bad_type = agent(2, PayloadType::Output, b"x");
    bad_type[4..9].copy_from_slice(b"bogus");
    for frame in [&bad_digest[..], &bad_header, &bad_type, &[1, 2, 3], &[]] {
        assert!(s.on_frame(frame, t0).is_empty());
    }
    assert_eq!(s.counters().malformed, 5);
    // The good copy (e.g. the agent's resend) is then accepted.
    let fx = s.on_frame(&agent(2, PayloadType::Output, b"x"), t0);
    assert_eq!(outputs(&fx), b"x");
    let fx = s.on_frame(
        &ClientMessage::new(
            MessageType::Acknowledge,
            0,
            3,
            PayloadType::Undefined,
            b"{".to_vec(),
        )
        .encode(),
        t0,
    );
    assert!(fx.is_empty());
    assert_eq!(s.counters().malformed, 6);
}

#[test]
fn a_stream_of_only_malformed_frames_ends_the_session() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    for _ in 0..limits::MAX_CONSECUTIVE_MALFORMED - 1 {
        assert!(s.on_frame(b"junk", t0).is_empty());
    }
    // A valid frame resets the run.
    s.on_frame(&agent(2, PayloadType::Output, b"x"), t0);
    for _ in 0..limits::MAX_CONSECUTIVE_MALFORMED - 1 {
        assert!(s.on_frame(b"junk", t0).is_empty());
    }
    let fx = s.on_frame(b"junk", t0);
    assert!(matches!(
        fx.as_slice(),
        [Effect::Failed(SessionError::TooManyMalformed(100, _))]
    ));
    assert_eq!(s.phase(), Phase::Ended);
}

#[test]
fn input_is_sequenced_and_chunked_at_1024_bytes() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let data: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
    let ins = inputs(&s.send_input(&data, t0));
    assert_eq!(
        ins.iter().map(|m| m.payload.len()).collect::<Vec<_>>(),
        vec![1024, 1024, 452]
    );
    assert_eq!(
        ins.iter().map(|m| m.sequence_number).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert!(
        ins.iter()
            .all(|m| m.flags == 0 && m.payload_type == PayloadType::Output)
    );
    assert_eq!(
        ins.iter()
            .flat_map(|m| m.payload.clone())
            .collect::<Vec<_>>(),
        data
    );
    assert_eq!(s.unacked_len(), 3);
}

#[test]
fn acks_match_on_sequence_number_only_and_are_not_cumulative() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    s.send_input(b"a", t0);
    s.send_input(b"b", t0);
    s.send_input(b"c", t0);
    // An ack carrying a different message id but seq 3 removes exactly seq 3.
    s.on_frame(&ack_for(3), t0 + ms(5));
    assert_eq!(s.unacked_len(), 2);
    s.on_frame(&ack_for(99), t0 + ms(5));
    assert_eq!(s.unacked_len(), 2);
    // Only 2 and 4 remain: a tick past the RTO resends exactly those.
    let re = inputs(&s.tick(t0 + ms(1000)));
    assert_eq!(
        re.iter().map(|m| m.sequence_number).collect::<Vec<_>>(),
        vec![2, 4]
    );
}

#[test]
fn resend_follows_the_rto_with_a_fake_clock() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let rto = s.rto().rto();
    let t1 = t0 + ms(1);
    let fx = s.send_input(b"ls\r", t1);
    assert_eq!(fx.len(), 1);
    let original = fx[0].clone();
    assert!(s.tick(t1 + ms(100)).is_empty());
    assert!(s.tick(t1 + rto - ms(1)).is_empty());
    // Identical bytes: same seq, same message id.
    assert_eq!(s.tick(t1 + rto), vec![original.clone()]);
    // The timer restarts from the resend.
    assert!(s.tick(t1 + rto * 2 - ms(1)).is_empty());
    assert_eq!(s.tick(t1 + rto * 2), vec![original]);
    assert_eq!(s.counters().resends, 2);
    s.on_frame(&ack_for(2), t1 + rto * 2 + ms(50));
    assert!(s.tick(t1 + ms(5000)).is_empty());
    // Karn: the resent frame gave no RTT sample.
    assert_eq!(s.rto().rto(), rto);
}

#[test]
fn a_fresh_session_resends_after_the_initial_rto() {
    let t0 = Instant::now();
    let mut s = Session::new(SIZE, "1.2.0.0");
    s.on_frame(
        &agent(0, PayloadType::HandshakeRequest, &request(SESSION_TYPE)),
        t0,
    );
    assert!(s.tick(t0 + limits::INITIAL_RTO - ms(1)).is_empty());
    let re = inputs(&s.tick(t0 + limits::INITIAL_RTO));
    assert_eq!(re[0].payload_type, PayloadType::HandshakeResponse);
}

#[test]
fn rto_follows_jacobson_and_is_capped() {
    let mut r = RtoEstimator::default();
    r.sample(ms(100));
    // RTTVAR stays 0, so the 10 ms floor applies.
    assert_eq!(r.srtt(), ms(100));
    assert_eq!(r.rto(), ms(110));
    r.sample(ms(20));
    // RTTVAR = 0*3/4 + 80/4 = 20; SRTT = 87.5 + 2.5 = 90; RTO = 90 + 80.
    assert_eq!(r.srtt(), ms(90));
    assert_eq!(r.rto(), ms(170));
    r.sample(Duration::from_secs(5));
    assert_eq!(r.rto(), limits::MAX_RTO);
}

#[test]
fn measured_rtt_shortens_the_resend_timer() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    for i in 0..20u64 {
        let at = t0 + ms(i * 10);
        s.send_input(b"k", at);
        s.on_frame(&ack_for(2 + i as i64), at + ms(5));
    }
    let rto = s.rto().rto();
    assert!(rto < limits::INITIAL_RTO, "rto {rto:?}");
    let t1 = t0 + ms(1000);
    s.send_input(b"x", t1);
    assert!(s.tick(t1 + rto - ms(1)).is_empty());
    assert_eq!(inputs(&s.tick(t1 + rto)).len(), 1);
}

#[test]
fn resends_per_tick_are_bounded() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    for _ in 0..limits::MAX_RESENDS_PER_TICK + 10 {
        s.send_input(b"k", t0);
    }
    assert_eq!(s.tick(t0 + ms(1000)).len(), limits::MAX_RESENDS_PER_TICK);
    assert_eq!(s.tick(t0 + ms(1100)).len(), 10);
}

#[test]
fn unacked_input_for_too_long_ends_the_session() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    s.send_input(b"x", t0);
    assert!(!s.tick(t0 + limits::RESEND_GIVE_UP - ms(1)).is_empty());
    let fx = s.tick(t0 + limits::RESEND_GIVE_UP);
    assert_eq!(
        fx,
        vec![Effect::Failed(SessionError::AgentUnresponsive(
            limits::RESEND_GIVE_UP
        ))]
    );
}

#[test]
fn a_full_unacked_list_stops_input() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    for _ in 0..limits::MAX_UNACKED {
        s.send_input(b"k", t0);
    }
    assert!(!s.accepts_input());
    s.on_frame(&ack_for(2), t0);
    assert!(s.accepts_input());
}

#[test]
fn reconnect_resends_everything_unacked_in_order_then_the_size() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    s.send_input(b"a", t0);
    s.send_input(b"b", t0);
    let sent = inputs(&s.on_reconnected(t0 + ms(1)));
    let seqs: Vec<i64> = sent.iter().map(|m| m.sequence_number).collect();
    assert_eq!(seqs, vec![2, 3, 4]);
    // Then the same size once more: the remote side redraws after the reconnect.
    assert_eq!(sent[2].payload_type, PayloadType::Size);
    assert_eq!(sent[2].payload, serde_json::to_vec(&SIZE).unwrap());
    // Sequence numbers carry on.
    assert_eq!(inputs(&s.send_input(b"c", t0))[0].sequence_number, 5);
}

#[test]
fn resize_is_sent_only_when_ready_and_changed() {
    let t0 = Instant::now();
    let mut s = Session::new(SIZE, "1.2.0.0");
    assert!(s.resize(SizeData { cols: 90, rows: 30 }, t0).is_empty());
    s.on_frame(
        &agent(0, PayloadType::HandshakeRequest, &request(SESSION_TYPE)),
        t0,
    );
    let fx = s.on_frame(&agent(1, PayloadType::HandshakeComplete, COMPLETE), t0);
    assert_eq!(inputs(&fx)[0].payload, br#"{"cols":90,"rows":30}"#);
    assert!(s.resize(SizeData { cols: 90, rows: 30 }, t0).is_empty());
    let ins = inputs(&s.resize(
        SizeData {
            cols: 100,
            rows: 50,
        },
        t0,
    ));
    assert_eq!(ins[0].payload_type, PayloadType::Size);
    assert_eq!(ins[0].payload, br#"{"cols":100,"rows":50}"#);
}

#[test]
fn terminate_sends_the_terminate_flag_once_ready() {
    let t0 = Instant::now();
    let mut pending = Session::new(SIZE, "1.2.0.0");
    assert!(pending.terminate(t0).is_empty());
    let mut s = ready(t0);
    let ins = inputs(&s.terminate(t0));
    assert_eq!(ins[0].payload_type, PayloadType::Flag);
    assert_eq!(ins[0].payload, 2u32.to_be_bytes());
    assert_eq!(s.unacked_len(), 1);
}

#[test]
fn mutated_frames_never_panic_and_never_deliver_corrupted_output() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let t0 = Instant::now();
    let mut s = ready(t0);
    let payload = b"trustworthy output".to_vec();
    for seq in 2..2000i64 {
        let mut wire = agent(seq, PayloadType::Output, &payload);
        let flips = rng.random_range(0..4);
        for _ in 0..flips {
            let i = rng.random_range(0..wire.len());
            wire[i] = rng.random();
        }
        if rng.random_bool(0.1) {
            wire.truncate(rng.random_range(0..wire.len()));
        }
        for effect in s.on_frame(&wire, t0) {
            if let Effect::Output(bytes) = effect {
                assert_eq!(bytes, payload);
            }
        }
        if s.phase() == Phase::Ended {
            break;
        }
    }
    assert!(s.counters().malformed > 0);
}
