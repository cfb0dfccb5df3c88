//! Data channel benchmarks (harness = false): codec MB/s, session core MB/s, and client
//! throughput, CPU per MB and echo latency over loopback against the scripted server peer.
//!
//! `cargo bench --bench channel` for optimised figures; `cargo test --bench channel` runs the
//! same code in the dev profile (what the shared build machine allows).

#[path = "../tests/common/peer.rs"]
mod channel_peer;
#[path = "../tests/common/lab.rs"]
mod lab_common;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use pink_sombrero::channel::client::{ClientOptions, SessionEvent, SessionTarget, connect};
use pink_sombrero::channel::codec::{ClientMessage, MessageType, PayloadType};
use pink_sombrero::channel::payload::SizeData;
use pink_sombrero::channel::session::Session;
use tokio_tungstenite::tungstenite::Message;

const MB: f64 = 1024.0 * 1024.0;

fn main() {
    // `cargo bench` passes `--bench`; plain `cargo test --all-targets` passes nothing and gets
    // a quick smoke run. CHANNEL_BENCH_MB sets the size explicitly.
    let full = std::env::args().any(|a| a == "--bench");
    let scale: usize = std::env::var("CHANNEL_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 32 } else { 1 });
    let keys = if full || scale > 1 { 300 } else { 20 };
    codec(scale);
    session_core(scale);
    client_throughput(scale);
    echo_latency(keys);
    recording_overhead(scale);
    lab_echo_latency(keys);
    pty_echo_latency(keys);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A lab on its own thread and runtime; returns its endpoint and a stop sender.
fn lab_thread() -> (String, std::sync::mpsc::Sender<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async move {
            let lab = lab_common::lab(1).await;
            tx.send(lab.endpoint_url()).ok();
            tokio::task::spawn_blocking(move || stop_rx.recv().ok())
                .await
                .ok();
            lab.shutdown().await;
        });
    });
    (rx.recv().unwrap_or_else(|e| panic!("{e}")), stop_tx)
}

/// StartSession on the lab's first node through the SDK and connect our client.
async fn lab_session(
    endpoint: &str,
) -> (
    pink_sombrero::channel::client::SessionHandle,
    tokio::sync::mpsc::Receiver<SessionEvent>,
) {
    use aws_config::{BehaviorVersion, Region};
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "lab",
            "lab-secret",
            None,
            None,
            "bench",
        ))
        .endpoint_url(endpoint)
        .load()
        .await;
    let ssm = aws_sdk_ssm::Client::new(&conf);
    let node = lab_common::first_node(&ssm).await;
    let (sid, token, url) = lab_common::start_session(&ssm, &node).await;
    let target = SessionTarget {
        stream_url: url,
        token,
        session_id: sid,
    };
    connect(target, ClientOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Output bytes until `marker` appears (checked across chunk boundaries).
async fn drain_until(
    events: &mut tokio::sync::mpsc::Receiver<SessionEvent>,
    marker: &[u8],
) -> usize {
    drain_recording(events, marker, &mut None).await
}

/// [`drain_until`], writing every chunk into `recorder` as a session does.
async fn drain_recording(
    events: &mut tokio::sync::mpsc::Receiver<SessionEvent>,
    marker: &[u8],
    recorder: &mut Option<pink_sombrero::recording::Recorder>,
) -> usize {
    let mut total = 0;
    let mut tail: Vec<u8> = Vec::new();
    loop {
        match events.recv().await {
            Some(SessionEvent::Output(b)) => {
                if let Some(rec) = recorder.as_mut() {
                    rec.output(&b).unwrap_or_else(|e| panic!("{e}"));
                    rec.tick().unwrap_or_else(|e| panic!("{e}"));
                }
                total += b.len();
                tail.extend_from_slice(&b);
                if tail.windows(marker.len()).any(|w| w == marker) {
                    return total;
                }
                let keep = tail.len().saturating_sub(marker.len());
                tail.drain(..keep);
            }
            Some(_) => {}
            None => panic!("session ended"),
        }
    }
}

/// Bulk output through the lab, unrecorded and recorded in turn (twice each, so machine noise
/// hits both): the recorder's cost on a real session stream.
fn recording_overhead(mb: usize) {
    let mut plain = Vec::new();
    let mut recorded = Vec::new();
    for round in 0..4 {
        let record = round % 2 == 1;
        let (rate, cpu) = lab_bulk_output(mb, record);
        if record {
            recorded.push((rate, cpu))
        } else {
            plain.push((rate, cpu))
        }
    }
    let avg = |v: &[(f64, f64)]| {
        let n = v.len() as f64;
        (
            v.iter().map(|x| x.0).sum::<f64>() / n,
            v.iter().map(|x| x.1).sum::<f64>() / n,
        )
    };
    let (p_rate, p_cpu) = avg(&plain);
    let (r_rate, r_cpu) = avg(&recorded);
    println!(
        "recording overhead on a bulk lab session: {p_rate:.1} -> {r_rate:.1} MB/s ({:+.1} % throughput), {:.4} -> {:.4} CPU s/MB ({:+.1} % client CPU)",
        (r_rate / p_rate - 1.0) * 100.0,
        p_cpu,
        r_cpu,
        (r_cpu / p_cpu - 1.0) * 100.0
    );
}

/// Bulk output through the lab: `head -c N /dev/zero | base64`, our client on this thread,
/// optionally recorded with a real sealed recorder. Returns (MB/s, client CPU s per MB).
fn lab_bulk_output(mb: usize, record: bool) -> (f64, f64) {
    let (endpoint, stop) = lab_thread();
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let result = runtime().block_on(async {
        let (handle, mut events) = lab_session(&endpoint).await;
        handle.send_input(b"echo READY-$((1+1))\r".to_vec()).await.unwrap_or_else(|e| panic!("{e}"));
        drain_until(&mut events, b"READY-2").await;
        let mut recorder = record.then(|| {
            let key = pink_sombrero::recording::RecorderKey::load_or_create(&scratch.path().join("keys"))
                .unwrap_or_else(|e| panic!("{e}"));
            let meta = pink_sombrero::recording::RecordingMeta {
                request_id: "req-bench000".into(),
                requester: "bench".into(),
                approvers: vec!["a".into(), "b".into()],
                target: "mi-bench".into(),
                reason: "benchmark".into(),
                session_id: "bench-session".into(),
                width: 300,
                height: 100,
                term: "xterm".into(),
                shell: "/bin/sh".into(),
                title: "bench".into(),
            };
            pink_sombrero::recording::Recorder::create(&scratch.path().join("rec"), meta, &key)
                .unwrap_or_else(|e| panic!("{e}"))
        });
        let cmd = format!("head -c {}M /dev/zero | base64; echo DONE-$((2+2))\r", mb);
        let start = Instant::now();
        let cpu0 = cpu_time_thread();
        handle.send_input(cmd.into_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
        let bytes = drain_recording(&mut events, b"DONE-4", &mut recorder).await;
        if let Some(rec) = recorder {
            rec.seal().unwrap_or_else(|e| panic!("{e}"));
        }
        let secs = start.elapsed().as_secs_f64();
        let cpu = (cpu_time_thread() - cpu0).as_secs_f64();
        let mbs = bytes as f64 / MB;
        println!(
            "client bulk output through the lab{} (head -c {mb}M /dev/zero | base64, {mbs:.1} MB): {:.1} MB/s, {:.4} CPU s/MB (client thread)",
            if record { ", recorded" } else { "" },
            mbs / secs,
            cpu / mbs
        );
        let stats = handle.stats().counters;
        println!("  counters: {stats:?}");
        (mbs / secs, cpu / mbs)
    });
    stop.send(()).ok();
    result
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    (pct(50), pct(99))
}

/// Keystroke echo through the lab: one key typed, until its echo comes back.
fn lab_echo_latency(n: usize) {
    let (endpoint, stop) = lab_thread();
    runtime().block_on(async move {
        let (handle, mut events) = lab_session(&endpoint).await;
        handle
            .send_input(b"cat\r".to_vec())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        while events.try_recv().is_ok() {}
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            handle
                .send_input(b"k".to_vec())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            loop {
                if let Some(SessionEvent::Output(b)) = events.recv().await
                    && b.contains(&b'k')
                {
                    break;
                }
            }
            samples.push(t.elapsed());
        }
        let (p50, p99) = percentiles(samples);
        println!("keystroke echo through the lab ({n} keys into cat): p50 {p50:?}, p99 {p99:?}");
    });
    stop.send(()).ok();
}

/// Baseline: the same keystroke echo written straight to a shell's PTY.
fn pty_echo_latency(n: usize) {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    use std::io::{Read, Write};
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 24,
            cols: 80,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = CommandBuilder::new("sh");
    cmd.args(["-c", "exec cat"]);
    let mut child = pair
        .slave
        .spawn_command(cmd)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut reader = pair
        .master
        .try_clone_reader()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut writer = pair.master.take_writer().unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(200));
    let mut buf = [0u8; 256];
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        writer.write_all(b"k").unwrap_or_else(|e| panic!("{e}"));
        loop {
            let got = reader.read(&mut buf).unwrap_or_else(|e| panic!("{e}"));
            if buf[..got].contains(&b'k') {
                break;
            }
        }
        samples.push(t.elapsed());
    }
    child.kill().ok();
    let (p50, p99) = percentiles(samples);
    println!(
        "keystroke echo written straight to a PTY ({n} keys into cat): p50 {p50:?}, p99 {p99:?}"
    );
}

fn codec(mb: usize) {
    for size in [1024usize, 64 * 1024] {
        let payload = vec![b'x'; size];
        let n = mb * 1024 * 1024 / size;
        let start = Instant::now();
        let mut total = 0usize;
        for seq in 0..n {
            let msg = ClientMessage::new(
                MessageType::OutputStreamData,
                seq as i64,
                0,
                PayloadType::Output,
                payload.clone(),
            );
            let wire = msg.encode();
            let back = ClientMessage::decode(&wire).unwrap_or_else(|e| panic!("{e}"));
            total += back.payload.len();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "codec encode+decode, {size}-byte payloads: {:.1} MB/s ({n} frames)",
            total as f64 / MB / secs
        );
    }
}

fn session_core(mb: usize) {
    let frames: Vec<Vec<u8>> = (0..mb * 1024)
        .map(|i| {
            ClientMessage::new(
                MessageType::OutputStreamData,
                i as i64,
                0,
                PayloadType::Output,
                vec![b'y'; 1024],
            )
            .encode()
        })
        .collect();
    let mut s = Session::new(SizeData { cols: 80, rows: 24 }, "1.2.0.0");
    let start = Instant::now();
    let now = Instant::now();
    let mut fx = 0usize;
    for f in &frames {
        fx += s.on_frame(f, now).len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "session core, in-order 1024-byte output frames (decode, ack encode, deliver): {:.1} MB/s ({fx} effects)",
        frames.len() as f64 * 1024.0 / MB / secs
    );
}

fn cpu_time_thread() -> Duration {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage struct.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The peer runs on its own thread and runtime; the client and its consumer run on a
/// current-thread runtime on this thread, so this thread's CPU time is the client's.
fn client_throughput(mb: usize) {
    let frames_n = mb * 1024;
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let listener = client_rt.block_on(channel_peer::Listener::bind());
    let url = listener.url.clone();
    let peer = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async move {
            let mut peer = listener.accept().await;
            peer.handshake().await;
            let frames: Vec<Vec<u8>> = (0..frames_n)
                .map(|i| {
                    channel_peer::Peer::frame(2 + i as i64, PayloadType::Output, &[b'z'; 1024])
                })
                .collect();
            let (mut tx, mut rx) = peer.ws.split();
            let drain = tokio::spawn(async move { while rx.next().await.is_some() {} });
            for f in frames {
                tx.feed(Message::Binary(f.into()))
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            tx.flush().await.unwrap_or_else(|e| panic!("{e}"));
            drain.await.ok();
        });
    });
    client_rt.block_on(async move {
        let target = SessionTarget {
            stream_url: url,
            token: "t".into(),
            session_id: "s".into(),
        };
        let (_handle, mut events) = connect(target, ClientOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let want = frames_n * 1024;
        let mut got = 0usize;
        let mut start = None;
        let mut cpu0 = Duration::ZERO;
        while got < want {
            match events.recv().await {
                Some(SessionEvent::Output(b)) => {
                    if start.is_none() {
                        start = Some(Instant::now());
                        cpu0 = cpu_time_thread();
                    }
                    got += b.len();
                }
                Some(_) => {}
                None => panic!("session ended early"),
            }
        }
        let secs = start.map(|s| s.elapsed().as_secs_f64()).unwrap_or(f64::NAN);
        let cpu = (cpu_time_thread() - cpu0).as_secs_f64();
        let mbs = got as f64 / MB;
        println!(
            "client bulk output over loopback ({mbs:.0} MB in 1024-byte frames): {:.1} MB/s, {:.4} CPU s/MB (client thread)",
            mbs / secs,
            cpu / mbs
        );
    });
    drop(peer);
}

/// Keystroke echo through the client: the peer echoes each input frame as output.
fn echo_latency(n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async move {
        let listener = channel_peer::Listener::bind().await;
        let target = SessionTarget {
            stream_url: listener.url.clone(),
            token: "t".into(),
            session_id: "s".into(),
        };
        let (client, mut peer) =
            tokio::join!(connect(target, ClientOptions::default()), listener.accept());
        let (handle, mut events) = client.unwrap_or_else(|e| panic!("{e}"));
        peer.handshake().await;
        tokio::spawn(async move {
            loop {
                let f = peer.next_input().await;
                peer.ack(&f).await;
                peer.send_out(PayloadType::Output, &f.payload).await;
            }
        });
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            handle
                .send_input(b"k".to_vec())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            loop {
                if let Some(SessionEvent::Output(_)) = events.recv().await {
                    break;
                }
            }
            samples.push(t.elapsed());
        }
        let (p50, p99) = percentiles(samples);
        println!("keystroke echo through the client vs scripted peer ({n} keys): p50 {p50:?}, p99 {p99:?}");
    });
}
