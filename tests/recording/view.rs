//! The player view drawn into ratatui's TestBackend: terminal contents, status, integrity
//! badge, progress, help, search prompt and input overlay.

use std::io::Cursor;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use pink_sombrero::recording::Integrity;
use pink_sombrero::recording::flags::default_rules;
use pink_sombrero::recording::player::{Player, PlayerConfig, Recording};
use pink_sombrero::recording::verify::Tamper;
use pink_sombrero::recording::view::{KeyOutcome, PlayerState, PlayerWidget};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const CAST: &str = r#"{"version": 2, "width": 30, "height": 3, "title": "req-1 on mi-1"}
[0.5, "o", "$ "]
[1.0, "m", "opened"]
[2.0, "i", "uptime\r"]
[2.1, "o", "uptime\r\n up 3 days\r\n$ "]
[4.0, "m", "closed"]
"#;

fn state(integrity: Integrity) -> PlayerState {
    let rec = Recording::parse(Cursor::new(CAST)).unwrap();
    let rules = default_rules();
    PlayerState::new(Player::new(rec, PlayerConfig::default()), integrity, &rules)
}

fn draw(state: &mut PlayerState) -> String {
    draw_sized(state, 60, 9)
}

/// The player drawn at `w`x`h`, one string line per row, trailing blanks trimmed.
fn draw_sized(state: &mut PlayerState, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| f.render_stateful_widget(PlayerWidget, f.area(), state))
        .unwrap();
    let buf = t.backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn key(s: &mut PlayerState, code: KeyCode) -> KeyOutcome {
    s.handle_key(KeyEvent::new(code, KeyModifiers::NONE), Duration::ZERO)
}

#[test]
fn sealed_recording_at_the_end() {
    let mut s = state(Integrity::Sealed {
        lines: 6,
        digest: "ab".into(),
    });
    assert_eq!(key(&mut s, KeyCode::Char('G')), KeyOutcome::Consumed);
    insta::assert_snapshot!(draw(&mut s));
}

#[test]
fn tampered_badge_input_overlay_and_search_prompt() {
    let mut s = state(Integrity::Tampered {
        kind: Tamper::Edited,
        line: 4,
        count: 1,
    });
    key(&mut s, KeyCode::Char(']'));
    key(&mut s, KeyCode::Right);
    key(&mut s, KeyCode::Char('i'));
    assert!(s.input_shown());
    let screen = draw(&mut s);
    assert!(screen.contains("TAMPERED at line 4"), "{screen}");
    assert!(screen.contains("typed: uptime⏎"), "{screen}");
    key(&mut s, KeyCode::Char('g'));
    key(&mut s, KeyCode::Char('/'));
    for c in "days".chars() {
        key(&mut s, KeyCode::Char(c));
    }
    assert!(draw(&mut s).contains("/days█"));
    key(&mut s, KeyCode::Enter);
    insta::assert_snapshot!(draw(&mut s));
    assert_eq!(key(&mut s, KeyCode::Char('x')), KeyOutcome::NotConsumed);
    assert_eq!(key(&mut s, KeyCode::Char('q')), KeyOutcome::Quit);
}

/// The command pane: `c` opens it, arrows select, Enter jumps, `f`/`F` walk the flagged
/// commands, flags show on the timeline; snapshots at 80x24 (pane below the terminal, the
/// terminal showing the rows around its cursor) and 140x42 (pane beside it).
mod command_pane {
    use std::fmt::Write as _;
    use std::io::Cursor;

    use crossterm::event::KeyCode;
    use pink_sombrero::recording::Integrity;
    use pink_sombrero::recording::flags::{FlagRule, Severity, default_rules};
    use pink_sombrero::recording::player::{Player, PlayerConfig, Recording};
    use pink_sombrero::recording::view::{KeyOutcome, PlayerState};

    use super::{draw_sized, key};

    /// A 80x24 shell session: each command typed, echoed, answered; some of them risky, one
    /// with an escape sequence typed into it, one a policy rule flags.
    fn cast() -> String {
        let commands = [
            "uptime",
            "df -h",
            "sudo systemctl status nginx",
            "journalctl -u nginx --since today | tail -n 50",
            "ls \\u001b[31mred",
            "rm -rf /var/lib/nginx/cache",
            "scp /etc/nginx/nginx.conf backup@10.0.0.9:",
            "history -c",
            "exit",
        ];
        let mut out = String::from(
            "{\"version\": 2, \"width\": 80, \"height\": 24, \"title\": \"req-7 on i-0abc\"}\n",
        );
        let mut t = 0.5;
        let mut ev = |t: f64, kind: &str, data: &str| {
            writeln!(out, "[{t:.3}, \"{kind}\", \"{data}\"]").unwrap();
        };
        ev(t, "o", "ubuntu@ip-10-0-0-5:~$ ");
        for (n, c) in commands.iter().enumerate() {
            t += 3.0;
            ev(t, "i", &format!("{c}\\r"));
            ev(t + 0.1, "o", &format!("{c}\\r\\n"));
            for k in 0..3 {
                ev(
                    t + 0.2,
                    "o",
                    &format!("output {n}.{k} of the command\\r\\n"),
                );
            }
            ev(t + 0.3, "o", "ubuntu@ip-10-0-0-5:~$ ");
        }
        out
    }

    fn rules() -> Vec<FlagRule> {
        let mut rules = default_rules();
        rules.push(FlagRule {
            pattern: regex::Regex::new(r"\bscp\b").unwrap(),
            label: "exfiltration: scp".into(),
            severity: Severity::Low,
        });
        rules
    }

    fn state() -> PlayerState {
        let rec = Recording::parse(Cursor::new(cast())).unwrap();
        let integrity = Integrity::Sealed {
            lines: 56,
            digest: "ab".into(),
        };
        PlayerState::new(
            Player::new(rec, PlayerConfig::default()),
            integrity,
            &rules(),
        )
    }

    #[test]
    fn keys_open_select_jump_and_walk_the_flags() {
        let mut s = state();
        assert_eq!(s.commands.entries().len(), 9);
        assert_eq!(s.commands.flagged_count(), 4);
        // Closed: the arrows and Enter are the embedding screen's.
        assert_eq!(key(&mut s, KeyCode::Down), KeyOutcome::NotConsumed);
        assert_eq!(key(&mut s, KeyCode::Enter), KeyOutcome::NotConsumed);
        assert_eq!(key(&mut s, KeyCode::Char('c')), KeyOutcome::Consumed);
        assert!(s.commands.is_open());
        key(&mut s, KeyCode::Down);
        key(&mut s, KeyCode::Down);
        assert_eq!(key(&mut s, KeyCode::Enter), KeyOutcome::Consumed);
        // The third command's first keystroke on the idle-compressed timeline: each 3 s
        // step is cut to 2 s, each command's output takes 0.3 s.
        let pos = s.player.position();
        assert_eq!(Some(pos), s.commands.time_of(2, &s.player));
        assert!((pos - (2.5 + 2.0 * 2.3)).abs() < 1e-9, "{pos}");
        assert!(
            s.message().unwrap().contains("command 3/9 at line"),
            "{:?}",
            s.message()
        );
        assert!(s.player.screen().contents().contains("output 1.2"));
        key(&mut s, KeyCode::Char('f'));
        assert_eq!(s.commands.selected(), Some(5), "rm -rf is the next flag");
        assert!(
            s.message()
                .unwrap()
                .contains("high: destruction: recursive rm")
        );
        key(&mut s, KeyCode::Char('f'));
        key(&mut s, KeyCode::Char('f'));
        assert_eq!(s.commands.selected(), Some(7));
        key(&mut s, KeyCode::Char('f'));
        assert_eq!(s.message(), Some("no more flagged commands"));
        key(&mut s, KeyCode::Char('F'));
        assert_eq!(s.commands.selected(), Some(6));
        key(&mut s, KeyCode::Up);
        key(&mut s, KeyCode::Up);
        assert_eq!(s.commands.selected(), Some(4));
        assert_eq!(key(&mut s, KeyCode::Esc), KeyOutcome::Consumed);
        assert!(!s.commands.is_open(), "Esc closes the pane first");
        // Reopened on the command the screen shows (scp, where F left the playback).
        key(&mut s, KeyCode::Char('c'));
        assert_eq!(s.commands.selected(), Some(6));
        key(&mut s, KeyCode::Char('c'));
        // f works with the pane closed too.
        key(&mut s, KeyCode::Char('g'));
        key(&mut s, KeyCode::Char('f'));
        assert_eq!(s.commands.selected(), Some(2));
    }

    #[test]
    fn pane_at_80x24_and_140x42() {
        let mut s = state();
        key(&mut s, KeyCode::Char('c'));
        for _ in 0..2 {
            key(&mut s, KeyCode::Char('f'));
        }
        let small = draw_sized(&mut s, 80, 24);
        // At rm -rf's first keystroke the screen's bottom rows (the prompt it is typed at) show
        // although the recorded 24 rows do not fit; the top ones give way.
        assert!(small.contains("output 4.2 of the command"), "{small}");
        assert!(!small.contains("output 0.0"), "{small}");
        assert!(small.contains("exfiltration: scp"), "{small}");
        assert!(small.contains("⏎ jump"), "{small}");
        assert!(small.contains("f flag"), "{small}");
        insta::assert_snapshot!("80x24", small);
        let large = draw_sized(&mut s, 140, 42);
        assert!(large.contains("Commands 9 · 4 flagged"), "{large}");
        insta::assert_snapshot!("140x42", large);
    }
}
