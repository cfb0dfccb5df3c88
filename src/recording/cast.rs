//! asciicast v2: the header and event lines, read and written.
//!
//! One JSON header line, then one `[time, code, data]` array per line; times are seconds since
//! the start as floats and never decrease. Our metadata rides in a `pink_sombrero` header key,
//! which players ignore.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Who and what a recording is about; written into the header's `pink_sombrero` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingMeta {
    /// The approved request this session belongs to.
    pub request_id: String,
    /// Who asked for access.
    pub requester: String,
    /// Who approved it.
    pub approvers: Vec<String>,
    /// The instance or node id.
    pub target: String,
    /// The requester's stated reason.
    pub reason: String,
    /// The SSM session id.
    pub session_id: String,
    /// Terminal columns at the start.
    pub width: u16,
    /// Terminal rows at the start.
    pub height: u16,
    /// `TERM` of the recorded terminal.
    pub term: String,
    /// Shell on the target, as far as known.
    pub shell: String,
    /// Human title shown by players.
    pub title: String,
}

/// The `pink_sombrero` header object (the meta minus what the standard header already holds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SombreroHeader {
    /// The approved request.
    pub request_id: String,
    /// Who asked.
    pub requester: String,
    /// Who approved.
    pub approvers: Vec<String>,
    /// The instance.
    pub target: String,
    /// Why.
    pub reason: String,
    /// The SSM session id.
    pub session_id: String,
    /// Start time, RFC 3339 UTC.
    pub started_at: String,
    /// Program and version that wrote the file.
    pub recorder: String,
}

/// The asciicast v2 header line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always 2.
    pub version: u32,
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
    /// Unix time of the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// Title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// `TERM` and `SHELL`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Our metadata (absent in casts from other tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pink_sombrero: Option<SombreroHeader>,
}

/// The kind of an event line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `o`: bytes the terminal printed.
    Output,
    /// `i`: keystrokes sent.
    Input,
    /// `r`: a resize, data `COLSxROWS`.
    Resize,
    /// `m`: a marker with a label.
    Marker,
}

impl EventKind {
    /// The one-letter code used in the file.
    pub fn code(self) -> &'static str {
        match self {
            EventKind::Output => "o",
            EventKind::Input => "i",
            EventKind::Resize => "r",
            EventKind::Marker => "m",
        }
    }

    pub(crate) fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "o" => EventKind::Output,
            "i" => EventKind::Input,
            "r" => EventKind::Resize,
            "m" => EventKind::Marker,
            _ => return None,
        })
    }
}

/// One event line.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since the start.
    pub time: f64,
    /// What happened.
    pub kind: EventKind,
    /// Its data (text for output and input, `COLSxROWS` for resize, a label for markers).
    pub data: String,
}

impl Event {
    /// For a resize event, `(cols, rows)`.
    pub fn resize_size(&self) -> Option<(u16, u16)> {
        if self.kind != EventKind::Resize {
            return None;
        }
        let (c, r) = self.data.split_once('x')?;
        Some((c.trim().parse().ok()?, r.trim().parse().ok()?))
    }
}

/// A line that is not valid asciicast v2.
#[derive(Debug, Error, PartialEq)]
pub enum CastError {
    /// The header is not a v2 header object.
    #[error("line 1 is not an asciicast v2 header: {0}")]
    Header(String),
    /// An event line is malformed.
    #[error("line {line} is not an asciicast v2 event: {reason}")]
    Event {
        /// 1-based line number in the file.
        line: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Parses the header line.
pub fn parse_header(line: &str) -> Result<Header, CastError> {
    let h: Header = serde_json::from_str(line).map_err(|e| CastError::Header(e.to_string()))?;
    if h.version != 2 {
        return Err(CastError::Header(format!("version {} (need 2)", h.version)));
    }
    Ok(h)
}

/// Parses one event line (`line_no` only labels errors).
pub fn parse_event(line: &str, line_no: u64) -> Result<Event, CastError> {
    let bad = |reason: String| CastError::Event {
        line: line_no,
        reason,
    };
    let (time, code, data): (f64, String, String) =
        serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
    if !time.is_finite() || time < 0.0 {
        return Err(bad(format!("time {time} is not a non-negative number")));
    }
    let kind = EventKind::from_code(&code).ok_or_else(|| bad(format!("unknown code {code:?}")))?;
    Ok(Event { time, kind, data })
}

/// Formats one event line, newline included (times with microsecond precision, as asciinema).
pub fn format_event(time: f64, kind: EventKind, data: &str) -> String {
    // Serializing a &str cannot fail; fall back to an empty string rather than panic.
    let data = serde_json::to_string(data).unwrap_or_else(|_| "\"\"".to_string());
    format!("[{time:.6}, \"{}\", {data}]\n", kind.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_round_trips() {
        let line = format_event(1.5, EventKind::Output, "a\"b\u{1b}[0m\n");
        let ev = parse_event(line.trim_end(), 2).unwrap();
        assert_eq!(ev.time, 1.5);
        assert_eq!(ev.kind, EventKind::Output);
        assert_eq!(ev.data, "a\"b\u{1b}[0m\n");
    }

    #[test]
    fn rejects_bad_events() {
        assert!(parse_event("[1.0, \"x\", \"\"]", 3).is_err());
        assert!(parse_event("[-1.0, \"o\", \"\"]", 3).is_err());
        assert!(parse_event("{}", 3).is_err());
        assert!(parse_header("{\"version\":1,\"width\":1,\"height\":1}").is_err());
    }

    #[test]
    fn resize_data_parses() {
        let ev = parse_event("[0.1, \"r\", \"100x40\"]", 2).unwrap();
        assert_eq!(ev.resize_size(), Some((100, 40)));
    }
}
