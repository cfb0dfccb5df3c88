//! The product's own data channel client against the lab: the two halves of the protocol
//! built independently, meeting over a real websocket, a real PTY and the real SDK.

use std::sync::Arc;

use crate::common::lab::*;
use futures_util::future::BoxFuture;
use pink_sombrero::channel::client::{
    ClientOptions, Resume, ResumeError, SessionEvent, SessionHandle, SessionTarget, connect,
};
use pink_sombrero::channel::payload::SizeData;
use pink_sombrero::lab::{Lab, SessionStatus};
use tokio::sync::mpsc::Receiver;

/// ResumeSession through the real SDK, as the product does it.
struct SdkResume(aws_sdk_ssm::Client);

impl Resume for SdkResume {
    fn resume<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ResumeError>> {
        Box::pin(async move {
            let out = self
                .0
                .resume_session()
                .session_id(session_id)
                .send()
                .await?;
            Ok(out.token_value().map(str::to_string))
        })
    }
}

struct Client {
    lab: Lab,
    sid: String,
    handle: SessionHandle,
    events: Receiver<SessionEvent>,
    output: Vec<u8>,
    exit: Option<i32>,
    closed: bool,
}

async fn client_session(nodes: usize) -> Client {
    let lab = lab(nodes).await;
    let ssm = client(&lab).await;
    let node = first_node(&ssm).await;
    let (sid, token, url) = start_session(&ssm, &node).await;
    let options = ClientOptions {
        initial_size: SizeData { cols: 80, rows: 24 },
        resume: Some(Arc::new(SdkResume(ssm))),
        ..ClientOptions::default()
    };
    let (handle, events) = connect(
        SessionTarget {
            stream_url: url,
            token,
            session_id: sid.clone(),
        },
        options,
    )
    .await
    .unwrap();
    Client {
        lab,
        sid,
        handle,
        events,
        output: Vec::new(),
        exit: None,
        closed: false,
    }
}

impl Client {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    /// Reads events until `needle` is in the output (or the session ends: then panics).
    async fn until_output(&mut self, needle: &str) {
        while !self.text().contains(needle) {
            assert!(
                self.step().await,
                "ended before {needle:?}: {:?}",
                self.text()
            );
        }
    }

    async fn until_closed(&mut self) {
        while self.step().await {}
    }

    /// One event; false once the session has ended.
    async fn step(&mut self) -> bool {
        let ev = tokio::time::timeout(PATIENCE, self.events.recv())
            .await
            .expect("timed out waiting for the session");
        match ev {
            Some(SessionEvent::Output(b)) | Some(SessionEvent::Stderr(b)) => {
                self.output.extend_from_slice(&b)
            }
            Some(SessionEvent::ExitCode(c)) => self.exit = Some(c),
            Some(SessionEvent::Notice(_)) => {}
            Some(SessionEvent::Closed { .. }) => {
                self.closed = true;
                return false;
            }
            Some(SessionEvent::Failed { error }) => panic!("session failed: {error}"),
            None => return false,
        }
        true
    }

    async fn type_text(&self, s: &str) {
        self.handle.send_input(s.as_bytes().to_vec()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_output_resize_and_shell_end_without_exit_code() {
    let mut c = client_session(1).await;
    let node = c.lab.nodes()[0].id.clone();
    c.type_text("hostname\r").await;
    c.until_output(&format!("{node}\r\n")).await;
    c.handle.resize(132, 43).unwrap();
    c.type_text("stty size\r").await;
    c.until_output("43 132\r\n").await;
    c.type_text("exit 7\r").await;
    c.until_closed().await;
    assert_eq!(c.exit, None, "the agent reports no status for a shell");
    assert!(c.closed);
    assert_eq!(
        c.lab.session_status(&c.sid),
        Some(SessionStatus::Terminated)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_duplicated_and_lost_output_arrives_whole_and_in_order() {
    let mut c = client_session(1).await;
    c.type_text("stty -echo; echo ready\r").await;
    c.until_output("ready\r\n").await;
    c.lab.hooks().reorder_output(3);
    c.lab.hooks().duplicate_output(6);
    c.type_text("for i in 1 2 3 4 5 6; do echo n$i; sleep 0.1; done\r")
        .await;
    c.until_output("n6\r\n").await;
    c.lab.hooks().lose_output(2);
    c.type_text("echo found\r").await;
    c.until_output("found\r\n").await;
    let text = c.text();
    let lines: Vec<&str> = text
        .split("\r\n")
        .filter(|l| l.starts_with('n') && l.len() == 2)
        .collect();
    assert_eq!(lines, vec!["n1", "n2", "n3", "n4", "n5", "n6"]);
    let stats = c.handle.stats().counters;
    assert!(stats.out_of_order > 0, "{stats:?}");
    assert!(stats.duplicates > 0, "{stats:?}");
    c.lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_socket_resumes_through_resume_session() {
    let mut c = client_session(1).await;
    c.type_text("echo ready\r").await;
    c.until_output("ready\r\n").await;
    c.lab.hooks().drop_socket_after_output(2);
    c.type_text("for i in 1 2 3 4; do echo m$i; sleep 0.2; done\r")
        .await;
    c.until_output("m4\r\n").await;
    assert!(c.handle.stats().reconnects >= 1);
    c.type_text("echo after\r").await;
    c.until_output("after\r\n").await;
    assert_eq!(c.lab.session_status(&c.sid), Some(SessionStatus::Connected));
    c.lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_terminate_ends_the_session_on_the_lab() {
    let mut c = client_session(1).await;
    c.type_text("echo up\r").await;
    c.until_output("up\r\n").await;
    c.handle.terminate().unwrap();
    c.until_closed().await;
    assert_eq!(
        c.lab.session_status(&c.sid),
        Some(SessionStatus::Terminated)
    );
}
