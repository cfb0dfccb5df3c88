//! The driver: terminal events, timers and results in; `update`; intents performed; redraw.
//!
//! One loop owns the state. The broker is synchronous, so its calls run on blocking threads and
//! report back as actions on an unbounded control channel. A watcher polls the broker's
//! revision so changes from other processes show up within a second; a redraw happens only
//! after something happened (plus a one-second clock tick), and queued actions are drained
//! before drawing so bursts of session output cost one frame.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use crossterm::event::{Event, EventStream, KeyEventKind};
use futures_util::{Stream, StreamExt};
use thiserror::Error;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::{MissedTickBehavior, interval};

use crate::backend::Backend;
use crate::channel::client::SessionEvent;

use super::action::{Action, Done};
use super::app::State;
use super::broker_view;
use super::intent::Intent;
use super::keymap;
use super::model::{DemoCode, Loadable};
use super::terminal::TerminalGuard;
use super::theme::Theme;
use super::update::update;
use super::views;
pub use super::watch::{FLEET_POLL, REVISION_POLL};
use super::watch::{Shared, watch_broker, watch_fleet};

/// Clock tick: time-left counters and demo codes move once a second.
pub const TICK: Duration = Duration::from_secs(1);
/// Keystrokes queued for a session before input is refused.
pub const INPUT_QUEUE: usize = 256;

/// Current demo codes (demo mode only).
pub type DemoCodesFn = Arc<dyn Fn() -> Vec<DemoCode> + Send + Sync>;

pub use crate::backend::{OpenedSession, SessionControl, SessionRequest};

/// Which parts of the backend the TUI uses; a part left out explains itself on screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// The Fleet view (off: the Fleet screen says no fleet is configured).
    pub fleet: bool,
    /// Opening and watching sessions (off: `o` says to use `sombrero open`).
    pub sessions: bool,
    /// The Recordings view.
    pub recordings: bool,
    /// Replaying a recording (off: Enter says to use `sombrero replay`).
    pub replay: bool,
}

impl Parts {
    /// Everything.
    pub const ALL: Parts = Parts {
        fleet: true,
        sessions: true,
        recordings: true,
        replay: true,
    };
    /// Requests only.
    pub const NONE: Parts = Parts {
        fleet: false,
        sessions: false,
        recordings: false,
        replay: false,
    };
}

/// Everything the TUI needs from the rest of the program.
pub struct TuiContext {
    /// The broker, embedded or a daemon: requests, fleet, recordings and sessions.
    pub backend: Arc<dyn Backend>,
    /// The acting user at start.
    pub user: String,
    /// Colours.
    pub theme: Theme,
    /// Demo codes; `Some` shows the DEMO panel.
    pub demo_codes: Option<DemoCodesFn>,
    /// The parts of the backend in use.
    pub parts: Parts,
}

/// Errors that end the TUI.
#[derive(Debug, Error)]
pub enum TuiError {
    /// The terminal could not be set up or drawn to.
    #[error("terminal error: {0} (is this an interactive terminal?)")]
    Terminal(#[from] std::io::Error),
    /// The broker could not be reached or opened.
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
}

/// The running session, as the loop holds it.
struct LiveSession {
    input: mpsc::Sender<Vec<u8>>,
    control: Box<dyn SessionControl>,
    events: mpsc::Receiver<SessionEvent>,
}

/// Where frames go, and the other things the loop does to the terminal.
pub trait Console {
    /// Current size (columns, rows).
    fn size(&self) -> std::io::Result<(u16, u16)>;
    /// Draws one frame.
    fn draw(&mut self, state: &State, theme: &Theme) -> std::io::Result<()>;
    /// Rings the bell.
    fn bell(&mut self) -> std::io::Result<()>;
    /// Hands the terminal to something else (the player).
    fn suspend(&mut self);
    /// Takes it back.
    fn resume(&mut self) -> std::io::Result<()>;
}

impl Console for TerminalGuard {
    fn size(&self) -> std::io::Result<(u16, u16)> {
        let s = self.terminal.size()?;
        Ok((s.width, s.height))
    }

    fn draw(&mut self, state: &State, theme: &Theme) -> std::io::Result<()> {
        use crossterm::terminal::{BeginSynchronizedUpdate, EndSynchronizedUpdate};
        // One synchronized update per frame: the terminal shows it whole, never half drawn.
        crossterm::execute!(std::io::stdout(), BeginSynchronizedUpdate)?;
        self.terminal.draw(|f| views::draw(f, state, theme))?;
        crossterm::execute!(std::io::stdout(), EndSynchronizedUpdate)
    }

    fn bell(&mut self) -> std::io::Result<()> {
        TerminalGuard::bell(self)
    }

    fn suspend(&mut self) {
        TerminalGuard::suspend(self);
    }

    fn resume(&mut self) -> std::io::Result<()> {
        TerminalGuard::resume(self)
    }
}

/// Terminal events, as crossterm's `EventStream` yields them.
pub type Events = Pin<Box<dyn Stream<Item = std::io::Result<Event>> + Send>>;

/// Runs the TUI in this terminal until the person quits.
pub async fn run_tui(ctx: TuiContext) -> Result<(), TuiError> {
    let mut guard = TerminalGuard::enter()?;
    let result = run_with(ctx, &mut guard, || Box::pin(EventStream::new())).await;
    drop(guard);
    result
}

/// Runs the loop on any console; `events()` opens the input stream (again after the player).
pub async fn run_with(
    ctx: TuiContext,
    console: &mut impl Console,
    mut open_events: impl FnMut() -> Events,
) -> Result<(), TuiError> {
    let guard = console;
    let size = guard.size()?;
    let mut state = State::new(ctx.user.clone(), Utc::now(), size);
    state.demo_codes = ctx.demo_codes.as_ref().map(|f| f());
    if !ctx.parts.fleet {
        state.fleet = Loadable::Failed(
            "No fleet is configured: pass --endpoint-url (a lab) or AWS --profile/--region."
                .to_string(),
        );
    }
    let (actions, mut inbox) = mpsc::unbounded_channel();
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel::<(String, OpenedSession)>();
    let shared = Arc::new(Shared {
        broker: ctx.backend.api()?,
        backend: Arc::clone(&ctx.backend),
        recordings: ctx.parts.recordings,
        user: watch::Sender::new(ctx.user.clone()),
        reload_broker: Notify::new(),
        reload_fleet: Notify::new(),
        actions: actions.clone(),
    });
    let watcher = tokio::spawn(watch_broker(Arc::clone(&shared)));
    let fleet_watcher = ctx
        .parts
        .fleet
        .then(|| tokio::spawn(watch_fleet(Arc::clone(&shared))));

    let mut events = open_events();
    let mut tick = interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut session: Option<LiveSession> = None;
    let mut dirty = true;
    let result = loop {
        if dirty {
            if let Err(e) = guard.draw(&state, &ctx.theme) {
                break Err(e.into());
            }
            dirty = false;
        }
        let first = tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(ev)) => from_terminal(&state, ev),
                Some(Err(e)) => break Err(e.into()),
                None => break Ok(()),
            },
            Some(a) = inbox.recv() => Some(a),
            Some((id, opened)) = opened_rx.recv() => Some(attach(&mut session, id, opened)),
            ev = next_session_event(&mut session) => Some(from_session(&mut session, ev)),
            _ = tick.tick() => {
                if let Some(f) = &ctx.demo_codes {
                    state.demo_codes = Some(f());
                }
                Some(Action::Tick(Utc::now()))
            }
        };
        let Some(first) = first else { continue };
        // Coalesce: everything already queued is applied before the next frame.
        let mut batch = vec![first];
        while let Ok(a) = inbox.try_recv() {
            batch.push(a);
        }
        while let Some(ev) = session.as_mut().and_then(|s| s.events.try_recv().ok()) {
            batch.push(from_session(&mut session, Some(ev)));
        }
        let mut replay = None;
        for action in batch {
            for intent in update(&mut state, action) {
                match intent {
                    Intent::OpenRecording(path) => replay = Some(path),
                    other => perform(
                        other,
                        &state,
                        &ctx,
                        &shared,
                        &mut session,
                        &opened_tx,
                        guard,
                    ),
                }
            }
        }
        dirty = true;
        if let Some(path) = replay {
            run_player(&ctx, path, guard, &mut events, &mut open_events, &actions).await?;
        }
        if state.quit {
            break Ok(());
        }
    };
    watcher.abort();
    if let Some(w) = fleet_watcher {
        w.abort();
    }
    result
}

fn from_terminal(state: &State, ev: Event) -> Option<Action> {
    match ev {
        Event::Key(k) if k.kind != KeyEventKind::Release => keymap::action_for(state, k),
        Event::Paste(text) => Some(Action::Paste(text)),
        Event::Resize(cols, rows) => Some(Action::Resize(cols, rows)),
        _ => None,
    }
}

fn attach(session: &mut Option<LiveSession>, request: String, opened: OpenedSession) -> Action {
    let done = Done::SessionOpened {
        request,
        target: opened.target,
        ends_at: opened.ends_at,
        recording: opened.recording,
    };
    *session = Some(LiveSession {
        input: opened.input,
        control: opened.control,
        events: opened.events,
    });
    Action::Done(done)
}

async fn next_session_event(session: &mut Option<LiveSession>) -> Option<SessionEvent> {
    match session {
        Some(s) => s.events.recv().await,
        None => std::future::pending().await,
    }
}

fn from_session(session: &mut Option<LiveSession>, ev: Option<SessionEvent>) -> Action {
    let ended = |session: &mut Option<LiveSession>, msg: String| {
        *session = None;
        Action::SessionClosed(msg)
    };
    match ev {
        Some(SessionEvent::Output(b) | SessionEvent::Stderr(b)) => Action::SessionOutput(b),
        Some(SessionEvent::ExitCode(c)) => Action::SessionNotice(format!("shell exited ({c})")),
        Some(SessionEvent::Notice(n)) => Action::SessionNotice(n),
        Some(SessionEvent::Closed { reason }) if reason.is_empty() => {
            ended(session, "Session ended".to_string())
        }
        Some(SessionEvent::Closed { reason }) => ended(session, format!("Session ended: {reason}")),
        Some(SessionEvent::Failed { error }) => ended(session, format!("Session failed: {error}")),
        None => ended(session, "Session ended".to_string()),
    }
}

fn perform(
    intent: Intent,
    state: &State,
    ctx: &TuiContext,
    shared: &Arc<Shared>,
    session: &mut Option<LiveSession>,
    opened_tx: &mpsc::UnboundedSender<(String, OpenedSession)>,
    guard: &mut impl Console,
) {
    let report = |r: Result<(), String>| {
        if let Err(e) = r {
            tracing::warn!(error = %e, "session control failed");
            let _ = shared.actions.send(Action::SessionNotice(e));
        }
    };
    match intent {
        Intent::Reload => {
            shared.reload_broker.notify_one();
            shared.reload_fleet.notify_one();
        }
        Intent::Bell => {
            let _ = guard.bell();
        }
        Intent::Quit => {}
        Intent::SendInput(bytes) => {
            if let Some(s) = session
                && s.input.try_send(bytes).is_err()
            {
                report(Err(
                    "input dropped: the session is not keeping up".to_string()
                ));
            }
        }
        Intent::Resize { rows, cols } => {
            if let Some(s) = session {
                report(s.control.resize(rows, cols));
            }
        }
        Intent::EndSession => {
            if let Some(s) = session {
                report(s.control.terminate());
            }
        }
        Intent::OpenSession {
            id,
            rows,
            cols,
            code,
        } => open_session(
            ctx,
            shared,
            state,
            id,
            (rows, cols),
            Opening::Own(code),
            opened_tx.clone(),
        ),
        Intent::WatchSession { id, rows, cols } => open_session(
            ctx,
            shared,
            state,
            id,
            (rows, cols),
            Opening::Watch,
            opened_tx.clone(),
        ),
        Intent::OpenRecording(_) => {}
        broker_intent => {
            let shared = Arc::clone(shared);
            let user = state.user.clone();
            tokio::task::spawn_blocking(move || {
                let action = match broker_view::perform(&*shared.broker, &user, &broker_intent) {
                    Some(Ok(done)) => {
                        if let Done::UserSwitched { name } = &done {
                            shared.user.send_replace(name.clone());
                        }
                        shared.reload_broker.notify_one();
                        Action::Done(done)
                    }
                    Some(Err(e)) => {
                        tracing::info!(error = %e, "broker refused");
                        Action::Refused(e.to_string())
                    }
                    None => return,
                };
                let _ = shared.actions.send(action);
            });
        }
    }
}

/// Opening one's own session (with the code, if any) or watching someone's.
enum Opening {
    Own(Option<String>),
    Watch,
}

fn open_session(
    ctx: &TuiContext,
    shared: &Arc<Shared>,
    state: &State,
    id: String,
    (rows, cols): (u16, u16),
    opening: Opening,
    opened_tx: mpsc::UnboundedSender<(String, OpenedSession)>,
) {
    if !ctx.parts.sessions {
        let _ = shared.actions.send(Action::Refused(
            "Sessions cannot be opened from this TUI yet: run `sombrero open <id>` in a terminal."
                .to_string(),
        ));
        return;
    }
    let backend = Arc::clone(&ctx.backend);
    let actions = shared.actions.clone();
    let req = SessionRequest {
        request_id: id.clone(),
        user: state.user.clone(),
        rows,
        cols,
        watch: matches!(opening, Opening::Watch),
        code: match opening {
            Opening::Own(code) => code,
            Opening::Watch => None,
        },
    };
    tokio::spawn(async move {
        match backend.open_session(req).await {
            Ok(opened) => {
                let _ = opened_tx.send((id, opened));
            }
            Err(e) => {
                let _ = actions.send(Action::Refused(e.to_string()));
            }
        }
    });
}

async fn run_player(
    ctx: &TuiContext,
    path: PathBuf,
    guard: &mut impl Console,
    events: &mut Events,
    open_events: &mut impl FnMut() -> Events,
    actions: &mpsc::UnboundedSender<Action>,
) -> Result<(), TuiError> {
    if !ctx.parts.replay {
        let _ = actions.send(Action::Refused(format!(
            "Replay it in a terminal: sombrero replay {}",
            path.display()
        )));
        return Ok(());
    }
    // Downloaded (from a daemon) and checked before the terminal is handed over.
    let src = match ctx.backend.replay_source(path, None).await {
        Ok(src) => src,
        Err(e) => {
            let _ = actions.send(Action::Refused(e.to_string()));
            return Ok(());
        }
    };
    // The player owns the terminal meanwhile: stop reading input so keys reach it.
    *events = Box::pin(futures_util::stream::pending());
    guard.suspend();
    let theme = ctx.theme.clone();
    let outcome =
        tokio::task::spawn_blocking(move || super::player::play_source(&src, &theme, 1.0, 2.0))
            .await;
    guard.resume()?;
    *events = open_events();
    let action = match outcome {
        Ok(Ok(())) => Action::Done(Done::RecordingClosed),
        Ok(Err(e)) => Action::Refused(e.to_string()),
        Err(e) => Action::Refused(format!("the player stopped unexpectedly: {e}")),
    };
    let _ = actions.send(action);
    Ok(())
}
