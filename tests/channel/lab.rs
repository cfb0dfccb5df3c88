//! Our data channel client against the lab's server, reached through the real aws-sdk-ssm
//! client: commands and output, resize, session end (no exit code for a shell), terminate, faults injected
//! by the lab's hooks (reordering, duplicates, lost frames, dropped socket with ResumeSession),
//! a piped bridge, and a signed upgrade.

use crate::common::lab::PATIENCE;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use pink_sombrero::channel::client::{
    ClientOptions, ResumeError, SessionEvent, SessionHandle, SessionTarget, Signing, connect,
    resume_fn,
};
use pink_sombrero::channel::grant::{GrantOutcome, enforce_grant};
use pink_sombrero::channel::payload::SizeData;
use pink_sombrero::channel::terminal::{EndReason, InputMode, LocalIo, bridge};
use pink_sombrero::lab::{Lab, SessionStatus};
use tokio::sync::mpsc;

struct Session {
    lab: Lab,
    sid: String,
    handle: SessionHandle,
    events: mpsc::Receiver<SessionEvent>,
}

/// Resume through the real SDK call, as the fleet wires it.
fn sdk_resume(ssm: aws_sdk_ssm::Client) -> ClientOptions {
    ClientOptions {
        initial_size: SizeData { cols: 80, rows: 24 },
        resume: Some(resume_fn(move |sid| {
            let ssm = ssm.clone();
            async move {
                let out = ssm
                    .resume_session()
                    .session_id(sid)
                    .send()
                    .await
                    .map_err(|e| Box::new(e) as ResumeError)?;
                Ok(out
                    .token_value()
                    .filter(|t| !t.is_empty())
                    .map(str::to_string))
            }
        })),
        ..ClientOptions::default()
    }
}

async fn open_with(lab: Lab, tweak: impl FnOnce(&mut ClientOptions)) -> Session {
    let ssm = crate::common::lab::client(&lab).await;
    let node = crate::common::lab::first_node(&ssm).await;
    let (sid, token, url) = crate::common::lab::start_session(&ssm, &node).await;
    let mut opts = sdk_resume(ssm);
    tweak(&mut opts);
    let target = SessionTarget {
        stream_url: url,
        token,
        session_id: sid.clone(),
    };
    let (handle, events) = connect(target, opts).await.unwrap();
    Session {
        lab,
        sid,
        handle,
        events,
    }
}

async fn open() -> Session {
    open_with(crate::common::lab::lab(1).await, |_| {}).await
}

impl Session {
    async fn type_line(&self, line: &str) {
        self.handle
            .send_input(format!("{line}\r").into_bytes())
            .await
            .unwrap();
    }

    /// Output until `needle` appears (other events are kept out of the way but recorded).
    async fn read_until(&mut self, needle: &str) -> String {
        let mut out = Vec::new();
        tokio::time::timeout(PATIENCE, async {
            while !String::from_utf8_lossy(&out).contains(needle) {
                match self.events.recv().await.expect("session ended") {
                    SessionEvent::Output(b) | SessionEvent::Stderr(b) => out.extend(b),
                    SessionEvent::Notice(_) | SessionEvent::ExitCode(_) => {}
                    end => panic!("session ended while waiting for {needle:?}: {end:?}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no {needle:?} in output: {:?}",
                String::from_utf8_lossy(&out)
            )
        });
        String::from_utf8_lossy(&out).to_string()
    }

    /// Waits until the lab no longer lists the session as active.
    async fn wait_inactive(&self) {
        tokio::time::timeout(PATIENCE, async {
            while self
                .lab
                .session_status(&self.sid)
                .is_some_and(|st| st.is_active())
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the lab session is still active after terminate");
    }

    /// Events until the session ends: (exit code, final event).
    async fn until_end(&mut self) -> (Option<i32>, SessionEvent) {
        let mut code = None;
        tokio::time::timeout(PATIENCE, async {
            loop {
                match self.events.recv().await.expect("no end event") {
                    SessionEvent::ExitCode(c) => code = Some(c),
                    end @ (SessionEvent::Closed { .. } | SessionEvent::Failed { .. }) => {
                        return (code, end);
                    }
                    _ => {}
                }
            }
        })
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn runs_a_command_and_reads_its_output() {
    let mut s = open().await;
    s.type_line("echo sombrero-$((40+2))").await;
    s.read_until("sombrero-42").await;
    assert_eq!(s.lab.session_status(&s.sid), Some(SessionStatus::Connected));
    assert_eq!(s.handle.stats().counters.malformed, 0);
}

#[tokio::test]
async fn initial_size_and_resize_reach_the_remote_terminal() {
    let mut s = open().await;
    s.type_line("echo size=$(stty size)").await;
    s.read_until("size=24 80").await;
    s.handle.resize(132, 43).unwrap();
    s.type_line("echo size=$(stty size)").await;
    s.read_until("size=43 132").await;
}

#[tokio::test]
async fn shell_exit_ends_the_session_without_an_exit_code_as_the_agent_does() {
    let mut s = open().await;
    s.type_line("exit 7").await;
    let (code, end) = s.until_end().await;
    // amazon-ssm-agent sends no exit code for a shell (Standard_Stream) session.
    assert_eq!(code, None);
    assert!(matches!(end, SessionEvent::Closed { .. }), "{end:?}");
    assert_eq!(
        s.lab.session_status(&s.sid),
        Some(SessionStatus::Terminated)
    );
}

#[tokio::test]
async fn terminate_ends_the_remote_session() {
    let mut s = open().await;
    s.type_line("echo ready").await;
    s.read_until("ready").await;
    s.handle.terminate().unwrap();
    let (_, end) = s.until_end().await;
    assert!(matches!(end, SessionEvent::Closed { .. }), "{end:?}");
    tokio::time::timeout(PATIENCE, async {
        while s
            .lab
            .session_status(&s.sid)
            .is_some_and(|st| st.is_active())
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the lab session is still active after terminate");
}

#[tokio::test]
async fn grant_expiry_terminates_the_remote_session() {
    let mut s = open().await;
    s.type_line("echo ready").await;
    s.read_until("ready").await;
    let end = tokio::time::Instant::now() + std::time::Duration::from_millis(200);
    let outcome = enforce_grant(s.handle.clone(), end, |_| {}).await;
    assert_eq!(outcome, GrantOutcome::Terminated);
    let (_, last) = s.until_end().await;
    assert!(matches!(last, SessionEvent::Closed { .. }), "{last:?}");
    s.wait_inactive().await;
}

#[tokio::test]
async fn reordered_duplicated_and_lost_output_arrives_once_in_order() {
    let mut s = open().await;
    s.type_line("echo warm").await;
    s.read_until("warm").await;
    let hooks = s.lab.hooks();
    hooks.reorder_output(3);
    hooks.duplicate_output(4);
    hooks.lose_output(2);
    s.type_line("for i in 1 2 3 4 5 6; do echo line-$i; sleep 0.05; done")
        .await;
    let out = s.read_until("line-6").await;
    let tail = &out[out.find("line-1").unwrap()..];
    let order: Vec<usize> = (1..=6)
        .map(|i| tail.find(&format!("line-{i}")).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{tail:?}");
    assert_eq!(tail.matches("line-3").count(), 1, "{tail:?}");
    let c = s.handle.stats().counters;
    assert!(c.duplicates > 0, "{c:?}");
    assert!(c.out_of_order > 0, "{c:?}");
}

#[tokio::test]
async fn a_dropped_socket_is_resumed_through_resume_session() {
    let mut s = open().await;
    s.type_line("X=kept; echo set").await;
    s.read_until("set").await;
    assert!(s.lab.drop_socket(&s.sid));
    // The same shell answers after the reconnect: its variable survived.
    s.type_line("echo value=$X").await;
    s.read_until("value=kept").await;
    assert_eq!(s.handle.stats().reconnects, 1);
}

#[tokio::test]
async fn a_socket_dropped_mid_output_loses_nothing() {
    let mut s = open().await;
    s.type_line("echo warm").await;
    s.read_until("warm").await;
    s.lab.hooks().drop_socket_after_output(2);
    // Far more output than two frames, so the drop lands mid-output.
    s.type_line("seq 1 5000 | tr '\\n' ' '; echo DONE-$((1+1))")
        .await;
    let out = s.read_until("DONE-2").await;
    let numbers = (1..=5000)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        out.contains(&numbers),
        "output lost or reordered across the drop"
    );
    tokio::time::timeout(PATIENCE, async {
        while s.handle.stats().reconnects == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the client never reconnected after the dropped socket");
}

#[tokio::test]
async fn piped_input_runs_and_the_session_ends_at_exit() {
    let s = open().await;
    let (keyboard, input) = mpsc::channel(8);
    let (output, mut screen) = tokio::io::duplex(1 << 20);
    let io = LocalIo {
        input,
        output,
        notices: tokio::io::sink(),
        mode: InputMode::Piped,
    };
    keyboard
        .send(b"echo piped-$((1+2))\nexit 5\n".to_vec())
        .await
        .unwrap();
    drop(keyboard);
    let end = tokio::time::timeout(PATIENCE, bridge(s.handle, s.events, io, |_| {}, |_| {}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end.exit_code, None);
    assert!(matches!(end.reason, EndReason::Closed(_)));
    let mut shown = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut screen, &mut shown)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&shown).contains("piped-3"));
}

#[tokio::test]
async fn the_lab_accepts_a_signed_upgrade() {
    let lab = crate::common::lab::lab(1).await;
    let mut s = open_with(lab, |o| {
        o.signing = Some(Signing {
            credentials: SharedCredentialsProvider::new(Credentials::new(
                "lab",
                "lab-secret",
                None,
                None,
                "test",
            )),
            region: "us-east-1".into(),
        });
    })
    .await;
    s.type_line("echo signed-ok").await;
    s.read_until("signed-ok").await;
}
