//! Tests of the command index.

use super::*;

fn ev(time: f64, kind: EventKind, data: &str) -> Event {
    Event {
        time,
        kind,
        data: data.to_string(),
    }
}

/// Events as `(kind, data)`, one per second starting at line 2.
fn run(events: &[(EventKind, &str)]) -> Vec<Command> {
    let evs: Vec<Event> = events
        .iter()
        .enumerate()
        .map(|(i, (k, d))| ev(i as f64, *k, d))
        .collect();
    index(evs.iter().enumerate().map(|(i, e)| (i as u64 + 2, e)))
}

fn texts(events: &[(EventKind, &str)]) -> Vec<(String, bool)> {
    run(events)
        .into_iter()
        .map(|c| (c.text, c.edited))
        .collect()
}

use EventKind::{Input as I, Output as O};

#[test]
fn line_editing_keys() {
    // (keystrokes, expected command text, edited)
    let table: &[(&str, &str, bool)] = &[
        ("ls -la\r", "ls -la", false),
        ("lx\x7fs\r", "ls", false),
        ("lx\x08s\r", "ls", false),
        ("rm -rf /tmp/x\x15echo hi\r", "echo hi", false),
        ("cat foo bar\x17baz\r", "cat foo baz", false),
        ("cat foo bar  \x17\x17x\r", "cat x", false),
        ("ls\tfoo\r", "lsfoo", true),
        ("\x1b[A\r", "", true),
        ("ls\x1b[D\x1b[Dx\r", "lsx", true),
        ("\x1bOA\r", "", true),
        ("\x12rm\r", "rm", true),
        ("ls\n", "ls", false),
        ("\x1b[200~echo pasted\x1b[201~\r", "echo pasted", false),
        ("caf\u{e9}\r", "caf\u{e9}", false),
    ];
    for (keys, text, edited) in table {
        let got = texts(&[(I, keys)]);
        assert_eq!(got, vec![(text.to_string(), *edited)], "keys {keys:?}");
    }
}

#[test]
fn ctrl_c_abandons_and_empty_lines_are_not_commands() {
    assert!(texts(&[(I, "rm -rf /\x03"), (I, "\r"), (I, "  \r")]).is_empty());
    assert_eq!(
        texts(&[(I, "rm -rf /\x03"), (I, "id\r")]),
        vec![("id".into(), false)]
    );
}

#[test]
fn keys_split_across_events_and_escape_sequences_split_too() {
    let got = run(&[(I, "l"), (I, "s"), (I, " -l\x1b"), (I, "[D"), (I, "\r")]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].text, "ls -l");
    assert!(got[0].edited);
    assert_eq!(got[0].line, 2, "starts at the first keystroke's line");
    assert_eq!(got[0].start, 0.0);
    assert_eq!(got[0].submitted, 4.0);
}

#[test]
fn paste_of_several_lines_is_several_commands() {
    let got = texts(&[(I, "uptime\rwhoami\r\rid\r")]);
    let want: Vec<(String, bool)> = ["uptime", "whoami", "id"]
        .iter()
        .map(|s| (s.to_string(), false))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn output_bytes_and_duration_until_the_last_output() {
    let got = run(&[
        (I, "ls\r"),
        (O, "ls\r\n"),
        (O, "a b c\r\n$ "),
        (I, "id\r"),
        (O, "uid=0\r\n"),
    ]);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].output_bytes, 4 + 9);
    assert_eq!(got[0].duration, 2.0);
    assert_eq!(got[1].output_bytes, 7);
    assert_eq!(got[1].line, 5);
    assert_eq!(got[1].duration, 1.0);
}

#[test]
fn full_screen_program_is_one_entry_and_its_keys_are_not_commands() {
    let got = run(&[
        (I, "vim /etc/hosts\r"),
        (O, "\x1b[?1049h\x1b[H"),
        (I, "ihello\x1b:wq\r"),
        (O, "~\r\n~"),
        (O, "\x1b[?10"),
        (O, "49l$ "),
        (I, "ls\r"),
    ]);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].text, "vim /etc/hosts");
    assert_eq!(got[0].kind, CommandKind::FullScreen);
    assert_eq!(
        got[0].duration, 5.0,
        "until the split exit sequence completed"
    );
    assert_eq!(got[1].text, "ls");
    assert_eq!(got[1].kind, CommandKind::Shell);
}

#[test]
fn full_screen_entered_and_left_in_one_event() {
    let got = run(&[
        (I, "less x\r"),
        (O, "\x1b[?1049hpage\x1b[?1049l"),
        (I, "id\r"),
    ]);
    assert_eq!(got[0].kind, CommandKind::FullScreen);
    assert_eq!(got[0].duration, 1.0);
    assert_eq!(got[1].text, "id");
}

#[test]
fn switches_cut_anywhere_between_two_events_are_seen() {
    let stream = "ab\x1b[?1049hpage\x1b[?47l$ ";
    for cut in 0..=stream.len() {
        let (a, b) = stream.split_at(cut);
        let got = run(&[(I, "less x\r"), (O, a), (O, b), (I, "id\r")]);
        assert_eq!(got[0].kind, CommandKind::FullScreen, "cut at {cut}");
        assert_eq!(got[1].text, "id", "cut at {cut}");
        assert_eq!(got[0].output_bytes, stream.len() as u64);
    }
    // Only a tail: nothing but the start of a switch is not one.
    let got = run(&[(I, "ls\r"), (O, "\x1b[?104"), (O, "x"), (I, "id\r")]);
    assert_eq!(got[0].kind, CommandKind::Shell);
}

#[test]
fn runaway_line_is_bounded() {
    let long = "x".repeat(MAX_COMMAND_CHARS * 2) + "\r";
    let got = texts(&[(I, &long)]);
    assert_eq!(got[0].0.len(), MAX_COMMAND_CHARS);
}

#[test]
fn index_reader_numbers_lines_and_skips_broken_ones() {
    let cast = "{\"version\":2,\"width\":80,\"height\":24}\n[0.1,\"i\",\"i\"]\nbroken\n[0.2,\"i\",\"d\\r\"]\n[0.3,\"i\",\"ls\\r\"]";
    let got = index_reader(cast.as_bytes()).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].text.as_str(), got[0].line), ("id", 2));
    assert_eq!((got[1].text.as_str(), got[1].line), ("ls", 5));
}

#[test]
fn index_reader_reads_what_parse_event_reads_and_nothing_else() {
    // CRLF endings, escaped and plain data, an escaped code (an event all the same); a
    // negative time, an unknown code and bad UTF-8 are not events.
    let mut cast = b"{\"version\":2,\"width\":80,\"height\":24}\r\n".to_vec();
    cast.extend_from_slice(b"[0.1,\"o\",\"$ \"]\r\n");
    cast.extend_from_slice(b"[0.2,\"i\",\"s\\u0075do id\\r\"]\r\n");
    cast.extend_from_slice(b"[-1.0,\"i\",\"rm x\\r\"]\n");
    cast.extend_from_slice(b"[0.3,\"q\",\"rm y\\r\"]\n");
    cast.extend_from_slice(b"[0.4,\"i\",\"\xff\\r\"]\n");
    cast.extend_from_slice(b"[0.5,\"\\u0069\",\"rm z\\r\"]\n");
    cast.extend_from_slice(b"[0.6,\"i\",\"ls\\r\"]\n");
    let got = index_reader(&cast[..]).unwrap();
    let texts: Vec<(&str, u64)> = got.iter().map(|c| (c.text.as_str(), c.line)).collect();
    assert_eq!(texts, [("sudo id", 3), ("rm z", 7), ("ls", 8)]);
    for (i, line) in cast.split(|b| *b == b'\n').enumerate().skip(1) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        let parsed = crate::recording::cast::parse_event(line, i as u64 + 1).is_ok();
        let indexed = [2usize, 3, 7, 8].contains(&(i + 1));
        if !line.is_empty() && !line.contains('\u{fffd}') {
            assert_eq!(parsed, indexed, "line {}: {line}", i + 1);
        }
    }
}

/// A cast of generated events: output with colours, escapes, multi-byte text and
/// alternate-screen switches cut at every place between two events, short events, typed
/// commands; the same every run (a fixed linear congruential sequence).
fn generated_cast() -> Vec<u8> {
    use crate::recording::cast::format_event;
    let pieces = [
        "\u{1b}[01;34mdir\u{1b}[0m file.log\r\n",
        "plain output line, long enough to count\r\n",
        "é — 😀 \"quoted\" back\\slash\t",
        "\u{1b}[?1049h",
        "\u{1b}[?1049l",
        "\u{1b}[?47h",
        "\u{1b}[?1047l",
        "\u{1b}[?25l",
        "\u{1b}",
        "[?",
        "x",
        "\u{7f}\u{1}",
    ];
    let inputs = [
        "ls -la\r",
        "sudo id\r",
        "vim /etc/hosts\r",
        ":q\r",
        "\u{3}",
        "rm -rf /tmp/x\r",
    ];
    let mut cast = b"{\"version\":2,\"width\":80,\"height\":24}\n".to_vec();
    let mut seed: u64 = 0x5eed;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize % n
    };
    let mut time = 0.0;
    for _ in 0..4000 {
        time += 0.01;
        if next(5) == 0 {
            let input = inputs[next(inputs.len())];
            cast.extend_from_slice(format_event(time, EventKind::Input, input).as_bytes());
            continue;
        }
        let mut data = String::new();
        for _ in 0..1 + next(4) {
            data.push_str(pieces[next(pieces.len())]);
        }
        // Cut the event anywhere (on a character boundary) and write the halves apart, so
        // switches straddle two events at every offset.
        let cut = next(data.len() + 1);
        let cut = (0..=cut)
            .rev()
            .find(|i| data.is_char_boundary(*i))
            .unwrap_or(0);
        for part in [&data[..cut], &data[cut..]] {
            if !part.is_empty() {
                cast.extend_from_slice(format_event(time, EventKind::Output, part).as_bytes());
            }
        }
    }
    cast
}

#[test]
fn reading_output_without_decoding_gives_the_same_index_as_decoding_it() {
    let cast = generated_cast();
    let text = std::str::from_utf8(&cast).unwrap();
    let events: Vec<(u64, Event)> = text
        .lines()
        .enumerate()
        .skip(1)
        .map(|(i, l)| {
            (
                i as u64 + 1,
                crate::recording::cast::parse_event(l, i as u64 + 1).unwrap(),
            )
        })
        .collect();
    let decoded = index(events.iter().map(|(l, e)| (*l, e)));
    let read = index_reader(&cast[..]).unwrap();
    assert!(decoded.iter().any(|c| c.kind == CommandKind::FullScreen));
    assert!(decoded.len() > 100, "{} commands", decoded.len());
    assert_eq!(read, decoded);
    // Most output lines take the quick path, or this test proves nothing about it.
    let quick = text
        .lines()
        .skip(1)
        .filter(|l| crate::recording::plain_output::plain_output(l.as_bytes(), TAIL).is_some())
        .count();
    assert!(quick > 1000, "{quick} lines read without decoding");
}
