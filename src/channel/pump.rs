//! One pump for a live session's events, whoever shows them (the local terminal, the TUI's
//! pane, the daemon's clients): output, standard error, the exit status and notices go to an
//! [`Outlet`] until the session ends, while whatever else the outlet waits on (keystrokes, a
//! timer, a client coming back) is woken alongside.

use std::future::Future;

use tokio::sync::mpsc;

use super::client::SessionEvent;

/// How the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The service closed the channel or the client terminated it; the service's text.
    Closed(String),
    /// The session could not continue; what went wrong.
    Failed(String),
}

/// Result of a bridged session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    /// The remote shell's exit status, when the agent reported it.
    pub exit_code: Option<i32>,
    /// Why the session ended.
    pub reason: EndReason,
}

/// Where a session's events go, and what else the pump waits for.
pub trait Outlet {
    /// What [`Outlet::wake`] resolves to.
    type Wake;
    /// Why the pump stops before the session ends (the outlet cannot show it any more).
    type Error;

    /// Something the pump waits for besides the session's events. Cancel-safe: it is dropped
    /// whenever an event comes first.
    fn wake(&mut self) -> impl Future<Output = Self::Wake>;
    /// Acts on what [`Outlet::wake`] returned.
    fn woken(&mut self, wake: Self::Wake) -> impl Future<Output = Result<(), Self::Error>>;
    /// Remote output.
    fn output(&mut self, bytes: Vec<u8>) -> impl Future<Output = Result<(), Self::Error>>;
    /// A command's standard error.
    fn stderr(&mut self, bytes: Vec<u8>) -> impl Future<Output = Result<(), Self::Error>>;
    /// The remote exit status (the pump keeps it for the end too).
    fn exit_code(&mut self, code: i32) -> impl Future<Output = Result<(), Self::Error>>;
    /// A notice about the session (not session output).
    fn notice(&mut self, text: String) -> impl Future<Output = Result<(), Self::Error>>;
}

/// Carries `events` to `outlet` until the session ends; returns how it ended.
pub async fn pump<O: Outlet>(
    events: &mut mpsc::Receiver<SessionEvent>,
    outlet: &mut O,
) -> Result<SessionEnd, O::Error> {
    let mut exit_code = None;
    loop {
        let event = match tokio::select! {
            event = events.recv() => Ok(event),
            wake = outlet.wake() => Err(wake),
        } {
            Ok(event) => event,
            Err(wake) => {
                outlet.woken(wake).await?;
                continue;
            }
        };
        let reason = match event {
            Some(SessionEvent::Output(bytes)) => {
                outlet.output(bytes).await?;
                continue;
            }
            Some(SessionEvent::Stderr(bytes)) => {
                outlet.stderr(bytes).await?;
                continue;
            }
            Some(SessionEvent::ExitCode(code)) => {
                exit_code = Some(code);
                outlet.exit_code(code).await?;
                continue;
            }
            Some(SessionEvent::Notice(text)) => {
                outlet.notice(text).await?;
                continue;
            }
            Some(SessionEvent::Closed { reason }) => EndReason::Closed(reason),
            Some(SessionEvent::Failed { error }) => EndReason::Failed(error),
            // The session task vanished without saying how the session ended.
            None => EndReason::Failed("the session task stopped unexpectedly".into()),
        };
        return Ok(SessionEnd { exit_code, reason });
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// Writes down what it is given, in order; wakes once with `wake`, then never again.
    #[derive(Default)]
    struct Log {
        seen: Vec<String>,
        wake: Option<&'static str>,
    }

    impl Outlet for Log {
        type Wake = &'static str;
        type Error = Infallible;

        async fn wake(&mut self) -> &'static str {
            match self.wake.take() {
                Some(w) => w,
                None => std::future::pending().await,
            }
        }
        async fn woken(&mut self, wake: &'static str) -> Result<(), Infallible> {
            self.seen.push(format!("woken {wake}"));
            Ok(())
        }
        async fn output(&mut self, bytes: Vec<u8>) -> Result<(), Infallible> {
            self.seen
                .push(format!("out {}", String::from_utf8_lossy(&bytes)));
            Ok(())
        }
        async fn stderr(&mut self, bytes: Vec<u8>) -> Result<(), Infallible> {
            self.seen
                .push(format!("err {}", String::from_utf8_lossy(&bytes)));
            Ok(())
        }
        async fn exit_code(&mut self, code: i32) -> Result<(), Infallible> {
            self.seen.push(format!("exit {code}"));
            Ok(())
        }
        async fn notice(&mut self, text: String) -> Result<(), Infallible> {
            self.seen.push(format!("notice {text}"));
            Ok(())
        }
    }

    async fn pumped(events: Vec<SessionEvent>, wake: Option<&'static str>) -> (SessionEnd, Log) {
        let (tx, mut rx) = mpsc::channel(16);
        for e in events {
            tx.send(e).await.ok();
        }
        drop(tx);
        let mut log = Log {
            wake,
            ..Log::default()
        };
        let Ok(end) = pump(&mut rx, &mut log).await;
        (end, log)
    }

    #[tokio::test]
    async fn events_reach_the_outlet_in_order_until_the_end_which_keeps_the_exit_code() {
        let events = vec![
            SessionEvent::Output(b"a".to_vec()),
            SessionEvent::Stderr(b"b".to_vec()),
            SessionEvent::Notice("n".into()),
            SessionEvent::ExitCode(7),
            SessionEvent::Closed {
                reason: "bye".into(),
            },
            SessionEvent::Output(b"after the end".to_vec()),
        ];
        let (end, log) = pumped(events, None).await;
        assert_eq!(
            end,
            SessionEnd {
                exit_code: Some(7),
                reason: EndReason::Closed("bye".into())
            }
        );
        assert_eq!(log.seen, ["out a", "err b", "notice n", "exit 7"]);
    }

    #[tokio::test]
    async fn a_vanished_session_task_ends_as_failed() {
        let (end, _) = pumped(vec![], None).await;
        assert_eq!(
            end,
            SessionEnd {
                exit_code: None,
                reason: EndReason::Failed("the session task stopped unexpectedly".into())
            }
        );
        let (end, _) = pumped(
            vec![SessionEvent::Failed {
                error: "reset".into(),
            }],
            None,
        )
        .await;
        assert_eq!(end.reason, EndReason::Failed("reset".into()));
    }

    #[tokio::test]
    async fn what_the_outlet_waits_on_is_acted_on_while_the_session_is_quiet() {
        let (tx, mut rx) = mpsc::channel(1);
        let mut log = Log {
            wake: Some("key"),
            ..Log::default()
        };
        let ending = async {
            tokio::task::yield_now().await;
            tx.send(SessionEvent::Closed {
                reason: "bye".into(),
            })
            .await
            .ok();
        };
        let (end, ()) = tokio::join!(pump(&mut rx, &mut log), ending);
        assert!(end.is_ok());
        assert_eq!(log.seen, ["woken key"]);
    }
}
