//! What comes back to the update: keys for a live session, a resized terminal, a broker
//! snapshot (with the emergencies it brings) and the outcome of an intent.

use std::collections::HashSet;

use super::approved_status;
use crate::request;
use crate::tui::action::{Done, Screen};
use crate::tui::app::{State, Status};
use crate::tui::intent::Intent;
use crate::tui::model::Loadable;
use crate::tui::notice;
use crate::tui::session::{self, Chord, SessionPane};

pub(super) fn session_key(s: &mut State, key: crossterm::event::KeyEvent) -> Vec<Intent> {
    let Some(p) = s.session.as_mut() else {
        return Vec::new();
    };
    let chord = session::interpret(key, p.prefix_pending);
    p.prefix_pending = chord == Chord::Prefix;
    match chord {
        Chord::Send(bytes) => vec![Intent::SendInput(bytes)],
        Chord::Detach => {
            s.screen = Screen::Requests;
            s.status = Some(Status::Info(
                "Detached: the session keeps running and recording. Press 4 then o to return."
                    .to_string(),
            ));
            Vec::new()
        }
        Chord::End => {
            p.end_requested = true;
            vec![Intent::EndSession]
        }
        Chord::Prefix | Chord::Nothing => Vec::new(),
    }
}

pub(super) fn resize(s: &mut State, size: (u16, u16)) -> Vec<Intent> {
    s.size = size;
    let pane = session::pane_size(size);
    match s.session.as_mut() {
        Some(p) if p.is_live() && p.parser.screen().size() != pane => {
            let (rows, cols) = p.resize(pane);
            vec![Intent::Resize { rows, cols }]
        }
        _ => Vec::new(),
    }
}

pub(super) fn snapshot_arrived(
    s: &mut State,
    snapshot: crate::tui::model::BrokerSnapshot,
) -> Vec<Intent> {
    if !snapshot.user.is_empty() && snapshot.user != s.user {
        // Read for the previous acting user while the switch happened: its queue is not ours.
        return Vec::new();
    }
    let ids: HashSet<String> = snapshot
        .approvals
        .iter()
        .map(|a| a.request.id.clone())
        .collect();
    // Emergencies ring on their own line below; this one is for the ordinary queue.
    let fresh: Vec<&crate::tui::model::ApprovalItem> = match &s.seen_approvals {
        Some(seen) => snapshot
            .approvals
            .iter()
            .filter(|a| !seen.contains(&a.request.id) && a.request.emergency.is_none())
            .collect(),
        None => Vec::new(),
    };
    let mut intents = Vec::new();
    if let Some(a) = fresh.first() {
        s.status = Some(Status::Info(format!(
            "New approval request: {} wants {} ({}). See Approvals (3).",
            a.request.requester, a.request.target, a.request.reason
        )));
        intents.push(Intent::Bell);
    }
    s.seen_approvals = Some(ids);
    // A command flagged in a live session rings once for each newer one (not on the first
    // snapshot: that is not news).
    let newest = snapshot.flagged.first();
    if let (Some(seen), Some(f)) = (s.seen_flag, newest)
        && f.seq > seen
    {
        s.status = Some(Status::Info(format!(
            "Flagged in {} on {}: {}. See Approvals (3).",
            f.request, f.target, f.summary
        )));
        intents.push(Intent::Bell);
    }
    let newest_seq = newest.map_or(0, |f| f.seq);
    s.seen_flag = Some(s.seen_flag.unwrap_or(0).max(newest_seq));
    intents.extend(emergency_arrived(s, &snapshot));
    let before = s.broker.ready().map(|b| b.requests.as_slice());
    if let Some((approved, ring)) = notice::on_listing(before, &snapshot.requests, &s.user) {
        s.status = Some(Status::Info(approved.message()));
        if ring {
            intents.push(Intent::Bell);
        }
        s.notice = Some(approved);
    }
    if s.notice
        .as_ref()
        .is_some_and(|n| !notice::still_open(n, &snapshot.requests))
    {
        s.notice = None;
    }
    s.broker = Loadable::Ready(snapshot);
    s.connection_lost = None;
    for screen in Screen::ALL {
        s.clamp_cursor(screen);
    }
    select_pending(s);
    intents
}

/// A new emergency request (not mine) in its veto window rings, once each; the first snapshot
/// is not news, its emergencies are on the banner already.
fn emergency_arrived(s: &mut State, snapshot: &crate::tui::model::BrokerSnapshot) -> Vec<Intent> {
    let now: HashSet<String> = snapshot
        .requests
        .iter()
        .filter(|r| r.state == request::State::Emergency)
        .map(|r| r.id.clone())
        .collect();
    let fresh = s.seen_emergencies.as_ref().and_then(|seen| {
        snapshot
            .requests
            .iter()
            .find(|r| now.contains(&r.id) && !seen.contains(&r.id) && r.requester != s.user)
    });
    let mut intents = Vec::new();
    if let Some(r) = fresh {
        let mut msg = format!("New EMERGENCY {} by {}.", r.id, r.requester);
        if snapshot.approvals.iter().any(|a| a.request.id == r.id) {
            msg.push_str(" On Approvals (3), d denies it.");
        }
        s.status = Some(Status::Error(msg));
        intents.push(Intent::Bell);
    }
    let mut seen = s.seen_emergencies.take().unwrap_or_default();
    seen.extend(now);
    s.seen_emergencies = Some(seen);
    intents
}

/// Selects the request waiting to be selected (the one just created) once it is listed.
fn select_pending(s: &mut State) {
    let Some(id) = s.select_request.clone() else {
        return;
    };
    if let Some(i) = s.visible_requests().iter().position(|r| r.id == id) {
        s.cursors[Screen::Requests.index()].selected = i;
        s.select_request = None;
    }
}

pub(super) fn done_(s: &mut State, done: Done) -> Vec<Intent> {
    let needed = s.broker.ready().map_or(2, |b| b.policy.approvals_required);
    let message = match done {
        Done::RequestCreated { id, emergency } => {
            s.screen = Screen::Requests;
            s.select_request = Some(id.clone());
            select_pending(s);
            match emergency {
                Some(until) => format!(
                    "EMERGENCY {id} announced: approvers may deny it until {}; then press o to open it.",
                    until.format("%H:%M:%S UTC")
                ),
                None => format!(
                    "Request {id} created: it needs {needed} approvals (approvers see it on Approvals, 3)."
                ),
            }
        }
        Done::Approved {
            id,
            approvals,
            complete,
            requester,
        } => approved_status(&id, approvals, needed, complete, &requester),
        Done::Denied { id } => format!("Denied {id}."),
        Done::Cancelled { id } => format!("Cancelled {id}."),
        Done::Killed { id } => {
            format!("Ended the session of {id}; it is being sealed and replaced.")
        }
        Done::UserSwitched { name } => {
            s.user = name.clone();
            s.seen_approvals = None;
            s.seen_flag = None;
            s.seen_emergencies = None;
            s.notice = None;
            // The queue on screen was the previous user's: show loading until ours arrives.
            s.broker = Loadable::Loading;
            format!("You now act as {name}.")
        }
        Done::SessionOpened {
            request,
            target,
            ends_at,
            recording,
        } => {
            let pane = session::pane_size(s.size);
            if s.notice.as_ref().is_some_and(|n| n.id == request) {
                s.notice = None;
            }
            s.session = Some(SessionPane::new(
                &request, &target, ends_at, recording, pane,
            ));
            s.screen = Screen::Session;
            format!("Session open on {target}. {}", session::CHORD_HELP)
        }
        Done::RecordingClosed => "Player closed.".to_string(),
    };
    s.form = None;
    s.status = Some(Status::Info(message));
    vec![Intent::Reload]
}
