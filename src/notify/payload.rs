//! What a notification's POST carries: the webhook JSON with its HMAC-SHA256 signature, or a
//! Slack incoming-webhook message with who, what, why and the command to approve.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::event::NotifyEvent;

/// Header carrying `sha256=HEX`: HMAC-SHA256 over `TIMESTAMP.BODY` with the target's secret.
pub const SIGNATURE_HEADER: &str = "x-pink-sombrero-signature";
/// Header carrying the Unix time the signature covers (reject old ones to stop replays).
pub const TIMESTAMP_HEADER: &str = "x-pink-sombrero-timestamp";
/// Header carrying the notification's id, the same on every retry: drop repeats by it.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Header naming the event (`request_created`, ...).
pub const EVENT_HEADER: &str = "x-pink-sombrero-event";

/// `sha256=HEX` of HMAC-SHA256(secret, `{timestamp}.{body}`).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length; the error arm cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A string field of the payload, without control characters and at most `max` characters
/// (Slack renders it; people wrote it).
fn field(v: &Value, max: usize) -> String {
    v.as_str()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect()
}

/// Escapes Slack's control characters (`&`, `<`, `>`) so a reason cannot ping or link.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Slack message for a payload.
pub fn slack(event: NotifyEvent, p: &Value) -> Value {
    let r = &p["request"];
    let a = &p["audit"];
    let esc = |v: &Value, max| slack_escape(&field(v, max));
    let id = esc(&r["id"], 40);
    let head = match event {
        NotifyEvent::RequestCreated => format!(
            ":rotating_light: *{}* asks for a break-glass session on `{}`",
            esc(&r["requester"], 64),
            esc(&r["target"], 64)
        ),
        NotifyEvent::Escalation => format!(
            ":alarm_clock: *{}* still waits for approvals on `{}` (escalation step {})",
            esc(&r["requester"], 64),
            esc(&r["target"], 64),
            a["data"]["step"].as_u64().unwrap_or(0)
        ),
        NotifyEvent::Test => ":white_check_mark: pink-sombrero test notification".to_string(),
        NotifyEvent::EmergencyRequested => format!(
            ":rotating_light: :rotating_light: *EMERGENCY* *{}* opens the emergency door on `{}`: it opens by itself at {} unless an approver denies it",
            esc(&r["requester"], 64),
            esc(&r["target"], 64),
            esc(&a["data"]["veto_ends_at"], 40)
        ),
        other => format!(
            "*{}* by {}{}",
            other.as_str().replace('_', " "),
            esc(&a["actor"], 64),
            if r.is_null() {
                String::new()
            } else {
                format!(" on `{}`", esc(&r["target"], 64))
            }
        ),
    };
    let mut lines = vec![head];
    if !r.is_null() {
        lines.push(format!("*request:* `{id}` ({})", esc(&r["state"], 20)));
        lines.push(format!("*why:* {}", esc(&r["reason"], 500)));
        if r["incident"].is_string() {
            lines.push(format!("*incident:* {}", esc(&r["incident"], 64)));
        }
        if r["command"].is_string() {
            lines.push(format!("*command:* `{}`", esc(&r["command"], 200)));
        }
        if matches!(
            event,
            NotifyEvent::RequestCreated | NotifyEvent::Escalation | NotifyEvent::ApprovalGiven
        ) {
            lines.push(format!(
                "approve: `sombrero approve {id}`   deny: `sombrero deny {id} --comment WHY`"
            ));
        }
        if event == NotifyEvent::EmergencyRequested {
            lines.push(format!("veto: `sombrero deny {id} --comment WHY`"));
        }
    }
    json!({ "text": lines.join("\n") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // The signed text is `TIMESTAMP.BODY`; any other key gives another signature.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key-key-key-key-key").unwrap();
        mac.update(b"42.{\"a\":1}");
        let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(sign(b"key-key-key-key-key", 42, b"{\"a\":1}"), want);
        assert_ne!(sign(b"other-key-other-key", 42, b"{\"a\":1}"), want);
    }

    #[test]
    fn slack_message_says_who_what_why_and_how_to_approve() {
        let p = json!({
            "request": {"id": "req-0a1b2c3d", "requester": "rita", "target": "i-0abc",
                        "reason": "disk full <!channel>", "state": "pending", "incident": null},
            "audit": {"actor": "rita", "data": {}},
        });
        let text = slack(NotifyEvent::RequestCreated, &p)["text"]
            .as_str()
            .unwrap()
            .to_string();
        for want in [
            "rita",
            "i-0abc",
            "disk full",
            "sombrero approve req-0a1b2c3d",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
        assert!(!text.contains("<!channel>"), "{text}");
    }
}
