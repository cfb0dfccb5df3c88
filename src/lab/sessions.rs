//! StartSession, ResumeSession, TerminateSession and DescribeSessions.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use serde::Deserialize;
use serde_json::{Value, json};

use super::agent::{self, SessionKind};
use super::call::{ApiError, Ctx, input, max_results, page};
use super::state::{LabState, SessionRecord, SessionStatus, epoch_secs, random_hex};
use crate::fleet::COMMAND_DOCUMENT;

/// The shell document (also the default when none is given).
const SHELL_DOCUMENT: &str = "SSM-SessionManagerRunShell";
/// The one-shot command document's content (`crate::fleet::COMMAND_DOCUMENT`), served from
/// `deploy/ssm/` as an account would create it, so the lab runs what a real account would.
const COMMAND_DOCUMENT_JSON: &str = include_str!("../../deploy/ssm/PinkSombrero-Command.json");
/// Longest command line the document's `allowedPattern` admits.
const COMMAND_MAX: usize = crate::command_line::MAX_CHARS;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartInput {
    target: Option<String>,
    document_name: Option<String>,
    reason: Option<String>,
    parameters: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SessionIdInput {
    session_id: Option<String>,
}

/// Reason rules from the API reference: length 1-256 and pattern `^.{1,256}$` (Java regex,
/// where `.` matches no line terminator; length counts UTF-16 units).
pub(crate) fn check_reason(reason: &str) -> Result<(), ApiError> {
    let len = reason.encode_utf16().count();
    let terminator = reason
        .chars()
        .any(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'));
    if len == 0 || len > 256 || terminator {
        return Err(ApiError::validation(
            "Value at 'reason' failed to satisfy constraint: Member must satisfy regular \
             expression pattern: ^.{1,256}$",
        ));
    }
    Ok(())
}

fn check_document(name: &str) -> Result<(), ApiError> {
    let shape_ok = (3..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c));
    if !shape_ok {
        return Err(ApiError::validation(
            "Value at 'documentName' failed to satisfy constraint: Member must satisfy regular \
             expression pattern: ^[a-zA-Z0-9_\\-.:/]{3,128}$",
        ));
    }
    if name != SHELL_DOCUMENT && name != COMMAND_DOCUMENT {
        return Err(ApiError::bad(
            "InvalidDocument",
            format!(
                "Document {name} does not exist in the lab (only {SHELL_DOCUMENT} and \
                 {COMMAND_DOCUMENT})."
            ),
        ));
    }
    Ok(())
}

/// What the session runs: a shell, or for the command document its one `command` parameter,
/// checked against the document's `allowedPattern` (1-4096 characters, no control character).
fn session_kind(
    document: Option<&str>,
    parameters: Option<&BTreeMap<String, Vec<String>>>,
) -> Result<SessionKind, ApiError> {
    if document != Some(COMMAND_DOCUMENT) {
        return Ok(SessionKind::Shell);
    }
    let doc: Value = serde_json::from_str(COMMAND_DOCUMENT_JSON).unwrap_or_default();
    if doc["sessionType"] != "NonInteractiveCommands"
        || doc["properties"]["separateOutputStream"] != true
    {
        return Err(ApiError::bad(
            "InvalidDocument",
            format!(
                "{COMMAND_DOCUMENT} is not a NonInteractiveCommands document with separate output streams."
            ),
        ));
    }
    let bad = || {
        ApiError::bad(
            "InvalidDocument",
            format!(
                "{COMMAND_DOCUMENT} needs one 'command' parameter of 1 to {COMMAND_MAX} \
                 characters without control characters."
            ),
        )
    };
    match parameters.and_then(|p| p.get("command")).map(Vec::as_slice) {
        // The document's allowedPattern only; the agent parses the words later.
        Some([line])
            if (1..=COMMAND_MAX).contains(&line.chars().count())
                && !line.chars().any(char::is_control) =>
        {
            Ok(SessionKind::Command(line.clone()))
        }
        _ => Err(bad()),
    }
}

fn missing(field: &str) -> ApiError {
    ApiError::validation(format!(
        "Value null at '{field}' failed to satisfy constraint: Member must not be null"
    ))
}

fn required(v: Option<String>, field: &str) -> Result<String, ApiError> {
    v.ok_or_else(|| missing(field))
}

fn new_token() -> String {
    random_hex(96)
}

fn stream_url(state: &LabState, session_id: &str) -> String {
    format!(
        "ws://{}/v1/data-channel/{session_id}?role=publish_subscribe",
        state.authority
    )
}

/// StartSession: validates like AWS, registers the session and its (idle) task.
pub(crate) fn start_session(ctx: &Ctx, body: &Value) -> Result<Value, ApiError> {
    let req: StartInput = input(body)?;
    let target = required(req.target, "target")?;
    if target.is_empty() || target.chars().count() > 400 {
        return Err(ApiError::validation(
            "Value at 'target' failed to satisfy constraint: Member must have length between 1 \
             and 400",
        ));
    }
    if let Some(d) = &req.document_name {
        check_document(d)?;
    }
    if let Some(r) = &req.reason {
        check_reason(r)?;
    }
    let kind = session_kind(req.document_name.as_deref(), req.parameters.as_ref())?;
    let spec = ctx
        .state
        .lock()
        .nodes
        .iter()
        .find(|n| n.id == target && n.agent_lost.is_none())
        .map(|n| n.shell_spec())
        .ok_or_else(|| {
            ApiError::bad("TargetNotConnected", format!("{target} is not connected."))
        })?;
    let session_id = format!("{}-{}", ctx.caller, random_hex(17));
    let token = new_token();
    let agent = agent::spawn(ctx.state.clone(), session_id.clone(), spec, kind);
    ctx.state.lock().sessions.push(SessionRecord {
        id: session_id.clone(),
        target,
        owner: ctx.owner.clone(),
        reason: req.reason,
        document: req.document_name,
        start: SystemTime::now(),
        end: None,
        status: SessionStatus::Connecting,
        token: Some((token.clone(), Instant::now())),
        agent,
    });
    tracing::info!(session = %session_id, "session started");
    Ok(json!({
        "SessionId": session_id,
        "TokenValue": token,
        "StreamUrl": stream_url(ctx.state, &session_id),
    }))
}

fn not_found(id: &str) -> ApiError {
    ApiError::bad(
        "DoesNotExistException",
        format!("Session {id} does not exist or is already terminated."),
    )
}

/// ResumeSession: a new token for a live session (the old one stops working).
pub(crate) fn resume_session(ctx: &Ctx, body: &Value) -> Result<Value, ApiError> {
    let id = required(input::<SessionIdInput>(body)?.session_id, "sessionId")?;
    let token = new_token();
    {
        let mut inner = ctx.state.lock();
        let s = inner
            .sessions
            .iter_mut()
            .find(|s| s.id == id && s.status.is_active())
            .ok_or_else(|| not_found(&id))?;
        s.token = Some((token.clone(), Instant::now()));
    }
    Ok(json!({
        "SessionId": id,
        "TokenValue": token,
        "StreamUrl": stream_url(ctx.state, &id),
    }))
}

/// TerminateSession: the session is Terminated at once; its shell is killed and its data
/// channel closed right after. Terminating an ended session again succeeds, as in AWS.
pub(crate) fn terminate_session(ctx: &Ctx, body: &Value) -> Result<Value, ApiError> {
    let id = required(input::<SessionIdInput>(body)?.session_id, "sessionId")?;
    let agent = ctx
        .state
        .lock()
        .sessions
        .iter()
        .find(|s| s.id == id)
        .map(|s| s.agent.clone())
        .ok_or_else(|| not_found(&id))?;
    ctx.state.set_status(&id, SessionStatus::Terminated);
    let _ = agent.send(super::mailbox::AgentEvent::Terminate);
    Ok(json!({ "SessionId": id }))
}

#[derive(Deserialize)]
struct SessionFilter {
    key: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeInput {
    state: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
    filters: Option<Vec<SessionFilter>>,
}

fn parse_time(v: &str) -> Result<SystemTime, ApiError> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(SystemTime::from)
        .map_err(|_| {
            ApiError::bad(
                "InvalidFilterValue",
                format!("{v:?} is not a date like 2018-08-29T00:00:00Z."),
            )
        })
}

fn keep(s: &SessionRecord, f: &SessionFilter) -> Result<bool, ApiError> {
    Ok(match f.key.as_str() {
        "InvokedAfter" => s.start >= parse_time(&f.value)?,
        "InvokedBefore" => s.start <= parse_time(&f.value)?,
        "Target" => s.target == f.value,
        "Owner" => s.owner == f.value,
        "Status" => s.status.as_str() == f.value,
        "SessionId" => s.id == f.value,
        "AccessType" => f.value == "Standard",
        other => {
            return Err(ApiError::bad(
                "InvalidFilterKey",
                format!("The filter key {other:?} isn't valid."),
            ));
        }
    })
}

fn describe(s: &SessionRecord) -> Value {
    let mut v = json!({
        "SessionId": s.id,
        "Target": s.target,
        "Status": s.status.as_str(),
        "StartDate": epoch_secs(s.start),
        "DocumentName": s.document.as_deref().unwrap_or(SHELL_DOCUMENT),
        "Owner": s.owner,
        "Details": "",
        "OutputUrl": {},
        "MaxSessionDuration": "20",
        "AccessType": "Standard",
    });
    if let Some(r) = &s.reason {
        v["Reason"] = json!(r);
    }
    if let Some(end) = s.end {
        v["EndDate"] = json!(epoch_secs(end));
    }
    v
}

/// DescribeSessions: State Active (not terminated) or History (terminated), newest first.
pub(crate) fn describe_sessions(ctx: &Ctx, body: &Value) -> Result<Value, ApiError> {
    let req: DescribeInput = input(body)?;
    let active = match req.state.as_deref() {
        Some("Active") => true,
        Some("History") => false,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "Value '{other}' at 'state' failed to satisfy constraint: Member must satisfy \
                 enum value set: [Active, History]"
            )));
        }
        None => return Err(missing("state")),
    };
    let max = max_results(req.max_results, "maxResults", 1, 200, 20)?;
    let filters = req.filters.unwrap_or_default();
    let mut listed = Vec::new();
    for s in ctx.state.lock().sessions.iter().rev() {
        if s.status.is_active() != active {
            continue;
        }
        let mut ok = true;
        for f in &filters {
            ok &= keep(s, f)?;
        }
        if ok {
            listed.push(describe(s));
        }
    }
    let (items, next) = page(listed, req.next_token.as_deref(), max)?;
    let mut out = json!({ "Sessions": items });
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_rules_follow_the_api_reference() {
        assert!(check_reason("pink sombrero req-1").is_ok());
        assert!(check_reason(&"x".repeat(256)).is_ok());
        assert!(check_reason(&"é".repeat(256)).is_ok());
        assert!(check_reason(&"x".repeat(257)).is_err());
        assert!(check_reason("").is_err());
        assert!(check_reason("two\nlines").is_err());
        assert!(check_reason("cr\r").is_err());
        // One emoji is two UTF-16 units, as Java counts.
        assert!(check_reason(&"😀".repeat(129)).is_err());
    }

    #[test]
    fn the_command_document_takes_one_clean_command() {
        let params = |v: &[&str]| {
            BTreeMap::from([(
                "command".to_string(),
                v.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )])
        };
        assert_eq!(
            session_kind(Some(COMMAND_DOCUMENT), Some(&params(&["uptime"]))).unwrap(),
            SessionKind::Command("uptime".into())
        );
        for bad in [&[][..], &["a", "b"], &["two\nlines"], &[""]] {
            let err = session_kind(Some(COMMAND_DOCUMENT), Some(&params(bad))).unwrap_err();
            assert_eq!(err.code, "InvalidDocument", "{bad:?}");
        }
        let long = "x".repeat(COMMAND_MAX + 1);
        assert!(session_kind(Some(COMMAND_DOCUMENT), Some(&params(&[&long]))).is_err());
        assert!(session_kind(Some(COMMAND_DOCUMENT), None).is_err());
        assert_eq!(session_kind(None, None).unwrap(), SessionKind::Shell);
    }

    #[test]
    fn only_the_shell_and_command_documents_exist() {
        assert!(check_document(SHELL_DOCUMENT).is_ok());
        assert!(check_document(COMMAND_DOCUMENT).is_ok());
        assert_eq!(
            check_document("AWS-StartPortForwardingSession")
                .unwrap_err()
                .code,
            "InvalidDocument"
        );
        assert_eq!(
            check_document("a b").unwrap_err().code,
            "ValidationException"
        );
    }
}
