//! Shared fixtures for the TUI tests: a fixed clock, sample rows, key presses.

use chrono::{DateTime, TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use pink_sombrero::tui::action::Action;
use pink_sombrero::tui::app::State;
use pink_sombrero::tui::intent::Intent;
use pink_sombrero::tui::keymap;
use pink_sombrero::tui::model::*;
use pink_sombrero::tui::update::update;

/// The lifecycle state, named apart from the TUI's `State` (the app's).
pub use pink_sombrero::request::State as RequestState;

/// The fixed "now" of every test.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 30, 0).unwrap()
}

/// `now` minus some seconds.
pub fn ago(secs: i64) -> DateTime<Utc> {
    now() - chrono::Duration::seconds(secs)
}

/// A fresh state for alice in a 100x30 terminal.
pub fn state() -> State {
    State::new("alice", now(), (100, 30))
}

/// Three nodes with every kind of badge.
pub fn fleet() -> Vec<FleetRow> {
    vec![
        FleetRow {
            id: "mi-0a1b2c3d4e5f60001".into(),
            name: "web-1".into(),
            ping: "Online".into(),
            platform: "Linux".into(),
            since: Some(ago(3 * 86400)),
            badges: vec![Badge::Old],
        },
        FleetRow {
            id: "mi-0a1b2c3d4e5f60002".into(),
            name: "db-primary".into(),
            ping: "Online".into(),
            platform: "Linux".into(),
            since: Some(ago(7200)),
            badges: vec![Badge::Tainted, Badge::Replacing],
        },
        FleetRow {
            id: "mi-0a1b2c3d4e5f60003".into(),
            name: "batch-7".into(),
            ping: "ConnectionLost".into(),
            platform: "Linux".into(),
            since: None,
            badges: vec![Badge::Rogue],
        },
    ]
}

/// A request in some state.
pub fn request(id: &str, requester: &str, state: RequestState, approved_by: &[&str]) -> RequestRow {
    RequestRow {
        id: id.into(),
        requester: requester.into(),
        target: "mi-0a1b2c3d4e5f60001".into(),
        reason: "disk full on web-1, logrotate stuck".into(),
        incident: Some("INC-4211".into()),
        duration_secs: 1800,
        state,
        approved_by: approved_by.iter().map(|s| s.to_string()).collect(),
        approvals_required: 2,
        created_at: ago(300),
        deadline: Some(now() + chrono::Duration::seconds(723)),
        emergency: None,
    }
}

/// A full broker snapshot.
pub fn snapshot() -> BrokerSnapshot {
    BrokerSnapshot {
        user: String::new(),
        requests: vec![
            request("r-7f3a", "alice", RequestState::Pending, &["bob"]),
            request("r-51c0", "carol", RequestState::Approved, &["alice", "bob"]),
            request("r-0d9e", "alice", RequestState::Closed, &["bob", "carol"]),
        ],
        approvals: vec![ApprovalItem {
            request: request("r-9b2e", "carol", RequestState::Pending, &[]),
        }],
        audit: vec![
            AuditRow {
                seq: 3,
                at: ago(60),
                actor: "bob".into(),
                kind: "request.approved".into(),
                request: Some("r-7f3a".into()),
                detail: "1/2".into(),
            },
            AuditRow {
                seq: 2,
                at: ago(90),
                actor: "bob".into(),
                kind: "mfa.failed".into(),
                request: None,
                detail: "wrong code".into(),
            },
            AuditRow {
                seq: 1,
                at: ago(300),
                actor: "alice".into(),
                kind: "request.created".into(),
                request: Some("r-7f3a".into()),
                detail: "mi-0a1b2c3d4e5f60001".into(),
            },
        ],
        chain: Some(ChainStatus::Intact { events: 3 }),
        recordings: vec![
            RecordingRow {
                path: "/data/recordings/r-0d9e.cast".into(),
                request: "r-0d9e".into(),
                target: "mi-0a1b2c3d4e5f60001".into(),
                user: "alice".into(),
                started_at: ago(86400),
                duration_secs: 754,
                integrity: Integrity::Sealed,
                reviewed_by: Some("carol".into()),
                flags: Some(FlagSummary {
                    text: "2H 1M".into(),
                    worst: Some(FlagLevel::High),
                }),
            },
            RecordingRow {
                path: "/data/recordings/r-0c11.cast".into(),
                request: "r-0c11".into(),
                target: "mi-0a1b2c3d4e5f60002".into(),
                user: "bob".into(),
                started_at: ago(2 * 86400),
                duration_secs: 61,
                integrity: Integrity::Unsealed,
                reviewed_by: None,
                flags: Some(FlagSummary {
                    text: "-".into(),
                    worst: None,
                }),
            },
            RecordingRow {
                path: "/data/recordings/r-0b02.cast".into(),
                request: "r-0b02".into(),
                target: "mi-0a1b2c3d4e5f60003".into(),
                user: "bob".into(),
                started_at: ago(3 * 86400),
                duration_secs: 5,
                integrity: Integrity::Broken("line 17 altered".into()),
                reviewed_by: None,
                flags: None,
            },
        ],
        active_targets: vec!["mi-0a1b2c3d4e5f60001".into()],
        rogue_targets: vec![],
        flagged: vec![],
        reviews: vec![],
        reviewer: false,
        policy: PolicyLimits::default(),
    }
}

/// A state with everything loaded.
pub fn full_state() -> State {
    let mut s = state();
    update(&mut s, Action::Fleet(Loadable::Ready(fleet())));
    update(&mut s, Action::Snapshot(Box::new(snapshot())));
    s
}

/// Presses one key: keymap then update.
pub fn press(s: &mut State, code: KeyCode) -> Vec<Intent> {
    press_mod(s, code, KeyModifiers::NONE)
}

/// Presses one key with modifiers.
pub fn press_mod(s: &mut State, code: KeyCode, mods: KeyModifiers) -> Vec<Intent> {
    match keymap::action_for(s, KeyEvent::new(code, mods)) {
        Some(a) => update(s, a),
        None => Vec::new(),
    }
}

/// Types text key by key; returns every intent produced.
pub fn type_text(s: &mut State, text: &str) -> Vec<Intent> {
    text.chars()
        .flat_map(|c| press(s, KeyCode::Char(c)))
        .collect()
}

/// An emergency request by `requester` inside its veto window (90 s left).
pub fn emergency(id: &str, requester: &str) -> RequestRow {
    let veto_ends = now() + chrono::Duration::seconds(90);
    RequestRow {
        state: RequestState::Emergency,
        deadline: Some(veto_ends),
        emergency: Some(veto_ends),
        reason: "primary db down, nobody answers".into(),
        ..request(id, requester, RequestState::Emergency, &[])
    }
}

/// The review queue: an overdue emergency session with one of two sign-offs, and an ordinary
/// one due in 5 hours.
pub fn reviews() -> Vec<ReviewRow> {
    vec![
        ReviewRow {
            request: "r-0c11".into(),
            requester: "bob".into(),
            target: "mi-0a1b2c3d4e5f60002".into(),
            ended_at: ago(2 * 86400),
            due_at: ago(86400),
            sign_offs: vec!["carol".into()],
            needed: 2,
            emergency: true,
        },
        ReviewRow {
            request: "r-0b02".into(),
            requester: "bob".into(),
            target: "mi-0a1b2c3d4e5f60003".into(),
            ended_at: ago(3600),
            due_at: now() + chrono::Duration::hours(5),
            sign_offs: vec![],
            needed: 1,
            emergency: false,
        },
    ]
}
