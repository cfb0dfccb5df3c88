//! What the person does to a request from the lists: ask, open, cancel, watch, kill,
//! decide, replay its recording, and the form that collects what an action needs.

use crate::request;
use crate::tui::action::Screen;
use crate::tui::app::{State, Status};
use crate::tui::form::{Form, Purpose, decision_context};
use crate::tui::intent::Intent;
use crate::tui::model::state_label;
use crate::tui::session;

pub(super) fn start_request(s: &mut State) {
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

fn selected_request(s: &State) -> Option<crate::tui::model::RequestRow> {
    s.visible_requests()
        .get(s.cursor(Screen::Requests))
        .map(|r| (*r).clone())
}

pub(super) fn open_session(s: &mut State) -> Vec<Intent> {
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
    } else if r.state != request::State::Approved {
        Some(format!(
            "This request is {}: a session opens only once it is approved ({}/{} approvals).",
            state_label(r.state),
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
fn request_to_open(s: &State) -> Option<crate::tui::model::RequestRow> {
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
        Some(r) if r.requester == s.user && r.state == request::State::Approved => Some(r),
        Some(r) => announced().or(Some(r)),
        None => announced(),
    }
}

pub(super) fn cancel_request(s: &mut State) -> Vec<Intent> {
    match selected_request(s) {
        Some(r)
            if r.requester == s.user
                && matches!(
                    r.state,
                    request::State::Pending | request::State::Emergency | request::State::Approved
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

pub(super) fn watch_session(s: &mut State) -> Vec<Intent> {
    if s.session.as_ref().is_some_and(|p| p.is_live()) {
        s.status = Some(Status::Error(
            "A session pane is already open: end or leave it first (o returns to it).".to_string(),
        ));
        return Vec::new();
    }
    match selected_request(s) {
        Some(r) if r.state == request::State::Active => {
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

pub(super) fn kill_session(s: &mut State) -> Vec<Intent> {
    match selected_request(s) {
        Some(r) if r.state == request::State::Active => {
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

pub(super) fn start_decision(s: &mut State, approve: bool) {
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

pub(super) fn open_recording(s: &mut State) -> Vec<Intent> {
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

pub(super) fn submit(s: &mut State) -> Vec<Intent> {
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

pub(super) fn edit(s: &mut State, change: impl FnOnce(&mut String)) {
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
