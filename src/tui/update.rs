//! The pure update: `(state, action) -> intents`. No I/O here; the driver performs the intents.

use std::collections::HashSet;

use super::action::{Action, Done, Screen};
use super::app::{State, Status};
use super::form::{Form, Purpose, decision_context};
use super::intent::Intent;
use super::model::{Loadable, RequestState};
use super::notice;
use super::session::{self, Chord, Liveness, SessionPane};

/// Applies one action to the state and returns what the driver must do.
pub fn update(s: &mut State, action: Action) -> Vec<Intent> {
    match action {
        Action::NextTab => go_to(s, Screen::ALL[(s.screen.index() + 1) % Screen::ALL.len()]),
        Action::PrevTab => go_to(
            s,
            Screen::ALL[(s.screen.index() + Screen::ALL.len() - 1) % Screen::ALL.len()],
        ),
        Action::GoTo(screen) => go_to(s, screen),
        Action::Up => move_cursor(s, -1),
        Action::Down => move_cursor(s, 1),
        Action::PageUp => move_cursor(s, -page(s)),
        Action::PageDown => move_cursor(s, page(s)),
        Action::Back => return back(s),
        Action::Quit => return quit(s),
        Action::Help => s.help = true,
        Action::StartFilter => start_filter(s),
        Action::StartRequest => start_request(s),
        Action::ToggleMine => {
            s.only_mine = !s.only_mine;
            s.clamp_cursor(Screen::Requests);
        }
        Action::OpenSession => return open_session(s),
        Action::CancelRequest => return cancel_request(s),
        Action::KillSession => return kill_session(s),
        Action::WatchSession => return watch_session(s),
        Action::Approve | Action::Deny => start_decision(s, action == Action::Approve),
        Action::SwitchUser => s.form = Some(Form::switch_user()),
        Action::OpenRecording => return open_recording(s),
        Action::ToggleToReview => {
            s.to_review = !s.to_review;
            s.cursors[Screen::Recordings.index()].selected = 0;
        }
        Action::StartEmergency => {
            start_request(s);
            if let Some(Err(why)) = s.form.as_mut().map(Form::toggle_emergency) {
                s.form = None;
                s.status = Some(Status::Error(why));
            }
        }
        Action::ToggleEmergency => {
            if let Some(f) = s.form.as_mut()
                && !f.busy
                && let Err(why) = f.toggle_emergency()
            {
                f.error = Some(why);
            }
        }
        Action::ToggleDemo => {
            if s.demo_codes.is_some() {
                s.demo_flipped = !s.demo_flipped;
            } else {
                s.status = Some(Status::Info(
                    "There is a DEMO panel only in `sombrero demo`.".to_string(),
                ));
            }
        }
        Action::NextField | Action::PrevField => {
            if let Some(f) = s.form.as_mut() {
                let n = f.fields.len();
                f.focus = if action == Action::NextField {
                    (f.focus + 1) % n
                } else {
                    (f.focus + n - 1) % n
                };
            }
        }
        Action::Submit => return submit(s),
        Action::Backspace => edit(s, |t| {
            t.pop();
        }),
        Action::Input(c) => edit(s, |t| t.push(c)),
        Action::Paste(text) => {
            if s.session_attached() {
                return vec![Intent::SendInput(text.into_bytes())];
            }
            let line: String = text.chars().filter(|c| !c.is_control()).collect();
            edit(s, |t| t.push_str(&line));
        }
        Action::SessionKey(key) => return session_key(s, key),
        Action::Tick(now) => return tick(s, now),
        Action::Resize(cols, rows) => return resize(s, (cols, rows)),
        Action::Snapshot(snapshot) => return snapshot_arrived(s, *snapshot),
        Action::Fleet(fleet) => {
            s.fleet = fleet;
            s.refilter_fleet();
        }
        Action::ConnectionLost(msg) => {
            if matches!(s.broker, Loadable::Loading) {
                s.broker = Loadable::Failed(msg.clone());
            }
            s.connection_lost = Some(msg);
        }
        Action::DemoCodes(codes) => s.demo_codes = Some(codes),
        Action::Done(done) => return done_(s, done),
        Action::Refused(msg) => match s.form.as_mut() {
            Some(f) => {
                f.busy = false;
                f.error = Some(msg);
                // A refused code is spent or wrong either way: empty it, ready for the next.
                if let Some(i) = f.fields.iter().position(|f| f.masked) {
                    f.fields[i].value.clear();
                    f.focus = i;
                }
            }
            None => s.status = Some(Status::Error(msg)),
        },
        Action::SessionOutput(bytes) => {
            if let Some(p) = s.session.as_mut() {
                p.parser.process(&bytes);
            }
        }
        Action::SessionNotice(msg) => {
            if let Some(p) = s.session.as_mut() {
                p.notice = Some(msg);
            }
        }
        Action::SessionClosed(msg) => {
            if let Some(p) = s.session.as_mut() {
                p.liveness = Liveness::Ended(msg.clone());
            }
            s.status = Some(Status::Info(format!("{msg}. Recordings (5) replays it.")));
            return vec![Intent::Reload];
        }
    }
    Vec::new()
}

/// The clock moved; a session whose grant ended is ended (once), whatever else should have.
fn tick(s: &mut State, now: chrono::DateTime<chrono::Utc>) -> Vec<Intent> {
    s.now = now;
    match s.session.as_mut() {
        Some(p) if p.is_live() && !p.end_requested && p.ends_at.is_some_and(|t| t <= now) => {
            p.end_requested = true;
            p.notice = Some("the approved time is over: ending the session".to_string());
            vec![Intent::EndSession]
        }
        _ => Vec::new(),
    }
}

fn go_to(s: &mut State, screen: Screen) {
    s.screen = screen;
    s.help = false;
}

fn page(s: &State) -> isize {
    isize::from(
        u8::try_from(s.size.1.saturating_sub(8))
            .unwrap_or(u8::MAX)
            .max(1),
    )
}

fn move_cursor(s: &mut State, delta: isize) {
    let n = s.row_count(s.screen);
    let c = &mut s.cursors[s.screen.index()].selected;
    *c = c.saturating_add_signed(delta).min(n.saturating_sub(1));
}

fn back(s: &mut State) -> Vec<Intent> {
    if s.help {
        s.help = false;
    } else if s.form.take().is_some() {
        s.status = Some(Status::Info("Cancelled.".to_string()));
    } else if s.fleet_filter.editing || s.audit_filter.editing {
        let f = if s.screen == Screen::Fleet {
            &mut s.fleet_filter
        } else {
            &mut s.audit_filter
        };
        *f = Default::default();
        s.refilter_fleet();
    } else if s.screen != Screen::Fleet {
        s.screen = Screen::Fleet;
    } else {
        return quit(s);
    }
    Vec::new()
}

fn quit(s: &mut State) -> Vec<Intent> {
    s.quit = true;
    let mut intents = Vec::new();
    if s.session.as_ref().is_some_and(|p| p.is_live()) {
        intents.push(Intent::EndSession);
    }
    intents.push(Intent::Quit);
    intents
}

fn start_filter(s: &mut State) {
    match s.screen {
        Screen::Fleet => s.fleet_filter.editing = true,
        Screen::Audit => s.audit_filter.editing = true,
        _ => {}
    }
}

fn start_request(s: &mut State) {
    let limits = s
        .broker
        .ready()
        .map(|b| b.policy.clone())
        .unwrap_or_default();
    match s.selected_node() {
        Some(node) => s.form = Some(Form::new_request(&node.id, limits)),
        None => {
            s.status = Some(Status::Error(
                "No node selected: wait for the fleet to load, or clear the filter (/ then Esc)."
                    .to_string(),
            ))
        }
    }
}

fn selected_request(s: &State) -> Option<super::model::RequestRow> {
    s.visible_requests()
        .get(s.cursor(Screen::Requests))
        .map(|r| (*r).clone())
}

fn open_session(s: &mut State) -> Vec<Intent> {
    if s.session.as_ref().is_some_and(|p| p.is_live()) {
        s.screen = Screen::Session;
        return Vec::new();
    }
    let Some(r) = request_to_open(s) else {
        s.status = Some(Status::Error(
            "Nothing to open: on Requests (2) select your approved request and press o."
                .to_string(),
        ));
        return Vec::new();
    };
    let problem = if r.requester != s.user {
        Some(format!(
            "Only {} can open this session (you act as {}; press u to switch).",
            r.requester, s.user
        ))
    } else if r.state != RequestState::Approved {
        Some(format!(
            "This request is {}: a session opens only once it is approved ({}/{} approvals).",
            r.state.label(),
            r.approved_by.len(),
            r.approvals_required
        ))
    } else {
        None
    };
    if let Some(p) = problem {
        s.status = Some(Status::Error(p));
        return Vec::new();
    }
    let (rows, cols) = session::pane_size(s.size);
    let code_at_open = s.broker.ready().is_none_or(|b| b.policy.code_at_open);
    if code_at_open {
        s.form = Some(Form::code_only(Purpose::Open {
            id: r.id,
            rows,
            cols,
        }));
        return Vec::new();
    }
    s.status = Some(Status::Info(format!(
        "Opening {}: tainting {} first, then starting the recorded session...",
        r.id, r.target
    )));
    vec![Intent::OpenSession {
        id: r.id,
        rows,
        cols,
        code: None,
    }]
}

/// The request `o` opens: on Requests the selected one, unless it is not my approved request
/// and one was announced; elsewhere the announced one.
fn request_to_open(s: &State) -> Option<super::model::RequestRow> {
    let announced = || {
        let id = &s.notice.as_ref()?.id;
        s.broker
            .ready()?
            .requests
            .iter()
            .find(|r| &r.id == id)
            .cloned()
    };
    let selected = (s.screen == Screen::Requests)
        .then(|| selected_request(s))
        .flatten();
    match selected {
        Some(r) if r.requester == s.user && r.state == RequestState::Approved => Some(r),
        Some(r) => announced().or(Some(r)),
        None => announced(),
    }
}

fn cancel_request(s: &mut State) -> Vec<Intent> {
    match selected_request(s) {
        Some(r)
            if r.requester == s.user
                && matches!(
                    r.state,
                    RequestState::Pending | RequestState::Emergency | RequestState::Approved
                ) =>
        {
            vec![Intent::Cancel { id: r.id }]
        }
        Some(_) => {
            s.status = Some(Status::Error(
                "Only your own pending, emergency or approved requests can be cancelled."
                    .to_string(),
            ));
            Vec::new()
        }
        None => Vec::new(),
    }
}

fn watch_session(s: &mut State) -> Vec<Intent> {
    if s.session.as_ref().is_some_and(|p| p.is_live()) {
        s.status = Some(Status::Error(
            "A session pane is already open: end or leave it first (o returns to it).".to_string(),
        ));
        return Vec::new();
    }
    match selected_request(s) {
        Some(r) if r.state == RequestState::Active => {
            let (rows, cols) = session::pane_size(s.size);
            s.status = Some(Status::Info(format!(
                "Watching {} read-only: {} on {}...",
                r.id, r.requester, r.target
            )));
            vec![Intent::WatchSession {
                id: r.id,
                rows,
                cols,
            }]
        }
        Some(_) => {
            s.status = Some(Status::Error(
                "Only an active request has a session to watch.".to_string(),
            ));
            Vec::new()
        }
        None => Vec::new(),
    }
}

fn kill_session(s: &mut State) -> Vec<Intent> {
    match selected_request(s) {
        Some(r) if r.state == RequestState::Active => {
            s.form = Some(Form::code_only(Purpose::Kill { id: r.id }));
            Vec::new()
        }
        Some(_) => {
            s.status = Some(Status::Error(
                "Only an active request has a session to end.".to_string(),
            ));
            Vec::new()
        }
        None => Vec::new(),
    }
}

fn start_decision(s: &mut State, approve: bool) {
    let request = s
        .broker
        .ready()
        .and_then(|b| b.approvals.get(s.cursor(Screen::Approvals)))
        .map(|a| a.request.clone());
    match request {
        Some(r) => {
            // What is being decided, on the form itself: the node's name comes from the
            // fleet view when it is loaded.
            let node = s
                .fleet
                .ready()
                .and_then(|f| f.iter().find(|n| n.id == r.target))
                .map(|n| n.name.clone());
            let context = decision_context(&r, node.as_deref(), s.now);
            let form = if approve {
                Form::approve(&r.id)
            } else {
                Form::deny(&r.id)
            };
            s.form = Some(form.with_context(context));
        }
        None => {
            s.status = Some(Status::Error(
                "Nothing to decide: the queue is empty for this user (press u to switch user)."
                    .to_string(),
            ))
        }
    }
}

/// The status line after an approval: a partial approval must never read as final.
pub fn approved_status(
    id: &str,
    approvals: usize,
    needed: u32,
    complete: bool,
    requester: &str,
) -> String {
    if complete {
        format!("APPROVED {id} ({approvals} of {needed}): {requester} may open it now.")
    } else {
        format!("Your approval of {id} is recorded: {approvals} of {needed}. Still PENDING.")
    }
}

fn open_recording(s: &mut State) -> Vec<Intent> {
    let Some(b) = s.broker.ready() else {
        return Vec::new();
    };
    let at = s.cursor(Screen::Recordings);
    let recording = if s.to_review {
        // The queue names requests; their recordings are listed (or not yet) on the side.
        b.reviews
            .get(at)
            .and_then(|q| b.recordings.iter().find(|r| r.request == q.request))
    } else {
        b.recordings.get(at)
    };
    match recording {
        Some(r) => vec![Intent::OpenRecording(r.path.clone())],
        None if s.to_review && !b.reviews.is_empty() => {
            s.status = Some(Status::Error(
                "No recording of that session is listed here (r shows all recordings).".to_string(),
            ));
            Vec::new()
        }
        None => Vec::new(),
    }
}

fn submit(s: &mut State) -> Vec<Intent> {
    if let Some(f) = s.form.as_mut() {
        if f.busy {
            return Vec::new();
        }
        if !f.submits_on_enter() {
            f.focus += 1;
            return Vec::new();
        }
        return match f.validate() {
            Ok(intent) => {
                f.busy = true;
                f.error = None;
                vec![intent]
            }
            Err((field, msg)) => {
                f.focus = field;
                f.error = Some(msg);
                Vec::new()
            }
        };
    }
    s.fleet_filter.editing = false;
    s.audit_filter.editing = false;
    Vec::new()
}

fn edit(s: &mut State, change: impl FnOnce(&mut String)) {
    if let Some(f) = s.form.as_mut() {
        if !f.busy
            && let Some(t) = f.focused_mut()
        {
            change(t);
            f.error = None;
        }
    } else if s.fleet_filter.editing {
        change(&mut s.fleet_filter.text);
        s.refilter_fleet();
    } else if s.audit_filter.editing {
        change(&mut s.audit_filter.text);
        s.clamp_cursor(Screen::Audit);
    }
}

fn session_key(s: &mut State, key: crossterm::event::KeyEvent) -> Vec<Intent> {
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

fn resize(s: &mut State, size: (u16, u16)) -> Vec<Intent> {
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

fn snapshot_arrived(s: &mut State, snapshot: super::model::BrokerSnapshot) -> Vec<Intent> {
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
    let fresh: Vec<&super::model::ApprovalItem> = match &s.seen_approvals {
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
fn emergency_arrived(s: &mut State, snapshot: &super::model::BrokerSnapshot) -> Vec<Intent> {
    let now: HashSet<String> = snapshot
        .requests
        .iter()
        .filter(|r| r.state == RequestState::Emergency)
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

fn done_(s: &mut State, done: Done) -> Vec<Intent> {
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
