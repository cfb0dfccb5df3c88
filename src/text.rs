//! The one input rule and the one output rule for human-written and foreign text.
//!
//! Input: every field a person writes (reason, incident, comment, review note, user name) is
//! refused when it holds a C0/C1 control character, DEL, a bidi override or isolate
//! (U+202A-202E, U+2066-2069) or a line/paragraph separator (U+2028/2029), or is longer than its
//! cap; a target must be `^(i|mi)-[0-9a-f]{8,17}$`. The error names the field and never echoes
//! the value, so a refusal cannot carry what it refused.
//!
//! Output: every string that reaches a terminal from the store, the policy or AWS goes through
//! [`escape_for_terminal`], which makes the same characters visible (`\x1b`, `\u202e`), so
//! text written before the input rule existed, or by AWS, cannot move the cursor or reorder a
//! line.

use std::borrow::Cow;
use std::fmt::Write as _;

use thiserror::Error;

/// Which human-written field a value is for (decides its cap and names it in errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Why a session is needed (`--reason`).
    Reason,
    /// The incident reference (`--incident`).
    Incident,
    /// An approval or denial comment (`--comment`).
    Comment,
    /// A review sign-off note (`--note`).
    Note,
    /// A user name (`--as`, an identity mapping's target).
    User,
    /// The instance or managed node id (`--target`).
    Target,
}

impl Field {
    /// The most characters the field may hold.
    pub fn max_chars(self) -> usize {
        match self {
            Field::Reason => 500,
            Field::Incident => 64,
            Field::Comment => 500,
            Field::Note => 2000,
            Field::User => 64,
            Field::Target => 20,
        }
    }

    /// The field's name as the person typed it.
    pub fn name(self) -> &'static str {
        match self {
            Field::Reason => "reason",
            Field::Incident => "incident",
            Field::Comment => "comment",
            Field::Note => "note",
            Field::User => "user name",
            Field::Target => "target",
        }
    }
}

/// Why a field was refused; the message names the field, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FieldError {
    /// Longer than the field's cap.
    #[error("the {} is too long: at most {max} characters", field.name())]
    TooLong {
        /// The field.
        field: Field,
        /// Its cap.
        max: usize,
    },
    /// A control, bidi or line-separator character.
    #[error(
        "the {} holds character {} at position {position}: control characters, bidi overrides and line separators are not allowed",
        field.name(),
        escape_char(*ch)
    )]
    Forbidden {
        /// The field.
        field: Field,
        /// The character, shown escaped.
        ch: char,
        /// Its position (1-based, in characters).
        position: usize,
    },
    /// The target is not an instance or managed node id.
    #[error(
        "the target is not an instance id: use i-<8 to 17 lowercase hex digits> (EC2) or mi-<...> (managed node)"
    )]
    BadTarget,
}

/// True for characters no human-written field may hold and no terminal should receive raw.
pub fn is_forbidden(c: char) -> bool {
    c.is_control() // C0, DEL and C1
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// Checks `value` against `field`'s rule (see the module docs).
pub fn validate_field(field: Field, value: &str) -> Result<(), FieldError> {
    let max = field.max_chars();
    // A UTF-8 character is at most 4 bytes: reject huge values without walking them.
    if value.len() > max * 4 || value.chars().count() > max {
        return Err(FieldError::TooLong { field, max });
    }
    if field == Field::Target {
        return if is_target_id(value) {
            Ok(())
        } else {
            Err(FieldError::BadTarget)
        };
    }
    match value.chars().enumerate().find(|(_, c)| is_forbidden(*c)) {
        Some((i, ch)) => Err(FieldError::Forbidden {
            field,
            ch,
            position: i + 1,
        }),
        None => Ok(()),
    }
}

/// `^(i|mi)-[0-9a-f]{8,17}$`.
fn is_target_id(s: &str) -> bool {
    let hex = s.strip_prefix("i-").or_else(|| s.strip_prefix("mi-"));
    hex.is_some_and(|h| {
        (8..=17).contains(&h.len())
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// `v` as pretty JSON safe to print to a terminal: every forbidden character (see
/// [`is_forbidden`]) inside a string is written as a `\uXXXX` escape, which JSON readers
/// decode to the same text (serde_json leaves DEL, C1 and bidi controls raw).
pub fn to_json_pretty(v: &impl serde::Serialize) -> serde_json::Result<String> {
    serde_json::to_string_pretty(v).map(json_escaped)
}

/// `v` as one line of JSON, escaped like [`to_json_pretty`].
pub fn to_json_line(v: &impl serde::Serialize) -> serde_json::Result<String> {
    serde_json::to_string(v).map(json_escaped)
}

/// `json` with forbidden characters as `\uXXXX` (they can only stand inside strings: JSON's
/// own syntax is printable ASCII; all of them are in the Basic Multilingual Plane).
fn json_escaped(json: String) -> String {
    if !json.chars().any(is_forbidden) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_forbidden(c) && c != '\n' {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// An error and its sources, `: `-joined.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// One forbidden character made visible: `\x1b` for C0 and DEL, `\u202e` above.
fn escape_char(c: char) -> String {
    let n = u32::from(c);
    if n < 0x80 {
        format!("\\x{n:02x}")
    } else {
        format!("\\u{n:04x}")
    }
}

/// `s` with every forbidden character (see [`is_forbidden`]) made visible; borrowed when
/// there is nothing to escape.
pub fn escape_for_terminal(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_forbidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_forbidden(c) {
            out.push_str(&escape_char(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`escape_for_terminal`] as an owned string (for view models that keep it).
pub fn escaped(s: &str) -> String {
    escape_for_terminal(s).into_owned()
}

/// Like [`escape_for_terminal`] for multi-line text (an error message): newlines stay.
pub fn escape_lines(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c != '\n' && is_forbidden(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&escape_for_terminal(line));
    }
    Cow::Owned(out)
}

/// At most `max` characters of `s`, escaped, with how much was cut (for echoing a value that
/// was refused or came from a peer).
pub fn bounded(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut chars = s.char_indices();
    for (_, c) in chars.by_ref().take(max) {
        out.push(c);
    }
    let mut out = escape_for_terminal(&out).into_owned();
    if let Some((at, _)) = chars.next() {
        let _ = write!(out, "...({} more bytes)", s.len() - at);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_for_terminals_escapes_controls_and_reads_back_the_same() {
        let hostile = "ok\u{202e}evil\u{7f}\u{9b}31m\u{2066}x\n\u{1b}[2J Ünï 🔥";
        let v = serde_json::json!({ "reason": hostile, "n": 1 });
        for text in [to_json_pretty(&v).unwrap(), to_json_line(&v).unwrap()] {
            assert!(
                !text.chars().any(|c| is_forbidden(c) && c != '\n'),
                "{text:?}"
            );
            assert!(
                text.contains("\\u202e") && text.contains("\\u007f") && text.contains("\\u009b")
            );
            let back: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(back, v, "a JSON reader sees the original text");
        }
        assert!(to_json_line(&v).unwrap().lines().count() == 1);
        assert!(
            to_json_line(&serde_json::json!("Ünï 🔥"))
                .unwrap()
                .contains("Ünï 🔥")
        );
    }

    #[test]
    fn fields_accept_plain_text() {
        for (field, value) in [
            (Field::Reason, "database disk is full, need to rotate logs"),
            (Field::Reason, "Ünïcödé and emoji 🔥 are fine"),
            (Field::Reason, "right-to-left text: שלום עולם"),
            (Field::Incident, "INC-1234"),
            (Field::Comment, ""),
            (Field::Note, "watched it all; only logs rotated"),
            (Field::User, "alice.smith@example"),
            (Field::Target, "i-0aaaaaaaaaaaaaaaa"),
            (Field::Target, "mi-0123456789abcdef0"),
            (Field::Target, "i-12345678"),
        ] {
            assert_eq!(validate_field(field, value), Ok(()), "{field:?} {value:?}");
        }
    }

    #[test]
    fn fields_refuse_controls_and_bidi() {
        let forged = "\x1b[s\x1b[1A\x1b[31Gi-0aaaaaaaaaaaaaaaa\x1b[u";
        for (field, value, ch, position) in [
            (Field::Reason, forged, '\x1b', 1),
            (Field::Reason, "abc\u{202E}fed", '\u{202E}', 4),
            (Field::Reason, "isolate \u{2066}x\u{2069}", '\u{2066}', 9),
            (Field::Incident, "INC-1\n", '\n', 6),
            (Field::Comment, "ok\rforged", '\r', 3),
            (Field::Comment, "tab\there", '\t', 4),
            (Field::Note, "c1 \u{9b}31m", '\u{9b}', 4),
            (Field::Note, "del\x7f", '\x7f', 4),
            (Field::Note, "nul\0", '\0', 4),
            (Field::User, "bob\u{2028}", '\u{2028}', 4),
        ] {
            let e = validate_field(field, value).unwrap_err();
            assert_eq!(
                e,
                FieldError::Forbidden {
                    field,
                    ch,
                    position
                },
                "{value:?}"
            );
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("the {} ", field.name())), "{msg}");
            assert!(
                !msg.chars().any(is_forbidden),
                "the message is safe: {msg:?}"
            );
        }
    }

    #[test]
    fn fields_have_caps() {
        for field in [
            Field::Reason,
            Field::Incident,
            Field::Comment,
            Field::Note,
            Field::User,
        ] {
            let max = field.max_chars();
            assert_eq!(validate_field(field, &"é".repeat(max)), Ok(()));
            let e = validate_field(field, &"é".repeat(max + 1)).unwrap_err();
            assert_eq!(e, FieldError::TooLong { field, max });
            assert!(e.to_string().contains(field.name()));
        }
        let huge = "i-".to_string() + &"a".repeat(1_900_000);
        assert!(matches!(
            validate_field(Field::Target, &huge),
            Err(FieldError::TooLong { .. })
        ));
    }

    #[test]
    fn targets_match_the_pattern_only() {
        for bad in [
            "",
            "i-",
            "i-1234567",
            "i-0aaaaaaaaaaaaaaaaa",
            "i-0AAAAAAAA",
            "x-12345678",
            "mi-1234567g",
            " i-12345678",
            "i-12345678\x1b",
        ] {
            let e = validate_field(Field::Target, bad).unwrap_err();
            assert!(
                e == FieldError::BadTarget || matches!(e, FieldError::TooLong { .. }),
                "{bad:?}: {e:?}"
            );
            assert!(!e.to_string().chars().any(is_forbidden), "{e}");
        }
    }

    #[test]
    fn escaping_makes_controls_visible() {
        for (raw, shown) in [
            ("plain", "plain"),
            ("\x1b[31mred", "\\x1b[31mred"),
            ("a\u{202E}b", "a\\u202eb"),
            ("bell\x07", "bell\\x07"),
            ("c1\u{9b}", "c1\\u009b"),
            ("two\nlines", "two\\x0alines"),
            ("iso\u{2066}", "iso\\u2066"),
            ("עברית ok", "עברית ok"),
        ] {
            assert_eq!(escape_for_terminal(raw), shown, "{raw:?}");
        }
        assert!(matches!(escape_for_terminal("plain"), Cow::Borrowed(_)));
        assert_eq!(escape_lines("a\x1b\nb\u{202e}"), "a\\x1b\nb\\u202e");
    }

    #[test]
    fn bounded_cuts_and_escapes() {
        assert_eq!(bounded("short", 10), "short");
        assert_eq!(bounded("\x1b[2Jabc", 4), "\\x1b[2J...(3 more bytes)");
        assert_eq!(bounded(&"x".repeat(1000), 3), "xxx...(997 more bytes)");
    }
}
