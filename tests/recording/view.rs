//! The player view drawn into ratatui's TestBackend: terminal contents, status, integrity
//! badge, progress, help, search prompt and input overlay.

use std::io::Cursor;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use pink_sombrero::recording::Integrity;
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
    PlayerState::new(Player::new(rec, PlayerConfig::default()), integrity)
}

fn draw(state: &mut PlayerState) -> String {
    let mut t = Terminal::new(TestBackend::new(60, 9)).unwrap();
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
