//! The handshake: answering the agent's HandshakeRequest (session type, KMS refused) and
//! taking HandshakeComplete, after which the session is ready for input.

use super::*;

impl Session {
    pub(super) fn on_handshake_request(
        &mut self,
        msg: &ClientMessage,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        self.handshake_seen = true;
        let request: HandshakeRequest = match serde_json::from_slice(&msg.payload) {
            Ok(r) => r,
            Err(e) => {
                self.fail(fx, SessionError::HandshakeUnreadable(e.to_string()));
                return;
            }
        };
        debug!(agent_version = %request.agent_version, "handshake request");
        let mut kms = false;
        let mut errors = Vec::new();
        let processed = request
            .requested_client_actions
            .iter()
            .map(|action| {
                let (status, error) = match action.action_type.as_str() {
                    "SessionType" => (action_status::SUCCESS, String::new()),
                    "KMSEncryption" => {
                        kms = true;
                        (
                            action_status::FAILED,
                            SessionError::KmsUnsupported.to_string(),
                        )
                    }
                    other => (
                        action_status::UNSUPPORTED,
                        format!("unsupported action type {other}"),
                    ),
                };
                if !error.is_empty() {
                    errors.push(error.clone());
                }
                ProcessedClientAction {
                    action_type: action.action_type.clone(),
                    action_status: status,
                    action_result: serde_json::Value::Null,
                    error,
                }
            })
            .collect();
        let response = HandshakeResponse {
            client_version: self.client_version.clone(),
            processed_client_actions: processed,
            errors: (!errors.is_empty()).then_some(errors),
        };
        // Plain data always serialises.
        let payload = serde_json::to_vec(&response).unwrap_or_default();
        self.send_sequenced(PayloadType::HandshakeResponse, payload, now, fx);
        if kms {
            self.fail(fx, SessionError::KmsUnsupported);
        }
    }

    pub(super) fn on_handshake_complete(
        &mut self,
        msg: &ClientMessage,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        match serde_json::from_slice::<HandshakeComplete>(&msg.payload) {
            Ok(done) if !done.customer_message.is_empty() => {
                fx.push(Effect::Notice(done.customer_message));
            }
            Ok(_) => {}
            Err(e) => {
                // Only the optional customer message is lost; the handshake is still complete.
                self.counters.malformed += 1;
                warn!(error = %e, "handshake complete payload unreadable");
            }
        }
        if self.phase == Phase::Handshake {
            self.become_ready(now, fx);
        }
    }

    pub(super) fn become_ready(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        self.phase = Phase::Ready;
        self.send_size(now, fx);
        while let Some(chunk) = self.pending_input.pop_front() {
            self.send_sequenced(PayloadType::Output, chunk, now, fx);
        }
    }
}
