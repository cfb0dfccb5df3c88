//! Sessions: StartSession, ResumeSession, TerminateSession, DescribeSessions.

use aws_sdk_ssm::types::{Session, SessionFilter, SessionFilterKey, SessionState as AwsState};

use super::aws::AwsFleet;
use super::error::api;
use super::{FleetError, SessionInfo, SessionState, StartedSession, TargetKind, to_utc};

/// Prefix of every reason pink-sombrero gives; rogue detection looks for it.
pub const REASON_PREFIX: &str = "pink sombrero ";

/// StartSession's `Reason`: 1 to 256 characters matching `^.{1,256}$` (service model
/// `SessionReason`), so no line terminators; we also refuse other control characters, which
/// would garble the audit trail in CloudTrail and EventBridge.
const REASON_MAX_CHARS: usize = 256;

/// A validated session reason, `pink sombrero <request-id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionReason(String);

/// The session document of one-shot commands (`deploy/ssm/PinkSombrero-Command.json`):
/// `NonInteractiveCommands` with `separateOutputStream: true`, the only session type whose
/// agent reports the exit status.
pub const COMMAND_DOCUMENT: &str = "PinkSombrero-Command";

impl SessionReason {
    /// The reason for a request; refuses ids that would break the API's rules.
    pub fn for_request(request_id: &str) -> Result<Self, FleetError> {
        let reason = format!("{REASON_PREFIX}{request_id}");
        let refuse = |why| FleetError::InvalidReason {
            reason: reason.clone(),
            why,
        };
        if request_id.trim().is_empty() {
            return Err(refuse("the request id is empty"));
        }
        if reason.chars().count() > REASON_MAX_CHARS {
            return Err(refuse(
                "longer than the 256 characters StartSession accepts",
            ));
        }
        if reason.chars().any(char::is_control) || reason.contains(['\u{2028}', '\u{2029}']) {
            return Err(refuse("contains control or line-break characters"));
        }
        Ok(SessionReason(reason))
    }

    /// The request id a reason names, if it is one of ours.
    pub fn request_id_of(reason: &str) -> Option<&str> {
        reason
            .strip_prefix(REASON_PREFIX)
            .map(str::trim)
            .filter(|id| !id.is_empty())
    }

    /// The reason text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AwsFleet {
    /// StartSession with our reason; the target is checked before any call.
    pub(crate) async fn start(
        &self,
        target: &str,
        reason: &SessionReason,
    ) -> Result<StartedSession, FleetError> {
        self.start_with(target, reason, None).await
    }

    /// StartSession with the one-shot command document and its `command` parameter.
    pub(crate) async fn start_command(
        &self,
        target: &str,
        reason: &SessionReason,
        command: &str,
    ) -> Result<StartedSession, FleetError> {
        self.start_with(target, reason, Some(command)).await
    }

    /// StartSession: the default shell document, or [`COMMAND_DOCUMENT`] running `command`.
    async fn start_with(
        &self,
        target: &str,
        reason: &SessionReason,
        command: Option<&str>,
    ) -> Result<StartedSession, FleetError> {
        TargetKind::of(target)?;
        let mut call = self
            .ssm
            .start_session()
            .target(target)
            .reason(reason.as_str());
        if let Some(command) = command {
            call = call
                .document_name(COMMAND_DOCUMENT)
                .parameters("command", vec![command.to_string()]);
        }
        let out = call.send().await.map_err(|e| api("StartSession", e))?;
        started(
            "StartSession",
            out.session_id,
            out.token_value,
            out.stream_url,
        )
    }

    /// ResumeSession: a new stream URL and token for the same session.
    pub(crate) async fn resume(&self, session_id: &str) -> Result<StartedSession, FleetError> {
        let out = self
            .ssm
            .resume_session()
            .session_id(session_id)
            .send()
            .await
            .map_err(|e| api("ResumeSession", e))?;
        started(
            "ResumeSession",
            out.session_id,
            out.token_value,
            out.stream_url,
        )
    }

    /// TerminateSession.
    pub(crate) async fn terminate(&self, session_id: &str) -> Result<(), FleetError> {
        self.ssm
            .terminate_session()
            .session_id(session_id)
            .send()
            .await
            .map_err(|e| api("TerminateSession", e))?;
        Ok(())
    }

    /// DescribeSessions in one state, every page.
    pub(crate) async fn sessions(
        &self,
        state: SessionState,
    ) -> Result<Vec<SessionInfo>, FleetError> {
        self.describe_filtered(state, None).await
    }

    /// DescribeSessions in state Active with filter `Target` = `target`, every page.
    pub(crate) async fn sessions_on(&self, target: &str) -> Result<Vec<SessionInfo>, FleetError> {
        TargetKind::of(target)?;
        let filter = SessionFilter::builder()
            .key(SessionFilterKey::TargetId)
            .value(target)
            .build()
            .map_err(|e| FleetError::Api {
                op: "DescribeSessions",
                code: None,
                message: e.to_string(),
            })?;
        let found = self
            .describe_filtered(SessionState::Active, Some(filter))
            .await?;
        // A service that ignored the filter must not hide a session elsewhere as "none here",
        // nor make another node's session block this one: keep exactly this target's.
        Ok(found.into_iter().filter(|s| s.target == target).collect())
    }

    async fn describe_filtered(
        &self,
        state: SessionState,
        filter: Option<SessionFilter>,
    ) -> Result<Vec<SessionInfo>, FleetError> {
        let aws_state = match state {
            SessionState::Active => AwsState::Active,
            SessionState::History => AwsState::History,
        };
        let sessions: Vec<Session> = self
            .ssm
            .describe_sessions()
            .state(aws_state)
            .set_filters(filter.map(|f| vec![f]))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<_, _>>()
            .await
            .map_err(|e| api("DescribeSessions", e))?;
        Ok(sessions
            .iter()
            .filter_map(|s| {
                Some(SessionInfo {
                    session_id: s.session_id()?.to_owned(),
                    owner: s.owner().map(str::to_owned),
                    target: s.target().unwrap_or_default().to_owned(),
                    reason: s.reason().map(str::to_owned),
                    start: s.start_date().and_then(to_utc),
                    end: s.end_date().and_then(to_utc),
                    status: s.status().map_or("Unknown", |x| x.as_str()).to_owned(),
                    state,
                })
            })
            .collect())
    }
}

/// The three fields a session needs, or a clear error naming what is missing.
fn started(
    op: &'static str,
    session_id: Option<String>,
    token: Option<String>,
    stream_url: Option<String>,
) -> Result<StartedSession, FleetError> {
    Ok(StartedSession {
        session_id: session_id.ok_or(FleetError::Incomplete {
            op,
            what: "a session id",
        })?,
        token: token.ok_or(FleetError::Incomplete {
            op,
            what: "a token",
        })?,
        stream_url: stream_url.ok_or(FleetError::Incomplete {
            op,
            what: "a stream URL",
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_the_request() {
        let r = SessionReason::for_request("req-42").unwrap();
        assert_eq!(r.as_str(), "pink sombrero req-42");
        assert_eq!(SessionReason::request_id_of(r.as_str()), Some("req-42"));
        assert_eq!(SessionReason::request_id_of("debugging prod"), None);
        assert_eq!(SessionReason::request_id_of("pink sombrero "), None);
    }

    #[test]
    fn reason_respects_api_limits() {
        let max_id = "x".repeat(256 - REASON_PREFIX.len());
        assert_eq!(
            SessionReason::for_request(&max_id)
                .unwrap()
                .as_str()
                .chars()
                .count(),
            256
        );
        let too_long = "x".repeat(256 - REASON_PREFIX.len() + 1);
        for bad in [
            "",
            "  ",
            too_long.as_str(),
            "a\nb",
            "a\rb",
            "a\u{2028}b",
            "a\tb",
        ] {
            assert!(
                matches!(
                    SessionReason::for_request(bad),
                    Err(FleetError::InvalidReason { .. })
                ),
                "{bad:?} accepted"
            );
        }
        // Multi-byte characters count as one each, as the service counts them.
        let wide = "é".repeat(256 - REASON_PREFIX.len());
        assert!(SessionReason::for_request(&wide).is_ok());
    }
}
