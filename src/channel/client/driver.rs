//! The session task: owns the socket and the session core, feeds it input, control and
//! frames, performs its effects, and reconnects (ResumeSession) when the socket is lost.

use super::*;

/// Whether the driver loop goes on.
pub(super) enum Flow {
    Continue,
    /// Socket lost: reconnect or end.
    Lost(String),
    /// Session over: close the socket, report this, stop.
    End(SessionEvent),
}

/// The session task: owns the socket and the session core.
pub(super) struct Driver {
    pub(super) session: Session,
    pub(super) target: SessionTarget,
    pub(super) options: ClientOptions,
    pub(super) client_id: String,
    pub(super) events: mpsc::Sender<SessionEvent>,
    pub(super) input: mpsc::Receiver<Vec<u8>>,
    pub(super) control: mpsc::UnboundedReceiver<Control>,
    pub(super) stats: Arc<Mutex<Stats>>,
    pub(super) terminate_by: Option<Instant>,
    pub(super) reconnects: u64,
    /// When the server last sent anything (any websocket message).
    pub(super) last_inbound: Instant,
    /// When the session task started (for the handshake deadline).
    pub(super) started: Instant,
    /// Reconnect attempts since the server last sent a binary frame.
    pub(super) reconnect_streak: u32,
    /// Why the connection was last lost or a reconnect failed.
    pub(super) last_loss: String,
    /// Frames were fed to the socket but not flushed yet.
    pub(super) unflushed: bool,
    /// Inside a read batch: flushing is left to the end of the batch.
    pub(super) batching: bool,
}

/// Delay before reconnect attempt `n` (from 0): uniform in [base, 2 base), doubled per attempt.
pub(super) fn backoff(n: u32) -> Duration {
    let base = limits::RECONNECT_BASE.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(base..2 * base)) * 2u32.saturating_pow(n)
}

/// The end reported when nobody listens to events any more.
pub(super) fn abandoned() -> SessionEvent {
    SessionEvent::Closed {
        reason: "abandoned by the caller".into(),
    }
}

impl Driver {
    pub(super) async fn run(mut self, mut ws: Ws) {
        let mut resend = tokio::time::interval(limits::RESEND_TICK);
        let mut ping = tokio::time::interval_at(
            tokio::time::Instant::now() + limits::PING_INTERVAL,
            limits::PING_INTERVAL,
        );
        let mut input_open = true;
        let mut control_open = true;
        loop {
            let accepts = input_open && self.session.accepts_input();
            let flow = tokio::select! {
                msg = ws.next() => self.on_socket_batch(&mut ws, msg).await,
                data = self.input.recv(), if accepts => match data {
                    Some(data) => {
                        // A resize queued before this input must reach the agent first.
                        let mut flow = Flow::Continue;
                        while matches!(flow, Flow::Continue)
                            && let Ok(ctl) = self.control.try_recv()
                        {
                            flow = self.on_control(&mut ws, ctl).await;
                        }
                        if matches!(flow, Flow::Continue) {
                            let fx = self.session.send_input(&data, Instant::now());
                            self.apply(&mut ws, fx).await
                        } else {
                            flow
                        }
                    }
                    None => {
                        input_open = false;
                        Flow::Continue
                    }
                },
                ctl = self.control.recv(), if control_open => match ctl {
                    Some(ctl) => self.on_control(&mut ws, ctl).await,
                    None => {
                        control_open = false;
                        Flow::Continue
                    }
                },
                _ = resend.tick() => {
                    let now = Instant::now();
                    let fx = self.session.tick(now);
                    match self.apply(&mut ws, fx).await {
                        Flow::Continue => self
                            .check_handshake(now)
                            .or_else(|| self.check_stall(now))
                            .unwrap_or_else(|| self.check_terminate(now)),
                        other => other,
                    }
                }
                _ = ping.tick() => match ws.send(Message::Ping(limits::PING_PAYLOAD.into())).await {
                    Ok(()) => Flow::Continue,
                    Err(e) => Flow::Lost(e.to_string()),
                },
            };
            self.publish_stats();
            match flow {
                Flow::Continue => {}
                // The service already closed the channel: the socket going away ends the
                // linger, not the session's chance to resume.
                Flow::Lost(why) if self.session.phase() == Phase::Closing => {
                    debug!(reason = %why, "socket gone after channel_closed");
                    let fx = self.session.close_now();
                    let reason = fx
                        .into_iter()
                        .find_map(|e| match e {
                            Effect::Closed(r) => Some(r),
                            _ => None,
                        })
                        .unwrap_or_default();
                    self.finish(None, SessionEvent::Closed { reason }).await;
                    return;
                }
                Flow::Lost(why) => match self.reconnect(&why).await {
                    Ok(new_ws) => ws = new_ws,
                    Err(end) => {
                        self.finish(None, end).await;
                        return;
                    }
                },
                Flow::End(end) => {
                    self.finish(Some(ws), end).await;
                    return;
                }
            }
        }
    }

    pub(super) fn publish_stats(&self) {
        if let Ok(mut s) = self.stats.lock() {
            *s = Stats {
                counters: self.session.counters(),
                reconnects: self.reconnects,
            };
        }
    }

    pub(super) async fn finish(&mut self, ws: Option<Ws>, end: SessionEvent) {
        self.publish_stats();
        if let Some(mut ws) = ws {
            // Best effort and bounded: the peer may already be gone or stop reading.
            let _ = tokio::time::timeout(limits::TERMINATE_GRACE, ws.close(None)).await;
        }
        info!(event = ?end, "data channel session ended");
        let _ = self.events.send(end).await;
    }

    pub(super) async fn on_socket(
        &mut self,
        ws: &mut Ws,
        msg: Option<Result<Message, tungstenite::Error>>,
    ) -> Flow {
        if let Some(Ok(_)) = &msg {
            self.last_inbound = Instant::now();
        }
        match msg {
            Some(Ok(Message::Binary(bytes))) => {
                self.reconnect_streak = 0;
                let fx = self.session.on_frame(&bytes, Instant::now());
                self.apply(ws, fx).await
            }
            Some(Ok(Message::Ping(_))) => {
                // tungstenite queued the pong; flushing sends it now.
                match ws.flush().await {
                    Ok(()) => Flow::Continue,
                    Err(e) => Flow::Lost(e.to_string()),
                }
            }
            Some(Ok(Message::Text(t))) => {
                debug!(len = t.len(), "text frame from server ignored");
                Flow::Continue
            }
            Some(Ok(Message::Pong(_) | Message::Frame(_))) => Flow::Continue,
            Some(Ok(Message::Close(frame))) => Flow::Lost(format!("server closed: {frame:?}")),
            Some(Err(e)) => Flow::Lost(e.to_string()),
            None => Flow::Lost("connection closed".into()),
        }
    }

    pub(super) async fn on_control(&mut self, ws: &mut Ws, ctl: Control) -> Flow {
        let now = Instant::now();
        match ctl {
            Control::Resize(size) => {
                let fx = self.session.resize(size, now);
                self.apply(ws, fx).await
            }
            Control::Terminate => {
                // Input queued before the terminate request goes first.
                while self.session.accepts_input() {
                    let Ok(data) = self.input.try_recv() else {
                        break;
                    };
                    let fx = self.session.send_input(&data, now);
                    if let flow @ (Flow::Lost(_) | Flow::End(_)) = self.apply(ws, fx).await {
                        return flow;
                    }
                }
                let fx = self.session.terminate(now);
                if fx.is_empty() {
                    return Flow::End(SessionEvent::Closed {
                        reason: "terminated by the client before the session started".into(),
                    });
                }
                self.terminate_by = Some(now + limits::TERMINATE_GRACE);
                self.apply(ws, fx).await
            }
        }
    }

    /// The agent never completed the handshake: the session cannot start.
    pub(super) fn check_handshake(&self, now: Instant) -> Option<Flow> {
        let waited = now.saturating_duration_since(self.started);
        (self.session.phase() == Phase::Handshake && waited >= self.options.handshake_timeout).then(
            || {
                Flow::End(SessionEvent::Failed {
                    error: format!(
                        "the agent did not complete the session handshake within {}s; check \
                         that the SSM agent on the target is running and up to date",
                        waited.as_secs()
                    ),
                })
            },
        )
    }

    /// Input is waiting but the server has been silent too long: treat the socket as lost.
    pub(super) fn check_stall(&self, now: Instant) -> Option<Flow> {
        let silent = now.saturating_duration_since(self.last_inbound);
        (self.session.unacked_len() > 0 && silent >= self.options.stall_timeout).then(|| {
            Flow::Lost(format!(
                "nothing received for {}s while input waits for an ack",
                silent.as_secs()
            ))
        })
    }

    /// After a terminate request: close once the flag is acked or the grace time is over.
    pub(super) fn check_terminate(&self, now: Instant) -> Flow {
        match self.terminate_by {
            Some(by) if self.session.unacked_len() == 0 || now >= by => {
                Flow::End(SessionEvent::Closed {
                    reason: "terminated by the client".into(),
                })
            }
            _ => Flow::Continue,
        }
    }

    /// Performs effects: frames go to the socket (one flush), the rest to the caller in order.
    pub(super) async fn apply(&mut self, ws: &mut Ws, fx: Vec<Effect>) -> Flow {
        let mut wrote = false;
        let mut events = Vec::new();
        for effect in fx {
            match effect {
                Effect::Send(bytes) => {
                    if let Err(e) = ws.feed(Message::Binary(bytes.into())).await {
                        return Flow::Lost(e.to_string());
                    }
                    wrote = true;
                }
                Effect::Output(b) => events.push(SessionEvent::Output(b)),
                Effect::Stderr(b) => events.push(SessionEvent::Stderr(b)),
                Effect::ExitCode(c) => events.push(SessionEvent::ExitCode(c)),
                Effect::Notice(n) => events.push(SessionEvent::Notice(n)),
                Effect::Closed(reason) => events.push(SessionEvent::Closed { reason }),
                Effect::Failed(e) => events.push(SessionEvent::Failed {
                    error: e.to_string(),
                }),
            }
        }
        self.unflushed |= wrote;
        if !self.batching
            && let Err(e) = self.flush(ws).await
        {
            return Flow::Lost(e.to_string());
        }
        for event in events {
            if matches!(
                event,
                SessionEvent::Closed { .. } | SessionEvent::Failed { .. }
            ) {
                return Flow::End(event);
            }
            let event = match self.events.try_send(event) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Full(event)) => event,
                Err(mpsc::error::TrySendError::Closed(_)) => return Flow::End(abandoned()),
            };
            // The caller is behind: acks already fed must not wait for it, or the agent
            // would resend what we have.
            if let Err(e) = self.flush(ws).await {
                return Flow::Lost(e.to_string());
            }
            if self.events.send(event).await.is_err() {
                return Flow::End(abandoned());
            }
        }
        Flow::Continue
    }

    pub(super) async fn flush(&mut self, ws: &mut Ws) -> Result<(), tungstenite::Error> {
        if self.unflushed {
            ws.flush().await?;
            self.unflushed = false;
        }
        Ok(())
    }

    /// Handles one socket message plus those already buffered behind it, then writes all
    /// their acks with one flush (one syscall per batch instead of per frame).
    pub(super) async fn on_socket_batch(
        &mut self,
        ws: &mut Ws,
        msg: Option<Result<Message, tungstenite::Error>>,
    ) -> Flow {
        self.batching = true;
        let mut flow = self.on_socket(ws, msg).await;
        for _ in 1..limits::READ_BATCH {
            if !matches!(flow, Flow::Continue) {
                break;
            }
            match ws.next().now_or_never() {
                Some(msg) => flow = self.on_socket(ws, msg).await,
                None => break,
            }
        }
        self.batching = false;
        match (flow, self.flush(ws).await) {
            (Flow::Continue, Err(e)) => Flow::Lost(e.to_string()),
            (flow, _) => flow,
        }
    }

    /// Resumes the session and dials the original StreamUrl again, with backoff.
    pub(super) async fn reconnect(&mut self, why: &str) -> Result<Ws, SessionEvent> {
        warn!(reason = why, "data channel connection lost");
        self.last_loss = why.to_string();
        let Some(resume) = self.options.resume.clone() else {
            return Err(SessionEvent::Failed {
                error: format!("the data channel connection was lost ({why})"),
            });
        };
        if self.terminate_by.is_some() {
            return Err(SessionEvent::Closed {
                reason: "terminated by the client".into(),
            });
        }
        // One notice per outage, not per attempt.
        let notice = SessionEvent::Notice("connection lost; reconnecting".into());
        if self.reconnect_streak == 0 && self.events.send(notice).await.is_err() {
            return Err(abandoned());
        }
        // The budget spans reconnects that "succeed" but die before the server sends a
        // single frame (e.g. it refuses the open frame); a frame resets it.
        while self.reconnect_streak < limits::RECONNECT_ATTEMPTS {
            let attempt = self.reconnect_streak;
            self.reconnect_streak += 1;
            tokio::time::sleep(backoff(attempt)).await;
            let token = match resume.resume(&self.target.session_id).await {
                Ok(Some(token)) => token,
                Ok(None) => {
                    return Err(SessionEvent::Closed {
                        reason: "the session can no longer be resumed (timed out or ended)".into(),
                    });
                }
                Err(e) => {
                    warn!(attempt, error = %e, "ResumeSession failed");
                    self.last_loss = e.to_string();
                    continue;
                }
            };
            match dial(&self.target, &token, &self.client_id, &self.options).await {
                Ok(mut ws) => {
                    self.reconnects += 1;
                    self.last_inbound = Instant::now();
                    info!(attempt, "data channel reconnected");
                    let fx = self.session.on_reconnected(Instant::now());
                    match self.apply(&mut ws, fx).await {
                        Flow::Continue => return Ok(ws),
                        Flow::End(end) => return Err(end),
                        Flow::Lost(e) => self.last_loss = e,
                    }
                }
                Err(e) => {
                    warn!(attempt, error = %e, "reconnect failed");
                    self.last_loss = e.to_string();
                }
            }
        }
        let last = &self.last_loss;
        Err(SessionEvent::Failed {
            error: format!(
                "the data channel connection was lost and {} reconnect attempts failed \
                 (last: {last})",
                limits::RECONNECT_ATTEMPTS
            ),
        })
    }
}
