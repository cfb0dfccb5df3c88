//! Every screen in every state, rendered into a TestBackend and snapshotted.

use crate::common::tui::*;
use crossterm::event::KeyCode;
use pink_sombrero::tui::action::{Action, Done, Screen};
use pink_sombrero::tui::app::State;
use pink_sombrero::tui::model::*;
use pink_sombrero::tui::theme::Theme;
use pink_sombrero::tui::update::update;
use pink_sombrero::tui::views::draw;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn render(s: &State) -> String {
    let theme = Theme::load("default").unwrap();
    let mut t = Terminal::new(TestBackend::new(s.size.0, s.size.1)).unwrap();
    t.draw(|f| draw(f, s, &theme)).unwrap();
    format!("{}", t.backend())
}

fn on(mut s: State, screen: Screen) -> State {
    update(&mut s, Action::GoTo(screen));
    s
}

fn empty_state() -> State {
    let mut s = state();
    update(&mut s, Action::Fleet(Loadable::Ready(vec![])));
    update(&mut s, Action::Snapshot(Box::default()));
    s
}

fn failed_state() -> State {
    let mut s = state();
    update(
        &mut s,
        Action::Fleet(Loadable::Failed(
            "lab at 127.0.0.1:4566 refused the connection".into(),
        )),
    );
    update(
        &mut s,
        Action::ConnectionLost("cannot open the store: database is locked".into()),
    );
    s
}

macro_rules! every_state {
    ($($name:ident => $screen:expr,)*) => {$(
        mod $name {
            use super::*;
            #[test]
            fn loading() {
                insta::assert_snapshot!(render(&on(state(), $screen)));
            }
            #[test]
            fn empty() {
                insta::assert_snapshot!(render(&on(empty_state(), $screen)));
            }
            #[test]
            fn error() {
                insta::assert_snapshot!(render(&on(failed_state(), $screen)));
            }
            #[test]
            fn full() {
                insta::assert_snapshot!(render(&on(full_state(), $screen)));
            }
        }
    )*};
}

every_state! {
    fleet => Screen::Fleet,
    requests => Screen::Requests,
    approvals => Screen::Approvals,
    session => Screen::Session,
    recordings => Screen::Recordings,
    audit => Screen::Audit,
}

#[test]
fn fleet_filtered_as_you_type() {
    let mut s = full_state();
    press(&mut s, KeyCode::Char('/'));
    type_text(&mut s, "db");
    insta::assert_snapshot!(render(&s));
}

#[test]
fn request_form_with_inline_refusal() {
    let mut s = full_state();
    press(&mut s, KeyCode::Char('b'));
    type_text(&mut s, "disk full");
    press(&mut s, KeyCode::Enter);
    press(&mut s, KeyCode::Enter);
    type_text(&mut s, "123456");
    press(&mut s, KeyCode::Enter);
    insta::assert_snapshot!(render(&s));
}

#[test]
fn request_form_broker_refusal_shows_what_to_do() {
    let mut s = full_state();
    press(&mut s, KeyCode::Char('b'));
    type_text(&mut s, "disk full on web-1");
    for _ in 0..2 {
        press(&mut s, KeyCode::Enter);
    }
    type_text(&mut s, "123456");
    press(&mut s, KeyCode::Enter);
    update(
        &mut s,
        Action::Refused(
            "wrong TOTP code for alice: wait for the next code and try again (2 tries left)".into(),
        ),
    );
    insta::assert_snapshot!(render(&s));
}

#[test]
fn approve_prompt_masks_the_code() {
    let mut s = on(full_state(), Screen::Approvals);
    press(&mut s, KeyCode::Char('a'));
    type_text(&mut s, "987");
    press(&mut s, KeyCode::Tab);
    type_text(&mut s, "looks right");
    insta::assert_snapshot!(render(&s));
}

#[test]
fn approve_form_shows_what_is_approved() {
    // One approval in (bob's); the reason was written by an old version with a forged
    // cursor move and a bidi override: both shown, never obeyed.
    // The row is made from the stored request the way the broker view makes it.
    let stored: pink_sombrero::request::Request = serde_json::from_value(serde_json::json!({
        "id": "r-9b2e",
        "requester": "carol",
        "target": "mi-0a1b2c3d4e5f60001",
        "reason": "\u{1b}[1A\u{1b}[31Gi-0aaaaaaaaaaaaaaaa \u{202e}toor",
        "incident": "INC-4211",
        "duration_secs": 1800,
        "state": "pending",
        "created_at": ago(300),
        "updated_at": ago(200),
        "pending_expires_at": now() + chrono::Duration::seconds(723),
        "approvals": [{"by": "bob", "at": ago(200), "comment": null}],
    }))
    .unwrap();
    let mut snap = snapshot();
    snap.approvals = vec![ApprovalItem {
        request: pink_sombrero::tui::broker_view::request_row(&stored, 2),
    }];
    let mut s = state();
    update(&mut s, Action::Fleet(Loadable::Ready(fleet())));
    update(&mut s, Action::Snapshot(Box::new(snap)));
    let mut s = on(s, Screen::Approvals);
    press(&mut s, KeyCode::Char('a'));
    let shown = render(&s);
    for needle in [
        "carol",
        "mi-0a1b2c3d4e5f60001 (web-1)",
        "INC-4211",
        "30m",
        "5m ago",
        "1 of 2 so far (bob); yours makes it APPROVED",
        "\\x1b[1A\\x1b[31Gi-0aaaaaaaaaaaaaaaa \\u202etoor",
    ] {
        assert!(shown.contains(needle), "{needle:?} missing:\n{shown}");
    }
    insta::assert_snapshot!(shown);
}

#[test]
fn approval_status_says_partial_or_final() {
    let mut s = full_state();
    let done = |approvals, complete| {
        Action::Done(Done::Approved {
            id: "r-9b2e".into(),
            approvals,
            complete,
            requester: "carol".into(),
        })
    };
    update(&mut s, done(1, false));
    let partial = render(&s);
    assert!(
        partial.contains("Your approval of r-9b2e is recorded: 1 of 2. Still PENDING"),
        "{partial}"
    );
    update(&mut s, done(2, true));
    let last = render(&s);
    assert!(
        last.contains("APPROVED r-9b2e (2 of 2): carol may open it now."),
        "{last}"
    );
}

#[test]
fn switch_user_prompt() {
    let mut s = full_state();
    press(&mut s, KeyCode::Char('u'));
    type_text(&mut s, "bob");
    insta::assert_snapshot!(render(&s));
}

#[test]
fn help_is_generated_from_the_keymap() {
    let mut s = on(full_state(), Screen::Requests);
    press(&mut s, KeyCode::Char('?'));
    insta::assert_snapshot!(render(&s));
}

#[test]
fn too_small_asks_to_enlarge() {
    let mut s = full_state();
    update(&mut s, Action::Resize(40, 10));
    insta::assert_snapshot!(render(&s));
}

#[test]
fn demo_panel_shows_codes() {
    let mut s = full_state();
    update(
        &mut s,
        Action::DemoCodes(vec![
            DemoCode {
                user: "alice".into(),
                role: "requester".into(),
                code: "123456".into(),
                next: "234567".into(),
                seconds_left: 17,
            },
            DemoCode {
                user: "bob".into(),
                role: "approver".into(),
                code: "654321".into(),
                next: "765432".into(),
                seconds_left: 17,
            },
        ]),
    );
    insta::assert_snapshot!(render(&s));
}

fn with_session() -> State {
    let mut s = full_state();
    update(
        &mut s,
        Action::Done(Done::SessionOpened {
            request: "r-51c0".into(),
            target: "mi-0a1b2c3d4e5f60001".into(),
            ends_at: Some(now() + chrono::Duration::seconds(1500)),
            recording: true,
        }),
    );
    update(
        &mut s,
        Action::SessionOutput(b"\x1b[1;32malice@web-1\x1b[0m:~$ hostname\r\nweb-1\r\n\x1b[1;32malice@web-1\x1b[0m:~$ ".to_vec()),
    );
    s
}

#[test]
fn session_attached_shows_status_bar_and_chord() {
    insta::assert_snapshot!(render(&with_session()));
}

/// The attached pane keeps its rows: an emergency shows as a badge in its status bar.
#[test]
fn an_attached_session_shows_an_emergency_in_its_status_bar() {
    let mut s = with_session();
    let mut snap = snapshot();
    snap.requests.insert(0, emergency("r-e1a2", "carol"));
    update(&mut s, Action::Snapshot(Box::new(snap)));
    let shown = render(&s);
    let bar = shown.lines().next().unwrap_or_default();
    assert!(bar.contains("EMERGENCY r-e1a2"), "{shown}");
    assert!(
        !shown.contains("deny until"),
        "no banner row over the pane:\n{shown}"
    );
}

#[test]
fn session_chord_prefix_is_announced() {
    let mut s = with_session();
    press_mod(
        &mut s,
        KeyCode::Char(']'),
        crossterm::event::KeyModifiers::CONTROL,
    );
    insta::assert_snapshot!(render(&s));
}

#[test]
fn session_ended_keeps_the_last_screen() {
    let mut s = with_session();
    update(
        &mut s,
        Action::SessionClosed("session ended (exit 0)".into()),
    );
    insta::assert_snapshot!(render(&s));
}

#[test]
fn audit_chain_broken_and_filtered() {
    let mut s = full_state();
    let mut snap = snapshot();
    snap.chain = Some(ChainStatus::Broken {
        at: 2,
        reason: "hash does not match event 1".into(),
    });
    update(&mut s, Action::Snapshot(Box::new(snap)));
    update(&mut s, Action::GoTo(Screen::Audit));
    press(&mut s, KeyCode::Char('/'));
    type_text(&mut s, "mfa");
    insta::assert_snapshot!(render(&s));
}

#[test]
fn no_color_theme_renders_the_same_text() {
    let s = full_state();
    let theme = Theme::choose(Some("high-contrast"), true).unwrap();
    let mut t = Terminal::new(TestBackend::new(100, 30)).unwrap();
    t.draw(|f| draw(f, &s, &theme)).unwrap();
    assert_eq!(format!("{}", t.backend()), render(&s));
    let cell = &t.backend().buffer()[(1, 0)];
    assert_eq!(cell.fg, ratatui::style::Color::Reset);
    assert_eq!(cell.bg, ratatui::style::Color::Reset);
}

/// The ids a screen of the full fixture must show whole.
fn ids_on(screen: Screen) -> Vec<&'static str> {
    match screen {
        Screen::Fleet => vec![
            "mi-0a1b2c3d4e5f60001",
            "mi-0a1b2c3d4e5f60002",
            "mi-0a1b2c3d4e5f60003",
        ],
        Screen::Requests => vec!["r-7f3a", "r-51c0", "r-0d9e", "mi-0a1b2c3d4e5f60001"],
        Screen::Approvals => vec!["r-9b2e", "mi-0a1b2c3d4e5f60001"],
        Screen::Recordings => vec![
            "r-0d9e",
            "r-0c11",
            "r-0b02",
            "mi-0a1b2c3d4e5f60001",
            "mi-0a1b2c3d4e5f60002",
            "mi-0a1b2c3d4e5f60003",
        ],
        Screen::Audit => vec!["r-7f3a"],
        Screen::Session => vec![],
    }
}

/// The `expected` ids show whole, and (unless an overlay hides part of the screen, which is
/// not cutting) every id-looking word on screen is a whole id: nothing is cut to `mi-0a1b…`.
fn assert_ids_whole(shown: &str, expected: &[&str], overlay: bool, what: &str) {
    for id in expected {
        assert!(
            shown.contains(id),
            "{what}: {id} is not shown whole:\n{shown}"
        );
    }
    if overlay {
        return;
    }
    let known: Vec<String> = fleet()
        .into_iter()
        .map(|n| n.id)
        .chain(snapshot().requests.into_iter().map(|r| r.id))
        .chain(snapshot().approvals.into_iter().map(|a| a.request.id))
        .chain(snapshot().recordings.into_iter().map(|r| r.request))
        .collect();
    let word = regex::Regex::new(r"\b(mi-[0-9a-f]+|r-[0-9a-f]+)").unwrap();
    for m in word.find_iter(shown) {
        assert!(
            known.iter().any(|k| k == m.as_str()),
            "{what}: {:?} is a cut id:\n{shown}",
            m.as_str()
        );
    }
}

/// The demo's codes, so the DEMO strip (narrow) and panel (wide) are part of every size.
fn demo_codes() -> Action {
    let code = |user: &str, role: &str, code: &str, next: &str| DemoCode {
        user: user.into(),
        role: role.into(),
        code: code.into(),
        next: next.into(),
        seconds_left: 17,
    };
    Action::DemoCodes(vec![
        code("oncall", "requester", "123456", "234567"),
        code("alice", "approver", "345678", "456789"),
        code("bob", "approver", "567890", "678901"),
    ])
}

/// Every tab, the request and approve forms and the help overlay at 80x24, 100x30 and
/// 140x42, in demo mode: each snapshotted and checked to show its ids whole.
#[test]
fn every_screen_at_every_size_keeps_ids_whole() {
    for (w, h) in [(80u16, 24u16), (100, 30), (140, 42)] {
        let sized = |screen: Screen| {
            let mut s = full_state();
            update(&mut s, demo_codes());
            update(&mut s, Action::Resize(w, h));
            on(s, screen)
        };
        let mut shots: Vec<(String, State, Vec<&str>)> = Screen::ALL
            .iter()
            .map(|&screen| (screen.title().to_lowercase(), sized(screen), ids_on(screen)))
            .collect();
        // Forms and help are drawn over the screen: they show their own ids whole.
        let mut form = sized(Screen::Fleet);
        press(&mut form, KeyCode::Char('b'));
        type_text(&mut form, "disk full on web-1, logrotate stuck");
        shots.push(("request_form".into(), form, vec!["mi-0a1b2c3d4e5f60001"]));
        let mut approve = sized(Screen::Approvals);
        press(&mut approve, KeyCode::Char('a'));
        shots.push((
            "approve_form".into(),
            approve,
            vec!["r-9b2e", "mi-0a1b2c3d4e5f60001"],
        ));
        let mut help = sized(Screen::Requests);
        press(&mut help, KeyCode::Char('?'));
        shots.push(("help".into(), help, vec![]));
        for (name, s, ids) in shots {
            let shown = render(&s);
            let what = format!("{name} at {w}x{h}");
            assert!(!shown.contains("Enlarge the window"), "{what}:\n{shown}");
            let overlay = s.form.is_some() || s.help;
            assert_ids_whole(&shown, &ids, overlay, &what);
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), shown);
        }
    }
}

#[test]
fn the_tab_bar_names_every_tab_at_80_columns() {
    for screen in Screen::ALL {
        let top = render(&on(full_state_sized(80, 24), screen));
        let bar = top.lines().next().unwrap_or_default().to_string();
        for n in 1..=6 {
            assert!(bar.contains(&format!(" {n}")), "tab {n} missing: {bar}");
        }
        assert!(bar.contains(screen.title()), "{bar}");
        assert!(bar.contains("as alice"), "{bar}");
    }
}

fn full_state_sized(w: u16, h: u16) -> State {
    let mut s = full_state();
    update(&mut s, Action::Resize(w, h));
    s
}

#[test]
fn d_flips_the_demo_panel_and_the_strip() {
    let mut s = full_state_sized(80, 24);
    update(&mut s, demo_codes());
    let strip = render(&s);
    assert!(strip.contains("oncall 123456/234567"), "{strip}");
    assert!(!strip.contains("Demo users' TOTP codes"), "{strip}");
    press(&mut s, KeyCode::Char('D'));
    let panel = render(&s);
    assert!(panel.contains("Demo users' TOTP codes"), "{panel}");
    let mut wide = full_state_sized(140, 42);
    update(&mut wide, demo_codes());
    assert!(render(&wide).contains("Demo users' TOTP codes"));
    press(&mut wide, KeyCode::Char('D'));
    assert!(!render(&wide).contains("Demo users' TOTP codes"));
}

#[test]
fn help_marks_the_keys_that_ask_for_a_code() {
    let mut s = on(full_state(), Screen::Approvals);
    press(&mut s, KeyCode::Char('?'));
    let shown = render(&s);
    let line = |key: &str| {
        shown
            .lines()
            .find(|l| l.contains(&format!("│{key} ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("a").contains("code"), "{shown}");
    assert!(line("d").contains("code"), "{shown}");
    assert!(!line("?").contains("code"), "{shown}");
    assert!(shown.contains("asks for your TOTP code"), "{shown}");
}

#[test]
fn an_approved_request_of_mine_is_announced_and_o_leads_the_hints_everywhere() {
    let mut s = full_state_sized(80, 24);
    let mut snap = snapshot();
    snap.requests[0] = request("r-7f3a", "alice", RequestState::Approved, &["bob", "carol"]);
    let intents = update(&mut s, Action::Snapshot(Box::new(snap)));
    assert_eq!(intents, vec![pink_sombrero::tui::intent::Intent::Bell]);
    for screen in [Screen::Fleet, Screen::Audit] {
        update(&mut s, Action::GoTo(screen));
        let shown = render(&s);
        let lines: Vec<&str> = shown.lines().collect();
        let (status, hints) = (lines[lines.len() - 2], lines[lines.len() - 1]);
        assert!(
            status.contains("r-7f3a approved by bob and carol: press o to open"),
            "{shown}"
        );
        assert!(
            hints.starts_with("\"o open r-7f3a (approved) · "),
            "{shown}"
        );
    }
}

/// Commands flagged in a live session stand under the approval queue at 80x24, with the
/// request and target whole, and the queue still shows its request.
#[test]
fn live_flagged_commands_show_under_the_approval_queue() {
    let mut snap = snapshot();
    snap.flagged = vec![FlaggedRow {
        seq: 40,
        request: "r-51c0".into(),
        target: "i-0123456789abcdef0".into(),
        summary: "high: hiding tracks: history cleared: history -c".into(),
    }];
    let mut s = full_state_sized(80, 24);
    update(&mut s, Action::Snapshot(Box::new(snap)));
    let shown = render(&on(s, Screen::Approvals));
    assert!(shown.contains("Flagged in live sessions"), "{shown}");
    assert!(
        shown.contains("r-51c0 i-0123456789abcdef0 high: hiding tracks"),
        "{shown}"
    );
    assert!(
        shown.contains("r-9b2e"),
        "the queue is still there:\n{shown}"
    );
    insta::assert_snapshot!("approvals_with_live_flags_80x24", shown);
}

/// The full fixture with an emergency request by carol in its veto window (alice may deny it).
fn with_emergency(w: u16, h: u16) -> State {
    let mut snap = snapshot();
    let e = emergency("r-e1a2", "carol");
    snap.requests.insert(0, e.clone());
    snap.approvals.insert(0, ApprovalItem { request: e });
    let mut s = full_state_sized(w, h);
    update(&mut s, Action::Snapshot(Box::new(snap)));
    s
}

/// While an emergency request is in its veto window, every screen says so on its second line,
/// with the request, requester and target whole and the deadline; Approvals lists it loudly.
#[test]
fn the_emergency_banner_is_on_every_screen_at_80x24() {
    let banner = "EMERGENCY r-e1a2 by carol on mi-0a1b2c3d4e5f60001: deny until 09:31:30";
    for screen in Screen::ALL {
        let shown = render(&on(with_emergency(80, 24), screen));
        let second = shown.lines().nth(1).unwrap_or_default();
        assert!(second.contains(banner), "{screen:?}:\n{shown}");
    }
    let wide = render(&with_emergency(140, 42));
    assert!(
        wide.contains("EMERGENCY r-e1a2 by carol on mi-0a1b2c3d4e5f60001: approvers may deny until 09:31:30 UTC"),
        "{wide}"
    );
    let approvals = render(&on(with_emergency(80, 24), Screen::Approvals));
    assert!(
        approvals.contains("r-e1a2 is an EMERGENCY: d denies it until 09:31:30"),
        "{approvals}"
    );
    insta::assert_snapshot!("approvals_emergency_80x24", approvals);
    let requests = render(&on(with_emergency(80, 24), Screen::Requests));
    assert!(requests.contains("EMERGENCY"), "{requests}");
    insta::assert_snapshot!("requests_emergency_80x24", requests);
}

/// Once its session is live the banner stays (and says until when); once it ended, it goes.
#[test]
fn the_emergency_banner_follows_the_session() {
    let mut s = full_state_sized(80, 24);
    let mut live = emergency("r-e1a2", "carol");
    live.state = RequestState::Active;
    live.deadline = Some(now() + chrono::Duration::minutes(30));
    let mut snap = snapshot();
    snap.requests.insert(0, live.clone());
    update(&mut s, Action::Snapshot(Box::new(snap.clone())));
    let shown = render(&s);
    assert!(
        shown.contains(
            "EMERGENCY r-e1a2 by carol on mi-0a1b2c3d4e5f60001: session live until 10:00:00"
        ),
        "{shown}"
    );
    snap.requests[0].state = RequestState::Closed;
    update(&mut s, Action::Snapshot(Box::new(snap)));
    assert!(!render(&s).contains("EMERGENCY r-e1a2"));
}

/// `r` on Recordings lists the review queue: due in / OVERDUE by, sign-offs so far, overdue rows
/// in the error style; the tab counts the pending reviews for reviewers only.
#[test]
fn the_to_review_filter_lists_the_review_queue_at_80x24() {
    let mut snap = snapshot();
    snap.reviews = reviews();
    snap.reviewer = true;
    let mut s = full_state_sized(80, 24);
    update(&mut s, Action::Snapshot(Box::new(snap.clone())));
    let mut s = on(s, Screen::Recordings);
    assert!(
        render(&s)
            .lines()
            .next()
            .unwrap_or_default()
            .contains("(2)")
    );
    press(&mut s, KeyCode::Char('r'));
    let theme = Theme::load("default").unwrap();
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    t.draw(|f| draw(f, &s, &theme)).unwrap();
    let shown = format!("{}", t.backend());
    for text in [
        "to review",
        "r-0c11 !",
        "OVERDUE 1d",
        "1/2 carol",
        "r-0b02",
        "in 5h",
        "0/1",
        "mi-0a1b2c3d4e5f60002",
        "mi-0a1b2c3d4e5f60003",
    ] {
        assert!(shown.contains(text), "{text}:\n{shown}");
    }
    // The overdue row is drawn in the error style, the other one is not.
    let fg_of = |needle: &str| {
        let buf = t.backend().buffer();
        let n = u16::try_from(needle.chars().count()).unwrap();
        (0..24u16)
            .flat_map(|y| (0..80u16 - n).map(move |x| (x, y)))
            .find(|&(x, y)| (x..x + n).map(|i| buf[(i, y)].symbol()).collect::<String>() == needle)
            .map(|at| buf[at].fg)
            .unwrap()
    };
    let error = theme.status_error.fg.unwrap();
    assert_eq!(fg_of("OVERDUE 1d"), error);
    assert_eq!(fg_of("r-0c11"), error);
    assert_ne!(fg_of("in 5h"), error);
    insta::assert_snapshot!("recordings_to_review_80x24", shown);
    // r again: every recording.
    press(&mut s, KeyCode::Char('r'));
    assert!(render(&s).contains("r-0d9e"));
    // Not a reviewer: no counter.
    snap.reviewer = false;
    update(&mut s, Action::Snapshot(Box::new(snap)));
    assert!(
        !render(&s)
            .lines()
            .next()
            .unwrap_or_default()
            .contains("(2)")
    );
}

/// The help overlay lists the new keys: E on Fleet (asks for a code), r on Recordings.
#[test]
fn help_lists_the_emergency_and_to_review_keys() {
    let mut fleet = full_state_sized(80, 24);
    press(&mut fleet, KeyCode::Char('?'));
    let shown = render(&fleet);
    assert!(
        shown.contains("EMERGENCY request (if the policy lets you)"),
        "{shown}"
    );
    let mut recordings = on(full_state_sized(80, 24), Screen::Recordings);
    press(&mut recordings, KeyCode::Char('?'));
    let shown = render(&recordings);
    assert!(
        shown.contains("to review (the review queue) / all"),
        "{shown}"
    );
    insta::assert_snapshot!("help_recordings_80x24", shown);
}

/// The request form with the emergency door on says so loudly, with the veto window and the
/// confirmation to type.
#[test]
fn request_form_with_the_emergency_door_on_80x24() {
    let mut snap = snapshot();
    snap.policy.emergency_allowed = true;
    let mut s = full_state_sized(80, 24);
    update(&mut s, Action::Snapshot(Box::new(snap)));
    press(&mut s, KeyCode::Char('b'));
    let off = render(&s);
    assert!(off.contains("C-e EMERGENCY door"), "{off}");
    press_mod(
        &mut s,
        KeyCode::Char('e'),
        crossterm::event::KeyModifiers::CONTROL,
    );
    for _ in 0..4 {
        press(&mut s, KeyCode::Tab);
    }
    let on = render(&s);
    for text in [
        "EMERGENCY request for mi-0a1b2c3d4e5f60001",
        "EMERGENCY DOOR ON",
        "type EMERGENCY",
        "C-e ordinary request",
    ] {
        assert!(on.contains(text), "{text}:\n{on}");
    }
    insta::assert_snapshot!("request_form_emergency_80x24", on);
}
