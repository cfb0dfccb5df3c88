//! The pure update: `(state, action) -> intents`. No I/O here; the driver performs the intents.

use super::action::{Action, Screen};
use super::app::{State, Status};
use super::form::Form;
use super::intent::Intent;
use super::model::Loadable;
use super::session::Liveness;
mod arrivals;
mod requests;

use arrivals::{done_, resize, session_key, snapshot_arrived};
use requests::{
    cancel_request, edit, kill_session, open_recording, open_session, start_decision,
    start_request, submit, watch_session,
};

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
