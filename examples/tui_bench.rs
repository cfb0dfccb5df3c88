//! Frame render time of the TUI: 10,000 fleet rows, and a session pane under busy output.
//!
//! `cargo run --release --example tui_bench` (debug builds are several times slower).
//! Renders into ratatui's TestBackend, so this measures our drawing, not the terminal's.

use std::time::{Duration, Instant};

use chrono::Utc;
use pink_sombrero::tui::action::{Action, Done, Screen};
use pink_sombrero::tui::app::State;
use pink_sombrero::tui::model::{Badge, FleetRow, Loadable};
use pink_sombrero::tui::theme::Theme;
use pink_sombrero::tui::update::update;
use pink_sombrero::tui::views::draw;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const SIZE: (u16, u16) = (200, 50);
const FRAMES: usize = 300;

fn fleet(n: usize) -> Vec<FleetRow> {
    (0..n)
        .map(|i| FleetRow {
            id: format!("mi-{i:017x}"),
            name: format!("node-{i}"),
            ping: if i % 50 == 0 {
                "ConnectionLost"
            } else {
                "Online"
            }
            .to_string(),
            platform: "Linux (Ubuntu)".to_string(),
            since: Some(Utc::now() - chrono::Duration::seconds(i as i64 * 60)),
            badges: if i % 97 == 0 {
                vec![Badge::Tainted, Badge::Replacing]
            } else {
                vec![]
            },
        })
        .collect()
}

/// Times `frames` iterations of `step` then a draw; prints mean and worst.
fn measure(label: &str, state: &mut State, mut step: impl FnMut(&mut State, usize)) {
    let theme = Theme::load("default").expect("theme");
    let mut term = Terminal::new(TestBackend::new(SIZE.0, SIZE.1)).expect("terminal");
    let mut times: Vec<Duration> = Vec::with_capacity(FRAMES);
    for i in 0..FRAMES {
        let t0 = Instant::now();
        step(state, i);
        term.draw(|f| draw(f, state, &theme)).expect("draw");
        times.push(t0.elapsed());
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / FRAMES as u32;
    let p99 = times[FRAMES * 99 / 100];
    println!(
        "{label:<52} mean {mean:>10.2?}  p99 {p99:>10.2?}  ({FRAMES} frames, {}x{})",
        SIZE.0, SIZE.1
    );
}

fn main() {
    let mut s = State::new("alice", Utc::now(), SIZE);
    update(&mut s, Action::Fleet(Loadable::Ready(fleet(10_000))));
    update(&mut s, Action::Snapshot(Box::default()));
    measure("fleet, 10,000 rows, scrolling", &mut s, |s, _| {
        update(s, Action::Down);
    });
    measure(
        "fleet, 10,000 rows, filter typed each frame",
        &mut s,
        |s, i| {
            s.fleet_filter.editing = true;
            s.fleet_filter.text = format!("node-{}", i % 10);
            s.refilter_fleet();
        },
    );

    let mut s = State::new("alice", Utc::now(), SIZE);
    update(&mut s, Action::Snapshot(Box::default()));
    update(
        &mut s,
        Action::Done(Done::SessionOpened {
            request: "req-00000000".into(),
            target: "mi-0".into(),
            ends_at: None,
            recording: true,
        }),
    );
    assert_eq!(s.screen, Screen::Session);
    // ~16 KiB of coloured, scrolling output per frame (a busy `ls --color -R`, a log tail).
    let mut chunk = Vec::new();
    for i in 0..200 {
        chunk.extend_from_slice(
            format!("\x1b[1;34mdir{i}\x1b[0m  \x1b[32mfile-{i}.log\x1b[0m  plain text padding the line out to look like real output {i}\r\n")
                .as_bytes(),
        );
    }
    println!("(session output per frame: {} bytes)", chunk.len());
    measure(
        "session pane, busy output parsed + drawn",
        &mut s,
        |s, _| {
            update(s, Action::SessionOutput(chunk.clone()));
        },
    );
    measure("session pane, draw only", &mut s, |_, _| {});
}
