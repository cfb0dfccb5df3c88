//! The relayed-session websocket protocol, shared by the broker and its clients.
//!
//! `GET /v1/requests/{id}/session?cols=C&rows=R` (the requester) and
//! `GET /v1/requests/{id}/watch` (approvers, reviewers) upgrade to a websocket on which:
//! - binary messages are terminal bytes: broker to client, the session's output; client to
//!   broker, keystrokes (requester only; a watcher's are refused and never reach the shell);
//! - text messages are one JSON [`ServerMsg`] or [`ClientMsg`] each, tagged by `type`.
//!
//! The broker ends every socket with [`ServerMsg::End`] (after sealing and replacing) or
//! [`ServerMsg::Error`] (nothing was opened, or the connection was refused).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::request::{CloseReason, Refusal};

/// The request header of the session upgrade that carries the requester's TOTP code (a header,
/// not the query string: URLs end up in logs).
pub const CODE_HEADER: &str = "x-pink-sombrero-totp";

/// Widest terminal any session may have: every size read off the wire (open, resize, watch,
/// TUI, CLI) goes through [`clamp_size`], so no peer can make the broker allocate a screen
/// larger than this.
pub const MAX_COLS: u16 = 1000;
/// Tallest terminal any session may have (see [`MAX_COLS`]).
pub const MAX_ROWS: u16 = 500;

/// The one clamp for terminal sizes from a peer: `(cols, rows)` into `1..=MAX_COLS` and
/// `1..=MAX_ROWS`.
pub fn clamp_size(cols: u32, rows: u32) -> (u16, u16) {
    let fit = |n: u32, max: u16| u16::try_from(n.clamp(1, u32::from(max))).unwrap_or(max);
    (fit(cols, MAX_COLS), fit(rows, MAX_ROWS))
}

/// Broker to client (text frames).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// A lifecycle step (claimed, tainted, recording, started, sealed, replaced...).
    Step {
        /// As a person should read it.
        text: String,
    },
    /// The remote standard error of a one-shot command (`open REQ -- CMD`), kept apart from
    /// its stdout (binary messages); the bytes, standard base64.
    Stderr {
        /// Base64 of the bytes.
        data: String,
    },
    /// Something to tell the person that is not session output.
    Notice {
        /// As a person should read it.
        text: String,
    },
    /// The shell is live. For a watcher, the current screen follows as one binary message.
    Live {
        /// The request.
        request: String,
        /// The target instance.
        target: String,
        /// Who holds the session.
        requester: String,
        /// Terminal columns.
        cols: u16,
        /// Terminal rows.
        rows: u16,
        /// When the approved duration ends.
        ends_at: Option<DateTime<Utc>>,
    },
    /// The session's terminal changed size (sent to watchers).
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// The session could not be opened or joined; nothing runs for this client.
    Error {
        /// What went wrong and what to do.
        message: String,
        /// True when a rule refused it (exit status 1), false for a failure.
        refused: bool,
        /// The lifecycle rule's refusal, typed, when that is what refused it.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "super::body::refusal_if_known"
        )]
        refusal: Option<Refusal>,
    },
    /// The session is over: closed, recording sealed, replacement done or requested.
    End {
        /// Why it ended.
        reason: CloseReason,
        /// The remote shell's exit status, when known.
        exit_code: Option<i32>,
        /// Why the recording could not be sealed, if it could not.
        seal_error: Option<String>,
    },
}

/// Client to broker (text frames).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// The client's terminal changed size.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// The requester ends the session.
    Terminate,
}

/// The exit status a client reports for an ended session: the shell's own status when it
/// exited with one in 0..=255, success when it exited without one, else 1.
pub fn exit_status(reason: &CloseReason, exit_code: Option<i32>) -> u8 {
    match (reason, exit_code) {
        (CloseReason::Exited { .. }, Some(code)) => u8::try_from(code).unwrap_or(1),
        (CloseReason::Exited { .. }, None) => 0,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json() {
        let m = ServerMsg::End {
            reason: CloseReason::Terminated { by: "ann".into() },
            exit_code: None,
            seal_error: None,
        };
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains(r#""type":"end""#), "{text}");
        assert_eq!(serde_json::from_str::<ServerMsg>(&text).unwrap(), m);
        let c: ClientMsg =
            serde_json::from_str(r#"{"type":"resize","cols":80,"rows":24}"#).unwrap();
        assert_eq!(c, ClientMsg::Resize { cols: 80, rows: 24 });
    }

    #[test]
    fn sizes_are_clamped_both_ways() {
        assert_eq!(clamp_size(65_535, 65_535), (MAX_COLS, MAX_ROWS));
        assert_eq!(clamp_size(0, 0), (1, 1));
        assert_eq!(clamp_size(80, 24), (80, 24));
        assert_eq!(clamp_size(u32::MAX, 7), (MAX_COLS, 7));
    }

    #[test]
    fn exit_status_follows_the_shell_only_when_it_exited() {
        assert_eq!(
            exit_status(&CloseReason::Exited { code: Some(3) }, Some(3)),
            3
        );
        assert_eq!(exit_status(&CloseReason::Exited { code: None }, None), 0);
        assert_eq!(
            exit_status(&CloseReason::Exited { code: Some(-1) }, Some(-1)),
            1
        );
        let killed = CloseReason::Terminated { by: "ann".into() };
        assert_eq!(exit_status(&killed, Some(0)), 1);
        assert_eq!(exit_status(&CloseReason::ConnectionLost, None), 1);
    }
}
