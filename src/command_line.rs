//! One-shot command lines (`sombrero request --command`, `sombrero open REQ -- CMD`): checked
//! like every other request field (bounded, no control characters), quoted from argv into the
//! one string the `PinkSombrero-Command` document carries, and split back into words the way
//! the SSM agent does (shlex: blanks separate, `'...'` is literal, `"..."` and `\` escape).

use thiserror::Error;

/// Longest command line, in characters (the document's `allowedPattern` admits 4096).
pub const MAX_CHARS: usize = 4096;

/// Why a command line is refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CommandLineError {
    /// Empty, or only blanks.
    #[error("the command is empty")]
    Empty,
    /// Longer than [`MAX_CHARS`].
    #[error("the command is {0} characters long; at most {MAX_CHARS} are allowed")]
    TooLong(usize),
    /// A control character (newline, escape, ...) would garble what approvers read.
    #[error("the command contains a control character ({0:?}); write it on one line")]
    Control(char),
    /// A quote is never closed.
    #[error("the command has an unterminated quote or a trailing backslash")]
    Unterminated,
}

/// Checks a command line and returns its words.
pub fn check(line: &str) -> Result<Vec<String>, CommandLineError> {
    let n = line.chars().count();
    if n > MAX_CHARS {
        return Err(CommandLineError::TooLong(n));
    }
    if let Some(c) = line.chars().find(|c| c.is_control()) {
        return Err(CommandLineError::Control(c));
    }
    let words = split(line).ok_or(CommandLineError::Unterminated)?;
    if words.is_empty() {
        return Err(CommandLineError::Empty);
    }
    Ok(words)
}

/// Splits into words; `None` for an unterminated quote or a trailing backslash.
pub fn split(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => w.push(chars.next()?),
                        c => w.push(c),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).push(chars.next()?),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Some(words)
}

/// Joins argv into one line that [`split`] turns back into the same words.
pub fn join(args: &[String]) -> String {
    args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_the_agent_does() {
        let w = |s: &str| split(s).unwrap();
        assert_eq!(w("ls -l  /tmp"), ["ls", "-l", "/tmp"]);
        assert_eq!(
            w(r#"sh -c 'echo out; echo err >&2; exit 3'"#),
            ["sh", "-c", "echo out; echo err >&2; exit 3"]
        );
        assert_eq!(
            w(r#"echo "a \"b\"" c\ d 'it'\''s'"#),
            ["echo", r#"a "b""#, "c d", "it's"]
        );
        assert_eq!(w("echo ''"), ["echo", ""]);
        assert_eq!(split("echo 'open"), None);
        assert_eq!(split("echo \\"), None);
    }

    #[test]
    fn join_round_trips_through_split() {
        let argv: Vec<String> = [
            "sh",
            "-c",
            "echo out; echo 'err' >&2; exit 3",
            "",
            "a b",
            "x=1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let line = join(&argv);
        assert_eq!(split(&line).unwrap(), argv);
        assert_eq!(join(&["uptime".to_string()]), "uptime");
    }

    #[test]
    fn checks_are_bounded_and_refuse_control_characters() {
        assert_eq!(check("uptime").unwrap(), ["uptime"]);
        assert_eq!(check("   "), Err(CommandLineError::Empty));
        assert_eq!(check("a\nb"), Err(CommandLineError::Control('\n')));
        assert_eq!(
            check("a\u{1b}[2J"),
            Err(CommandLineError::Control('\u{1b}'))
        );
        assert_eq!(check("echo 'x"), Err(CommandLineError::Unterminated));
        assert!(check(&"x".repeat(MAX_CHARS)).is_ok());
        assert_eq!(
            check(&"x".repeat(MAX_CHARS + 1)),
            Err(CommandLineError::TooLong(MAX_CHARS + 1))
        );
    }
}
