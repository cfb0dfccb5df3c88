//! The broker's session hub against an in-process lab: the session is opened, recorded and
//! finished by the hub whatever its client does; watchers see the screen and cannot type;
//! an approver's kill ends it as theirs; a vanished client ends it as a lost connection.

use crate::common::cli::{Env, TEAM, TEAM_POLICY};
use pink_sombrero::broker::{Broker, BrokerOptions};
use pink_sombrero::channel::payload::SizeData;
use pink_sombrero::config::Paths;
use pink_sombrero::fleet::aws::AwsFleet;
use pink_sombrero::lab::{self, Lab, LabConfig};
use pink_sombrero::recording::RecorderKey;
use pink_sombrero::request::CloseReason;
use pink_sombrero::serve::hub::{Hub, Out};
use pink_sombrero::session::{self, SessionDeps};
use pink_sombrero::wire::session::ServerMsg;
use std::sync::Arc;
use tokio::sync::mpsc;

struct World {
    env: Env,
    lab: Lab,
    hub: Arc<Hub>,
    broker: Arc<Broker>,
    recordings: std::path::PathBuf,
}

impl World {
    async fn new() -> World {
        let lab = lab::start(LabConfig::default()).await.unwrap();
        let env = Env::enrolled(TEAM_POLICY, &TEAM);
        let broker =
            Arc::new(Broker::open(&Paths::at(env.path()), BrokerOptions::default()).unwrap());
        let fleet = Arc::new(AwsFleet::lab(&lab.endpoint_url()).await.unwrap());
        let recordings = env.path().join("broker-recordings");
        let key = RecorderKey::load_or_create(&env.path().join("broker-keys")).unwrap();
        let hub = Hub::new(SessionDeps {
            broker: broker.clone(),
            channel: fleet.channel_options(),
            fleet,
            recordings_dir: recordings.clone(),
            key: Arc::new(key),
            replace_timeout: session::REPLACE_TIMEOUT,
        });
        World {
            env,
            lab,
            hub,
            broker,
            recordings,
        }
    }
}

const SIZE: SizeData = SizeData { cols: 80, rows: 24 };

/// Everything until the end message: output bytes, texts, and the end.
async fn drain(rx: &mut mpsc::Receiver<Out>, bytes: &mut Vec<u8>) -> Option<ServerMsg> {
    while let Some(out) = rx.recv().await {
        match out {
            Out::Bytes(b) => bytes.extend(b),
            Out::Msg(m @ (ServerMsg::End { .. } | ServerMsg::Error { .. })) => return Some(m),
            Out::Msg(_) => {}
        }
    }
    None
}

/// Waits until `bytes` received so far through `rx` contain `needle`.
async fn until(rx: &mut mpsc::Receiver<Out>, bytes: &mut Vec<u8>, needle: &str) {
    while !String::from_utf8_lossy(bytes).contains(needle) {
        match rx.recv().await.unwrap() {
            Out::Bytes(b) => bytes.extend(b),
            Out::Msg(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_opens_records_and_finishes_when_the_shell_ends() {
    let mut w = World::new().await;
    let node = w.lab.nodes()[0].id.clone();
    let id = w.env.approved(&node, "rita", &["ann", "bob"]);
    let (tx, mut rx) = mpsc::channel(256);
    let code = w.env.code("rita");
    let live = w.hub.open(&id, "rita", Some(code), SIZE, tx).await.unwrap();
    live.input(b"hostname\n".to_vec()).await;
    live.input(b"exit 3\n".to_vec()).await;
    let mut bytes = Vec::new();
    let end = drain(&mut rx, &mut bytes).await.unwrap();
    let ServerMsg::End {
        reason,
        exit_code,
        seal_error,
    } = end
    else {
        panic!("{end:?}")
    };
    // The agent reports no status for a shell: exited, code unknown.
    assert_eq!(reason, CloseReason::Exited { code: None });
    assert_eq!(exit_code, None);
    assert_eq!(seal_error, None);
    assert!(String::from_utf8_lossy(&bytes).contains(&node));
    let casts: Vec<_> = std::fs::read_dir(&w.recordings)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cast"))
        .collect();
    assert_eq!(casts.len(), 1);
    let ids: Vec<String> = w.lab.nodes().into_iter().map(|n| n.id).collect();
    assert!(!ids.contains(&node));
}

fn audit(w: &World, id: &str) -> Vec<(String, String)> {
    w.broker
        .audit_for_request(id)
        .unwrap()
        .into_iter()
        .map(|e| (e.kind.to_string(), e.actor))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_the_screen_and_an_approvers_kill_ends_it() {
    let mut w = World::new().await;
    let node = w.lab.nodes()[0].id.clone();
    let id = w.env.approved(&node, "rita", &["ann", "bob"]);
    let (tx, mut rx) = mpsc::channel(256);
    let code = w.env.code("rita");
    let live = w.hub.open(&id, "rita", Some(code), SIZE, tx).await.unwrap();
    let mut bytes = Vec::new();
    live.input(b"echo before-$((40+2))\n".to_vec()).await;
    until(&mut rx, &mut bytes, "before-42").await;

    // The requester is no watcher; a reviewer is, and joins with the screen so far.
    let e = w.hub.watch(&id, "rita").await.err().unwrap();
    assert!(e.is_refusal(), "{e}");
    let mut view = w.hub.watch(&id, "rev").await.unwrap();
    assert!(matches!(&view.live, ServerMsg::Live { requester, .. } if requester == "rita"));
    assert!(String::from_utf8_lossy(&view.screen).contains("before-42"));
    live.input(b"echo after-$((40+3))\n".to_vec()).await;
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("after-43") {
        if let Out::Bytes(b) = view.rx.recv().await.unwrap() {
            seen.extend(b);
        }
    }

    // Only approvers kill; the kill is theirs in the close reason and the audit log.
    let code = w.env.code("rev");
    let e = w.hub.kill(&id, "rev", &code).await.err().unwrap();
    assert!(e.is_refusal(), "{e}");
    let wrong = w.env.wrong_code("ann");
    let e = w.hub.kill(&id, "ann", &wrong).await.err().unwrap();
    assert!(e.to_string().contains("wrong TOTP code for ann"), "{e}");
    let code = w.env.code("ann");
    w.hub.kill(&id, "ann", &code).await.unwrap();
    let end = drain(&mut rx, &mut bytes).await.unwrap();
    let ServerMsg::End { reason, .. } = end else {
        panic!("{end:?}")
    };
    assert_eq!(reason, CloseReason::Terminated { by: "ann".into() });
    let mut watcher_end = None;
    while let Ok(out) = view.rx.recv().await {
        if let Out::Msg(m @ ServerMsg::End { .. }) = out {
            watcher_end = Some(m);
            break;
        }
    }
    assert!(
        watcher_end.is_some(),
        "the watcher is told the session ended"
    );
    let stored = w.broker.get(&id).unwrap();
    assert_eq!(
        stored.close_reason,
        Some(CloseReason::Terminated { by: "ann".into() })
    );
    let events = audit(&w, &id);
    for (kind, actor) in [
        ("session_watch_started", "rev"),
        ("session_killed", "ann"),
        ("session_closed", "ann"),
        ("recording_sealed", "sombrero"),
        ("replacement_completed", "sombrero"),
    ] {
        assert!(
            events.iter().any(|(k, a)| k == kind && a == actor),
            "{kind} by {actor} missing: {events:?}"
        );
    }
    assert!(!w.lab.nodes().into_iter().any(|n| n.id == node));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_may_come_back_but_a_vanished_one_ends_the_session() {
    let mut w = World::new().await;
    let node = w.lab.nodes()[0].id.clone();
    let id = w.env.approved(&node, "rita", &["ann", "bob"]);
    let (tx, mut rx) = mpsc::channel(256);
    let code = w.env.code("rita");
    let live = w
        .hub
        .open(&id, "rita", Some(code), SIZE, tx.clone())
        .await
        .unwrap();
    let mut bytes = Vec::new();
    live.input(b"echo first-$((40+4))\n".to_vec()).await;
    until(&mut rx, &mut bytes, "first-44").await;

    // Another person cannot take the session over; its requester can come back to it.
    let (other, _other_rx) = mpsc::channel(256);
    let code = w.env.code("ann");
    assert!(
        w.hub
            .open(&id, "ann", Some(code), SIZE, other)
            .await
            .is_err()
    );
    // Coming back needs a fresh code, as opening did (taken now: the grace period is short).
    let again = w.env.code("rita");
    live.detach(&tx);
    drop(rx);
    let (tx2, mut rx2) = mpsc::channel(256);
    let e = w
        .hub
        .open(&id, "rita", None, SIZE, tx2.clone())
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("needs rita's TOTP code"), "{e}");
    let back = w
        .hub
        .open(&id, "rita", Some(again), SIZE, tx2.clone())
        .await
        .unwrap();
    assert!(matches!(
        rx2.recv().await,
        Some(Out::Msg(ServerMsg::Live { .. }))
    ));
    let Some(Out::Bytes(screen)) = rx2.recv().await else {
        panic!("no screen")
    };
    assert!(String::from_utf8_lossy(&screen).contains("first-44"));

    // Gone for good: the hub ends the session as a lost connection, seals and replaces.
    back.detach(&tx2);
    drop(rx2);
    let mut closed = None;
    for _ in 0..600 {
        let kinds = audit(&w, &id);
        if kinds
            .iter()
            .any(|(k, _)| k.starts_with("replacement_c") || k == "replacement_failed")
        {
            closed = Some(w.broker.get(&id).unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let closed = closed.expect("the session was finished");
    assert_eq!(closed.close_reason, Some(CloseReason::ConnectionLost));
    assert!(!w.lab.nodes().into_iter().any(|n| n.id == node));
    let kinds: Vec<String> = audit(&w, &id).into_iter().map(|(k, _)| k).collect();
    assert!(kinds.contains(&"recording_sealed".to_string()), "{kinds:?}");
}
