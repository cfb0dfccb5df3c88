//! The whole workflow driven by keys through keymap + update, with no terminal:
//! request -> two approvals (switching user) -> open -> type -> end.

use std::time::Duration;

use crate::common::tui::*;
use crossterm::event::{KeyCode, KeyModifiers};
use pink_sombrero::tui::action::{Action, Done, Screen};
use pink_sombrero::tui::intent::Intent;
use pink_sombrero::tui::model::*;
use pink_sombrero::tui::update::update;

fn snapshot_with(requests: Vec<RequestRow>, approvals: Vec<RequestRow>) -> Action {
    Action::Snapshot(Box::new(BrokerSnapshot {
        requests,
        approvals: approvals
            .into_iter()
            .map(|request| ApprovalItem { request })
            .collect(),
        ..BrokerSnapshot::default()
    }))
}

fn switch_user(s: &mut pink_sombrero::tui::app::State, name: &str) {
    press(s, KeyCode::Char('u'));
    type_text(s, name);
    press(s, KeyCode::Enter);
    type_text(s, "111111");
    let intents = press(s, KeyCode::Enter);
    assert_eq!(
        intents,
        vec![Intent::SwitchUser {
            name: name.into(),
            code: "111111".into()
        }]
    );
    update(s, Action::Done(Done::UserSwitched { name: name.into() }));
    assert_eq!(s.user, name);
    assert!(s.form.is_none());
}

fn approve_first(s: &mut pink_sombrero::tui::app::State, code: &str) {
    press(s, KeyCode::Char('3'));
    assert_eq!(s.screen, Screen::Approvals);
    press(s, KeyCode::Char('a'));
    type_text(s, code); // the code comes first; the comment is optional (Tab)
    let intents = press(s, KeyCode::Enter);
    assert_eq!(
        intents,
        vec![Intent::Approve {
            id: "r-1".into(),
            code: code.into(),
            comment: None
        }]
    );
    update(
        s,
        Action::Done(Done::Approved {
            id: "r-1".into(),
            approvals: 1,
            complete: false,
            requester: "alice".into(),
        }),
    );
}

#[test]
fn request_approve_open_close() {
    let mut s = state();
    update(&mut s, Action::Fleet(Loadable::Ready(fleet())));
    update(&mut s, snapshot_with(vec![], vec![]));

    // alice picks the second node and asks.
    press(&mut s, KeyCode::Down);
    press(&mut s, KeyCode::Char('b'));
    type_text(&mut s, "disk full on db-primary");
    press(&mut s, KeyCode::Tab);
    type_text(&mut s, "INC-1");
    press(&mut s, KeyCode::Enter);
    type_text(&mut s, "123456");
    let intents = press(&mut s, KeyCode::Enter); // on the code: submits, keeping 30m
    assert_eq!(
        intents,
        vec![Intent::CreateRequest {
            target: "mi-0a1b2c3d4e5f60002".into(),
            reason: "disk full on db-primary".into(),
            incident: Some("INC-1".into()),
            duration: Duration::from_secs(1800),
            code: "123456".into(),
            emergency: false,
        }]
    );
    assert!(s.form.as_ref().unwrap().busy);
    assert_eq!(
        update(
            &mut s,
            Action::Done(Done::RequestCreated {
                id: "r-1".into(),
                emergency: None
            })
        ),
        vec![Intent::Reload]
    );
    assert_eq!(s.screen, Screen::Requests);
    let pending = request("r-1", "alice", RequestState::Pending, &[]);
    update(&mut s, snapshot_with(vec![pending.clone()], vec![]));

    // bob approves on the same console; his queue arrives with a bell only for new items.
    switch_user(&mut s, "bob");
    assert_eq!(
        update(
            &mut s,
            snapshot_with(vec![pending.clone()], vec![pending.clone()])
        ),
        vec![],
        "the first snapshot after switching is not news"
    );
    approve_first(&mut s, "222222");

    // carol too; a new request arriving while she looks rings the bell.
    switch_user(&mut s, "carol");
    update(&mut s, snapshot_with(vec![pending.clone()], vec![]));
    let intents = update(
        &mut s,
        snapshot_with(vec![pending.clone()], vec![pending.clone()]),
    );
    assert_eq!(intents, vec![Intent::Bell]);
    approve_first(&mut s, "333333");

    // alice opens it.
    switch_user(&mut s, "alice");
    let approved = request("r-1", "alice", RequestState::Approved, &["bob", "carol"]);
    update(&mut s, snapshot_with(vec![approved], vec![]));
    press(&mut s, KeyCode::Char('2'));
    // o asks for her code first (mfa.at_open); nothing opens without one.
    assert_eq!(press(&mut s, KeyCode::Char('o')), vec![]);
    assert_eq!(s.form.as_ref().unwrap().title(), "Open the session of r-1");
    assert_eq!(press(&mut s, KeyCode::Enter), vec![]);
    assert!(s.form.as_ref().unwrap().error.is_some());
    type_text(&mut s, "444444");
    let intents = press(&mut s, KeyCode::Enter);
    assert_eq!(
        intents,
        vec![Intent::OpenSession {
            id: "r-1".into(),
            rows: 28,
            cols: 100,
            code: Some("444444".into()),
        }]
    );
    update(
        &mut s,
        Action::Done(Done::SessionOpened {
            request: "r-1".into(),
            target: "mi-0a1b2c3d4e5f60002".into(),
            ends_at: None,
            recording: true,
        }),
    );
    assert!(s.session_attached());

    // Every key goes to the shell, including q, Esc and Ctrl-C.
    let typed = type_text(&mut s, "hostname q");
    assert_eq!(typed.len(), 10);
    assert_eq!(
        press(&mut s, KeyCode::Enter),
        vec![Intent::SendInput(b"\r".to_vec())]
    );
    assert_eq!(
        press(&mut s, KeyCode::Esc),
        vec![Intent::SendInput(vec![0x1b])]
    );
    assert_eq!(
        press_mod(&mut s, KeyCode::Char('c'), KeyModifiers::CONTROL),
        vec![Intent::SendInput(vec![3])]
    );
    update(&mut s, Action::SessionOutput(b"db-primary\r\n$ ".to_vec()));
    let screen = s.session.as_ref().unwrap().parser.screen().contents();
    assert!(screen.contains("db-primary"), "{screen}");

    // A resize reaches both the emulator and the session.
    assert_eq!(
        update(&mut s, Action::Resize(120, 40)),
        vec![Intent::Resize {
            rows: 38,
            cols: 120
        }]
    );

    // Detach and come back, then end it with the chord.
    press_mod(&mut s, KeyCode::Char(']'), KeyModifiers::CONTROL);
    assert_eq!(press(&mut s, KeyCode::Char('d')), vec![]);
    assert!(!s.session_attached());
    assert_eq!(s.screen, Screen::Requests);
    press(&mut s, KeyCode::Char('o'));
    assert!(s.session_attached());
    press_mod(&mut s, KeyCode::Char(']'), KeyModifiers::CONTROL);
    assert_eq!(press(&mut s, KeyCode::Char('x')), vec![Intent::EndSession]);
    assert_eq!(
        update(
            &mut s,
            Action::SessionClosed("session ended (exit 0)".into())
        ),
        vec![Intent::Reload]
    );
    assert!(!s.session_attached());
    // Now q backs out to Fleet, and from Fleet quits.
    press(&mut s, KeyCode::Char('q'));
    assert_eq!(s.screen, Screen::Fleet);
    assert_eq!(press(&mut s, KeyCode::Char('q')), vec![Intent::Quit]);
    assert!(s.quit);
}

#[test]
fn refusals_stay_in_the_form_and_others_cannot_open() {
    let mut s = full_state();
    press(&mut s, KeyCode::Char('2'));
    // r-51c0 is carol's approved request: alice cannot open it.
    press(&mut s, KeyCode::Down);
    assert_eq!(press(&mut s, KeyCode::Char('o')), vec![]);
    assert!(matches!(
        &s.status,
        Some(pink_sombrero::tui::app::Status::Error(m)) if m.contains("Only carol")
    ));
    // a pending one cannot be opened either.
    press(&mut s, KeyCode::Up);
    assert_eq!(press(&mut s, KeyCode::Char('o')), vec![]);
    // deny needs a comment before anything is sent.
    press(&mut s, KeyCode::Char('3'));
    press(&mut s, KeyCode::Char('d'));
    press(&mut s, KeyCode::Enter);
    type_text(&mut s, "123456");
    assert_eq!(press(&mut s, KeyCode::Enter), vec![]);
    let f = s.form.as_ref().unwrap();
    assert_eq!(f.focus, 0);
    assert!(f.error.as_deref().unwrap().contains("Say why"));
    // a broker refusal lands in the form and lets the user retry.
    type_text(&mut s, "not during the freeze");
    // The code is typed already: Enter submits from the comment.
    assert_eq!(press(&mut s, KeyCode::Enter).len(), 1);
    update(
        &mut s,
        Action::Refused("code already used: wait for the next one".into()),
    );
    let f = s.form.as_ref().unwrap();
    assert!(!f.busy);
    assert_eq!(
        f.error.as_deref(),
        Some("code already used: wait for the next one")
    );
    press(&mut s, KeyCode::Esc);
    assert!(s.form.is_none());
}

#[test]
fn quitting_with_a_live_session_ends_it_first() {
    let mut s = full_state();
    update(
        &mut s,
        Action::Done(Done::SessionOpened {
            request: "r-51c0".into(),
            target: "x".into(),
            ends_at: None,
            recording: true,
        }),
    );
    press(&mut s, KeyCode::Char('1'));
    assert_eq!(
        s.screen,
        Screen::Session,
        "digits go to the shell while attached"
    );
    update(&mut s, Action::GoTo(Screen::Fleet));
    assert_eq!(
        press_mod(&mut s, KeyCode::Char('c'), KeyModifiers::CONTROL),
        vec![Intent::EndSession, Intent::Quit]
    );
}

#[test]
fn a_snapshot_read_for_the_previous_user_is_ignored() {
    let mut s = full_state();
    update(
        &mut s,
        Action::Done(Done::UserSwitched { name: "bob".into() }),
    );
    assert_eq!(
        s.broker,
        Loadable::Loading,
        "alice's queue is not shown as bob's"
    );
    let mut stale = snapshot();
    stale.user = "alice".into();
    update(&mut s, Action::Snapshot(Box::new(stale)));
    assert_eq!(s.broker, Loadable::Loading);
    let mut fresh = snapshot();
    fresh.user = "bob".into();
    update(&mut s, Action::Snapshot(Box::new(fresh)));
    assert!(s.broker.ready().is_some());
}

/// Requests shows an active request first and one in `other` state second.
fn live_and(other: RequestState) -> pink_sombrero::tui::app::State {
    let mut s = state();
    update(
        &mut s,
        snapshot_with(
            vec![
                request("r-live", "carol", RequestState::Active, &["alice", "bob"]),
                request("r-other", "carol", other, &[]),
            ],
            Vec::new(),
        ),
    );
    press(&mut s, KeyCode::Char('2'));
    assert_eq!(s.screen, Screen::Requests);
    s
}

#[test]
fn shift_k_ends_an_active_session_and_only_that() {
    let mut s = live_and(RequestState::Pending);
    // K asks for the approver's code; Enter without one sends nothing.
    assert_eq!(press(&mut s, KeyCode::Char('K')), vec![]);
    assert_eq!(
        s.form.as_ref().unwrap().title(),
        "End the session of r-live"
    );
    assert_eq!(press(&mut s, KeyCode::Enter), vec![]);
    type_text(&mut s, "555555");
    assert_eq!(
        press(&mut s, KeyCode::Enter),
        vec![Intent::Kill {
            id: "r-live".into(),
            code: "555555".into(),
        }]
    );
    update(
        &mut s,
        Action::Done(Done::Killed {
            id: "r-live".into(),
        }),
    );
    press(&mut s, KeyCode::Down);
    assert!(press(&mut s, KeyCode::Char('K')).is_empty());
    assert!(matches!(
        s.status,
        Some(pink_sombrero::tui::app::Status::Error(_))
    ));
}

#[test]
fn with_at_open_false_o_opens_without_a_code() {
    let mut s = state();
    let mut snapshot = BrokerSnapshot {
        requests: vec![request(
            "r-1",
            "alice",
            RequestState::Approved,
            &["bob", "carol"],
        )],
        ..BrokerSnapshot::default()
    };
    snapshot.policy.code_at_open = false;
    update(&mut s, Action::Snapshot(Box::new(snapshot)));
    press(&mut s, KeyCode::Char('2'));
    let intents = press(&mut s, KeyCode::Char('o'));
    assert!(
        matches!(&intents[..], [Intent::OpenSession { id, code: None, .. }] if id == "r-1"),
        "{intents:?}"
    );
    assert!(s.form.is_none());
}

#[test]
fn w_watches_an_active_session_read_only() {
    let mut s = live_and(RequestState::Closed);
    let intents = press(&mut s, KeyCode::Char('w'));
    assert!(
        matches!(&intents[..], [Intent::WatchSession { id, .. }] if id == "r-live"),
        "{intents:?}"
    );
    press(&mut s, KeyCode::Down);
    assert!(press(&mut s, KeyCode::Char('w')).is_empty());
}

/// The most keys a requester presses, besides the reason and the code, from the Fleet tab to
/// a shell (issue 18): the form, then `o` wherever they are once it is approved.
const REQUESTER_KEYS: usize = 6;
/// The most keys an approver presses, besides the code, to approve the request in the queue.
const APPROVER_KEYS: usize = 3;

/// Presses keys through the real keymap and update, counting every key but typed text.
struct Counted<'a> {
    s: &'a mut pink_sombrero::tui::app::State,
    keys: usize,
}

impl Counted<'_> {
    fn key(&mut self, code: KeyCode) -> Vec<Intent> {
        self.keys += 1;
        press(self.s, code)
    }

    fn text(&mut self, text: &str) -> Vec<Intent> {
        type_text(self.s, text)
    }
}

/// alice with carol's r-2 in her approval queue.
fn one_to_approve() -> pink_sombrero::tui::app::State {
    let mut s = state();
    let r2 = request("r-2", "carol", RequestState::Pending, &[]);
    update(&mut s, snapshot_with(vec![], vec![r2]));
    s
}

#[test]
fn the_shortest_paths_stay_short() {
    // The requester: b on the selected node, reason, Enter, Enter (past the incident), code,
    // Enter (the code's Enter submits; 30m is proposed), then o, code, Enter once approved.
    let mut s = state();
    update(&mut s, Action::Fleet(Loadable::Ready(fleet())));
    let older = request("r-0", "carol", RequestState::Pending, &[]);
    update(&mut s, snapshot_with(vec![older.clone()], vec![]));
    let mut k = Counted { s: &mut s, keys: 0 };
    k.key(KeyCode::Char('b'));
    k.text("disk full on web-1");
    k.key(KeyCode::Enter);
    k.key(KeyCode::Enter);
    k.text("123456");
    let created = k.key(KeyCode::Enter);
    assert_eq!(
        created,
        vec![Intent::CreateRequest {
            target: "mi-0a1b2c3d4e5f60001".into(),
            reason: "disk full on web-1".into(),
            incident: None,
            duration: Duration::from_secs(1800),
            code: "123456".into(),
            emergency: false,
        }]
    );
    update(
        k.s,
        Action::Done(Done::RequestCreated {
            id: "r-1".into(),
            emergency: None,
        }),
    );
    // The Requests tab opens with the new request selected, once it is listed.
    let pending = request("r-1", "alice", RequestState::Pending, &[]);
    update(k.s, snapshot_with(vec![older.clone(), pending], vec![]));
    assert_eq!(k.s.screen, Screen::Requests);
    assert_eq!(k.s.cursor(Screen::Requests), 1);
    // They wander off; the approval reaches them there, with a bell.
    update(k.s, Action::GoTo(Screen::Audit));
    let approved = request("r-1", "alice", RequestState::Approved, &["bob", "carol"]);
    let news = update(k.s, snapshot_with(vec![older, approved], vec![]));
    assert_eq!(news, vec![Intent::Bell]);
    assert!(matches!(
        &k.s.status,
        Some(pink_sombrero::tui::app::Status::Info(m))
            if m == "r-1 approved by bob and carol: press o to open"
    ));
    k.key(KeyCode::Char('o'));
    k.text("654321");
    let opened = k.key(KeyCode::Enter);
    assert!(
        matches!(&opened[..], [Intent::OpenSession { id, code: Some(c), .. }] if id == "r-1" && c == "654321"),
        "{opened:?}"
    );
    assert!(
        k.keys <= REQUESTER_KEYS,
        "the requester's path grew to {} keys",
        k.keys
    );

    // The approver: 3, a, code, Enter.
    let mut s = one_to_approve();
    let mut k = Counted { s: &mut s, keys: 0 };
    k.key(KeyCode::Char('3'));
    k.key(KeyCode::Char('a'));
    k.text("222222");
    let approve = k.key(KeyCode::Enter);
    assert_eq!(
        approve,
        vec![Intent::Approve {
            id: "r-2".into(),
            code: "222222".into(),
            comment: None
        }]
    );
    assert!(
        k.keys <= APPROVER_KEYS,
        "the approver's path grew to {} keys",
        k.keys
    );
}

#[test]
fn the_approval_comment_is_one_tab_away_and_deny_still_needs_one() {
    let mut s = one_to_approve();
    press(&mut s, KeyCode::Char('3'));
    press(&mut s, KeyCode::Char('a'));
    type_text(&mut s, "222222");
    press(&mut s, KeyCode::Tab);
    type_text(&mut s, "checked the disk graph");
    assert_eq!(
        press(&mut s, KeyCode::Enter),
        vec![Intent::Approve {
            id: "r-2".into(),
            code: "222222".into(),
            comment: Some("checked the disk graph".into())
        }]
    );
    update(&mut s, Action::Refused("no".into()));
    press(&mut s, KeyCode::Esc);
    press(&mut s, KeyCode::Char('d'));
    press(&mut s, KeyCode::Enter);
    type_text(&mut s, "222222");
    assert_eq!(
        press(&mut s, KeyCode::Enter),
        vec![],
        "no denial without a reason"
    );
}

#[test]
fn o_opens_the_announced_request_from_any_tab_and_a_switch_is_not_news() {
    let mut s = state();
    let approved = request("r-1", "alice", RequestState::Approved, &["bob", "carol"]);
    // The first listing (start, or a user switch) is not news: no bell, but o still opens it.
    assert_eq!(
        update(&mut s, snapshot_with(vec![approved], vec![])),
        vec![]
    );
    press(&mut s, KeyCode::Char('6'));
    press(&mut s, KeyCode::Char('o'));
    assert_eq!(
        s.form.as_ref().map(|f| f.title()),
        Some("Open the session of r-1".to_string())
    );
    press(&mut s, KeyCode::Esc);
    // Once it is no longer approved (expired), o says what to do instead.
    let expired = request("r-1", "alice", RequestState::Expired, &["bob", "carol"]);
    update(&mut s, snapshot_with(vec![expired], vec![]));
    assert_eq!(press(&mut s, KeyCode::Char('o')), vec![]);
    assert!(s.form.is_none());
    assert!(matches!(
        &s.status,
        Some(pink_sombrero::tui::app::Status::Error(m)) if m.contains("Nothing to open")
    ));
}

#[test]
fn a_command_flagged_in_a_live_session_rings_once_for_approvers() {
    let mut s = state();
    let flagged = |seqs: &[u64]| {
        Action::Snapshot(Box::new(BrokerSnapshot {
            flagged: seqs
                .iter()
                .map(|&seq| FlaggedRow {
                    seq,
                    request: "r-1".into(),
                    target: "i-0123456789abcdef0".into(),
                    summary: format!("high: hiding tracks: history cleared: history -c #{seq}"),
                })
                .collect(),
            ..BrokerSnapshot::default()
        }))
    };
    assert_eq!(
        update(&mut s, flagged(&[7])),
        vec![],
        "what was flagged before this TUI looked is not news"
    );
    assert_eq!(update(&mut s, flagged(&[9, 7])), vec![Intent::Bell]);
    assert!(matches!(
        &s.status,
        Some(pink_sombrero::tui::app::Status::Info(m))
            if m.starts_with("Flagged in r-1 on i-0123456789abcdef0: high: hiding tracks")
                && m.contains("#9")
    ));
    assert_eq!(update(&mut s, flagged(&[9, 7])), vec![], "told once");
    // The session ended (nothing live flagged): a later flag is news again.
    assert_eq!(update(&mut s, flagged(&[])), vec![]);
    assert_eq!(update(&mut s, flagged(&[12])), vec![Intent::Bell]);
}

/// A state on Fleet whose policy opens the emergency door to alice (or not).
fn door(open: bool) -> pink_sombrero::tui::app::State {
    let mut s = full_state();
    let mut snap = snapshot();
    snap.policy.emergency_allowed = open;
    update(&mut s, Action::Snapshot(Box::new(snap)));
    s
}

fn status_of(s: &pink_sombrero::tui::app::State) -> String {
    match &s.status {
        Some(
            pink_sombrero::tui::app::Status::Info(m) | pink_sombrero::tui::app::Status::Error(m),
        ) => m.clone(),
        None => String::new(),
    }
}

/// Ctrl-E on the request form turns the emergency door on; it needs the incident and a typed
/// EMERGENCY before it submits, and then asks the broker for an emergency request.
#[test]
fn the_emergency_toggle_needs_an_incident_and_a_typed_confirmation() {
    let mut s = door(true);
    press(&mut s, KeyCode::Char('b'));
    press_mod(&mut s, KeyCode::Char('e'), KeyModifiers::CONTROL);
    let f = s.form.as_ref().unwrap();
    assert!(f.emergency);
    assert_eq!(f.title(), "EMERGENCY request for mi-0a1b2c3d4e5f60001");
    assert_eq!(f.fields.len(), 5, "a Confirm field joins the form");
    type_text(&mut s, "primary db down, nobody answers");
    press(&mut s, KeyCode::Enter); // to Incident
    press(&mut s, KeyCode::Enter); // to the code, incident left empty
    type_text(&mut s, "123456");
    assert_eq!(
        press(&mut s, KeyCode::Enter),
        vec![],
        "no incident: refused"
    );
    let f = s.form.as_ref().unwrap();
    assert_eq!(f.focus, 1);
    assert!(f.error.as_deref().unwrap().contains("incident"), "{f:?}");
    type_text(&mut s, "INC-9");
    assert_eq!(press(&mut s, KeyCode::Enter), vec![], "not confirmed yet");
    let f = s.form.as_ref().unwrap();
    assert_eq!(f.focus, 4, "the Confirm field is focused");
    assert!(
        f.error.as_deref().unwrap().contains("Type EMERGENCY"),
        "{f:?}"
    );
    type_text(&mut s, "emergency");
    assert_eq!(press(&mut s, KeyCode::Enter), vec![], "the word, exactly");
    for _ in 0.."emergency".len() {
        press(&mut s, KeyCode::Backspace);
    }
    type_text(&mut s, "EMERGENCY");
    assert_eq!(
        press(&mut s, KeyCode::Enter),
        vec![Intent::CreateRequest {
            target: "mi-0a1b2c3d4e5f60001".into(),
            reason: "primary db down, nobody answers".into(),
            incident: Some("INC-9".into()),
            duration: Duration::from_secs(1800),
            code: "123456".into(),
            emergency: true,
        }]
    );
    let veto_ends = now() + chrono::Duration::seconds(120);
    update(
        &mut s,
        Action::Done(Done::RequestCreated {
            id: "r-e1".into(),
            emergency: Some(veto_ends),
        }),
    );
    assert_eq!(
        status_of(&s),
        "EMERGENCY r-e1 announced: approvers may deny it until 09:32:00 UTC; then press o to open it."
    );
}

/// Ctrl-E again makes it an ordinary request; without the door the toggle and E say why not.
#[test]
fn the_emergency_toggle_turns_off_and_is_refused_when_the_policy_says_no() {
    let mut s = door(true);
    press(&mut s, KeyCode::Char('E'));
    assert!(
        s.form.as_ref().unwrap().emergency,
        "E opens the form with the door on"
    );
    press_mod(&mut s, KeyCode::Char('e'), KeyModifiers::CONTROL);
    let f = s.form.as_ref().unwrap();
    assert!(!f.emergency);
    assert_eq!(f.fields.len(), 4);
    type_text(&mut s, "disk full on web-1");
    press(&mut s, KeyCode::Enter);
    press(&mut s, KeyCode::Enter);
    type_text(&mut s, "123456");
    assert!(matches!(
        press(&mut s, KeyCode::Enter).as_slice(),
        [Intent::CreateRequest {
            emergency: false,
            ..
        }]
    ));

    let mut s = door(false);
    press(&mut s, KeyCode::Char('E'));
    assert!(s.form.is_none());
    assert!(status_of(&s).contains("emergency door is not open to you"));
    press(&mut s, KeyCode::Char('b'));
    press_mod(&mut s, KeyCode::Char('e'), KeyModifiers::CONTROL);
    let f = s.form.as_ref().unwrap();
    assert!(!f.emergency);
    assert!(f.error.as_deref().unwrap().contains("not open to you"));
}

/// A new emergency rings once for an approver, who denies it from Approvals; once denied the
/// banner is gone.
#[test]
fn an_approver_hears_a_new_emergency_and_denies_it() {
    let mut s = state();
    let ordinary = request("r-1", "carol", RequestState::Pending, &[]);
    assert_eq!(
        update(&mut s, snapshot_with(vec![ordinary.clone()], vec![])),
        vec![]
    );
    let e = emergency("r-e1a2", "carol");
    let with = || snapshot_with(vec![e.clone(), ordinary.clone()], vec![e.clone()]);
    assert_eq!(update(&mut s, with()), vec![Intent::Bell], "one bell");
    assert!(status_of(&s).starts_with("New EMERGENCY r-e1a2 by carol."));
    assert_eq!(update(&mut s, with()), vec![], "told once");
    assert_eq!(s.loud_emergencies().len(), 1);

    press(&mut s, KeyCode::Char('3'));
    press(&mut s, KeyCode::Char('d'));
    type_text(&mut s, "call me first");
    press(&mut s, KeyCode::Enter);
    type_text(&mut s, "654321");
    assert_eq!(
        press(&mut s, KeyCode::Enter),
        vec![Intent::Deny {
            id: "r-e1a2".into(),
            code: "654321".into(),
            comment: "call me first".into(),
        }]
    );
    update(
        &mut s,
        Action::Done(Done::Denied {
            id: "r-e1a2".into(),
        }),
    );
    let mut denied = e.clone();
    denied.state = RequestState::Denied;
    update(
        &mut s,
        snapshot_with(vec![denied, ordinary.clone()], vec![]),
    );
    assert!(s.loud_emergencies().is_empty());

    // My own emergency does not ring for me.
    let mut mine = state();
    update(&mut mine, snapshot_with(vec![], vec![]));
    let own = emergency("r-e2", "alice");
    assert_eq!(update(&mut mine, snapshot_with(vec![own], vec![])), vec![]);
}

/// The requester may cancel an emergency request in its veto window, as any of their own.
#[test]
fn c_cancels_my_emergency_request() {
    let mut s = state();
    update(
        &mut s,
        snapshot_with(vec![emergency("r-e1", "alice")], vec![]),
    );
    press(&mut s, KeyCode::Char('2'));
    assert_eq!(
        press(&mut s, KeyCode::Char('c')),
        vec![Intent::Cancel { id: "r-e1".into() }]
    );
}
