//! The player model replays casts: screen contents at given times, seeking through keyframes,
//! markers, search, input overlay, speed and idle compression.

use std::io::Cursor;
use std::time::Duration;

use pink_sombrero::recording::player::{Player, PlayerConfig, Recording};

const CAST: &str = r#"{"version": 2, "width": 20, "height": 4}
[0.5, "o", "hello"]
[1.0, "m", "opened"]
[2.0, "o", "\r\nworld"]
[10.0, "o", "\u001b[2J\u001b[Hcleared"]
[11.0, "i", "ls\r"]
[11.5, "o", "\r\nthe Needle here"]
[12.0, "r", "10x3"]
[13.0, "m", "closed"]
"#;

fn player(idle: Option<f64>) -> Player {
    let rec = Recording::parse(Cursor::new(CAST)).unwrap();
    Player::new(
        rec,
        PlayerConfig {
            idle_limit: idle,
            keyframe_secs: 1.0,
            keyframe_bytes: 8,
        },
    )
}

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

fn text(p: &Player) -> String {
    p.screen().contents()
}

#[test]
fn screen_contents_at_given_times() {
    let mut p = player(None);
    assert_eq!(p.duration(), 13.0);
    p.seek(0.4, s(0.0));
    assert_eq!(text(&p), "");
    p.seek(0.5, s(0.0));
    assert_eq!(text(&p), "hello");
    p.seek(5.0, s(0.0));
    assert_eq!(text(&p), "hello\nworld");
    p.seek(10.0, s(0.0));
    assert_eq!(text(&p), "cleared");
    p.seek(12.5, s(0.0));
    assert_eq!(p.screen().size(), (3, 10));
    // Backwards again, through a keyframe.
    p.seek(2.0, s(0.0));
    assert_eq!(text(&p), "hello\nworld");
    assert_eq!(p.screen().size(), (4, 20));
}

#[test]
fn seeking_anywhere_matches_a_straight_replay() {
    let mut linear = player(None);
    let mut seeker = player(None);
    assert!(seeker.keyframe_count() >= 4);
    let mut t = 0.0;
    while t <= 13.0 {
        linear.seek(t, s(0.0));
        // Jump far away first so the seek really restores a keyframe.
        seeker.seek(13.0 - t, s(0.0));
        seeker.seek(t, s(0.0));
        assert_eq!(
            seeker.screen().contents_formatted(),
            linear.screen().contents_formatted(),
            "at {t}"
        );
        t += 0.25;
    }
}

#[test]
fn playback_follows_the_clock_and_speed() {
    let mut p = player(None);
    p.play(s(100.0));
    p.tick(s(100.6));
    assert_eq!(text(&p), "hello");
    p.pause(s(100.6));
    p.tick(s(200.0));
    assert!((p.position() - 0.6).abs() < 1e-9, "paused position moved");
    p.faster(s(200.0));
    p.faster(s(200.0));
    assert_eq!(p.speed(), 4.0);
    p.play(s(200.0));
    p.tick(s(200.5)); // 0.6 + 0.5 * 4 = 2.6
    assert!((p.position() - 2.6).abs() < 1e-9);
    assert_eq!(text(&p), "hello\nworld");
    p.tick(s(300.0));
    assert_eq!(p.position(), 13.0);
    assert!(!p.is_playing(), "stops at the end");
    for _ in 0..10 {
        p.slower(s(300.0));
    }
    assert_eq!(p.speed(), 0.25);
}

#[test]
fn idle_time_is_compressed() {
    let mut p = player(Some(2.0));
    // The 8 s pause between 2.0 and 10.0 becomes 2 s.
    assert_eq!(p.duration(), 7.0);
    p.seek(4.0, s(0.0));
    assert_eq!(text(&p), "cleared");
    p.set_idle_limit(None, s(0.0));
    assert_eq!(p.duration(), 13.0);
    assert_eq!(text(&p), "cleared");
}

#[test]
fn markers_jump_forward_and_back() {
    let mut p = player(None);
    assert_eq!(p.next_marker(s(0.0)).as_deref(), Some("opened"));
    assert_eq!(p.position(), 1.0);
    assert_eq!(p.current_marker(), Some("opened"));
    assert_eq!(p.next_marker(s(0.0)).as_deref(), Some("closed"));
    assert_eq!(p.next_marker(s(0.0)), None);
    assert_eq!(p.prev_marker(s(0.0)).as_deref(), Some("opened"));
    assert_eq!(p.prev_marker(s(0.0)), None);
}

#[test]
fn search_finds_output_text_and_repeats() {
    let mut p = player(None);
    assert_eq!(p.search("needle", s(0.0)), Some(11.5));
    assert!(text(&p).contains("the Needle here"));
    // Case-sensitive when the query has capitals; wraps around.
    assert_eq!(p.search("Needle", s(0.0)), Some(11.5));
    assert_eq!(p.search("NEEDLE", s(0.0)), None);
    assert_eq!(p.search("hel", s(0.0)), Some(0.5));
    // Across the boundary of two output events ("hello" + "\r\nworld").
    p.seek(0.0, s(0.0));
    assert_eq!(p.search("o\r\nw", s(0.0)), Some(2.0));
    assert_eq!(p.search_next(s(0.0)), Some(2.0));
}

#[test]
fn input_overlay_shows_recent_keys() {
    let mut p = player(None);
    p.seek(11.2, s(0.0));
    assert_eq!(p.recent_input(5.0), "ls⏎");
    p.seek(13.0, s(0.0));
    assert_eq!(p.recent_input(1.0), "");
}

#[test]
fn a_cut_last_line_is_skipped() {
    let cut = format!("{}[14.0, \"o\", \"par", CAST);
    let rec = Recording::parse(Cursor::new(cut)).unwrap();
    assert_eq!(rec.skipped_lines, [10]);
    assert_eq!(rec.events.len(), 8);
}
