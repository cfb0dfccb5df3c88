//! A quick reading of an output event line for the command index: its time and the length of
//! its decoded data, without decoding the data.
//!
//! The index needs only two things from output: how many bytes arrived, and whether an
//! alternate-screen switch (`ESC [ ? …`) is in it. Decoding every line's JSON string to learn
//! that cost more than `verify` spends on the whole file. This reader walks the JSON string
//! once, counting decoded bytes, and gives up (`None`) whenever the answer could differ from a
//! full decode: a line not shaped as `[TIME, "o", "DATA"]`, anything JSON refuses, an ESC that
//! may begin a switch, or an ESC so near the end that a switch could continue in the next
//! event. The caller then decodes the line in full, so the index is the same either way.

/// An output event that holds no alternate-screen switch and ends with no ESC.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlainOutput {
    /// Seconds since the start.
    pub time: f64,
    /// Bytes of the decoded data (UTF-8).
    pub len: u64,
}

/// The ESC byte; JSON writes it only escaped (`\u001b`).
const ESC: u32 = 0x1b;

/// `line` (without its line ending) as a plain output event, or `None` when only a full
/// decode can tell. `tail` is how many final decoded bytes must hold no ESC (a switch cut
/// between two events begins there).
pub fn plain_output(line: &[u8], tail: usize) -> Option<PlainOutput> {
    // The whole line is valid UTF-8 or it is no event; literal runs then need no check.
    std::str::from_utf8(line).ok()?;
    let mut at = Cursor {
        bytes: line,
        pos: 0,
    };
    at.expect(b'[')?;
    let time = at.number()?;
    at.expect(b',')?;
    at.expect(b'"')?;
    at.literal(b"o\"")?;
    at.expect(b',')?;
    at.expect(b'"')?;
    let (len, last_esc) = at.string_body()?;
    at.expect(b']')?;
    at.skip_space();
    if at.pos != line.len() || !time.is_finite() || time < 0.0 {
        return None;
    }
    // A short event leaves earlier bytes in the tail; let the full decode keep it exact.
    let tail = tail as u64;
    if len < tail || last_esc.is_some_and(|esc| esc + tail >= len) {
        return None;
    }
    Some(PlainOutput { time, len })
}

/// A position in the line.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Skips white space, then takes `b`.
    fn expect(&mut self, b: u8) -> Option<()> {
        self.skip_space();
        (self.bytes.get(self.pos) == Some(&b)).then(|| self.pos += 1)
    }

    /// Takes exactly `text`.
    fn literal(&mut self, text: &[u8]) -> Option<()> {
        let rest = self.bytes.get(self.pos..)?;
        rest.starts_with(text).then(|| self.pos += text.len())
    }

    /// A JSON number, read by serde_json itself so times are parsed exactly as a full decode
    /// parses them.
    fn number(&mut self) -> Option<f64> {
        self.skip_space();
        let start = self.pos;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
        serde_json::from_slice(&self.bytes[start..self.pos]).ok()
    }

    /// The rest of a string after its opening quote, through the closing quote: the decoded
    /// length and the decoded offset of the last ESC. `None` for what JSON refuses, and for an
    /// ESC that may begin a switch.
    fn string_body(&mut self) -> Option<(u64, Option<u64>)> {
        let bytes = self.bytes;
        let mut i = self.pos;
        let mut run = i;
        let mut len = 0u64;
        let mut last_esc = None;
        loop {
            // Literal bytes decode to themselves: skip them eight at a time, then byte by byte
            // to the exact stop (runs between escapes are short, so no vector search).
            while let Some(word) = bytes.get(i..i + 8) {
                let stops = stop_mask(u64::from_le_bytes(word.try_into().ok()?));
                if stops != 0 {
                    i += (stops.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            while let Some(b) = bytes.get(i)
                && !STOP[usize::from(*b)]
            {
                i += 1;
            }
            len += (i - run) as u64;
            match *bytes.get(i)? {
                b'"' => {
                    self.pos = i + 1;
                    return Some((len, last_esc));
                }
                b'\\' => {}
                // JSON allows no raw control characters inside a string.
                _ => return None,
            }
            let escape = *bytes.get(i + 1)?;
            i += 2;
            match escape {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => len += 1,
                b'u' => {
                    let unit = hex4(bytes.get(i..i + 4)?)?;
                    i += 4;
                    let c = match unit {
                        0xD800..=0xDBFF => {
                            let pair = bytes.get(i..i + 6)?;
                            let low = hex4(&pair[2..]).filter(|_| pair.starts_with(b"\\u"))?;
                            if !(0xDC00..=0xDFFF).contains(&low) {
                                return None;
                            }
                            i += 6;
                            0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                        }
                        0xDC00..=0xDFFF => return None,
                        _ => unit,
                    };
                    if c == ESC {
                        // `ESC [ ?` may be a switch; an escaped byte after ESC could be one.
                        let next = &bytes[i..];
                        if next.starts_with(b"\\")
                            || next.starts_with(b"[?")
                            || next.starts_with(b"[\\")
                        {
                            return None;
                        }
                        last_esc = Some(len);
                    }
                    len += char::from_u32(c)?.len_utf8() as u64;
                }
                _ => return None,
            }
            run = i;
        }
    }
}

/// Bytes that end a literal run inside a JSON string: the quote, the backslash and the
/// control characters JSON refuses raw.
static STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Each byte's top bit set where `word` (little-endian) may hold a quote, a backslash or a
/// control character; the lowest set bit is always exact (borrows only run upward).
fn stop_mask(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const TOPS: u64 = 0x8080_8080_8080_8080;
    let zero_in = |v: u64| v.wrapping_sub(ONES) & !v & TOPS;
    zero_in(word ^ (ONES * u64::from(b'"')))
        | zero_in(word ^ (ONES * u64::from(b'\\')))
        | (word.wrapping_sub(ONES * 0x20) & !word & TOPS)
}

/// Four hex digits of a `\u` escape.
fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |v, b| {
        let n = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        Some(v << 4 | u32::from(n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::cast::{EventKind, format_event, parse_event};

    fn line(data: &str) -> String {
        format_event(1.25, EventKind::Output, data)
            .trim_end()
            .to_owned()
    }

    #[test]
    fn length_is_the_decoded_length() {
        for data in [
            "plain text, long enough",
            "\u{1b}[01;34mdrwxr-xr-x\u{1b}[0m root\r\n",
            "tab\there \"quoted\" back\\slash — é 😀 done",
            "\u{7f}\u{1}\u{1f} controls, escaped by the writer",
        ] {
            let got = plain_output(line(data).as_bytes(), 7).unwrap();
            assert_eq!(got.len, data.len() as u64, "{data:?}");
            assert_eq!(got.time, 1.25);
        }
    }

    #[test]
    fn gives_up_where_a_switch_could_be() {
        for data in [
            "before \u{1b}[?1049h after, long enough",
            "before \u{1b}[?25l after, long enough",
            "an ESC at the very end \u{1b}",
            "an ESC near the end \u{1b}[?10",
            "short",
        ] {
            assert_eq!(plain_output(line(data).as_bytes(), 7), None, "{data:?}");
        }
        // An escaped `[` after ESC is written by no recorder, but is still a switch.
        let odd = r#"[1.0, "o", "xxxxxxxx\u001b\u005b?1049h yyyyyyyy"]"#;
        assert_eq!(plain_output(odd.as_bytes(), 7), None);
    }

    #[test]
    fn gives_up_on_what_json_refuses_or_is_not_output() {
        for bad in [
            "[1.0, \"o\", \"lone \\ud800 surrogate here\"]",
            "[1.0, \"o\", \"low \\udc00 surrogate here\"]",
            "[1.0, \"o\", \"bad \\x escape here....\"]",
            "[1.0, \"o\", \"raw \u{1} control here..\"]",
            "[1.0, \"i\", \"input, not output....\"]",
            "[1.0, \"o\", \"trailing element......\", 1]",
            "[-1.0, \"o\", \"negative time........\"]",
            "[1.0, \"o\", \"unterminated..........",
            "[1.0, \"o\", \"fine..................\"] x",
        ] {
            assert_eq!(plain_output(bad.as_bytes(), 7), None, "{bad}");
        }
        assert_eq!(
            plain_output(b"[1.0, \"o\", \"\xff\xfe invalid utf8\"]", 7),
            None
        );
    }

    #[test]
    fn what_it_reads_a_full_decode_reads_the_same() {
        let ok = [
            "[ 2 , \"o\" , \"spaces around, long\" ]",
            "[0.5,\"o\",\"pair \\ud83d\\ude00 and \\u00e9 and \\/\"]",
        ];
        for text in ok {
            let got = plain_output(text.as_bytes(), 7).unwrap();
            let ev = parse_event(text, 2).unwrap();
            assert_eq!(
                (got.time, got.len),
                (ev.time, ev.data.len() as u64),
                "{text}"
            );
        }
    }
}
