//! The UI state: everything `draw` needs, nothing it has to fetch.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::action::Screen;
use super::form::Form;
use super::model::{BrokerSnapshot, DemoCode, FleetRow, Loadable};
use super::session::SessionPane;

/// Smallest terminal the UI draws into (the default of most terminals); below this it asks for
/// a bigger window.
pub const MIN_WIDTH: u16 = 80;
/// Smallest terminal height.
pub const MIN_HEIGHT: u16 = 24;
/// Narrowest terminal the DEMO panel sits beside the screens in; below, a one-line strip.
pub const DEMO_SIDE_WIDTH: u16 = 120;

/// A scrollable list's selection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Selected row (index into the visible, filtered rows).
    pub selected: usize,
}

/// A text being typed to filter a list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The text.
    pub text: String,
    /// Whether keys currently go to it.
    pub editing: bool,
}

/// A one-line message at the bottom of the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Something worked.
    Info(String),
    /// Something was refused or failed; says what to do.
    Error(String),
}

/// The whole UI state.
pub struct State {
    /// Current time (set by ticks so drawing stays a pure function of state).
    pub now: DateTime<Utc>,
    /// Terminal size (columns, rows).
    pub size: (u16, u16),
    /// Current tab.
    pub screen: Screen,
    /// The acting user.
    pub user: String,
    /// Whether the key help overlay is shown.
    pub help: bool,
    /// The open form or prompt, if any (request form, approve, deny, switch user).
    pub form: Option<Form>,
    /// Fleet nodes.
    pub fleet: Loadable<Vec<FleetRow>>,
    /// Indices into `fleet` that pass the filter.
    pub fleet_visible: Vec<usize>,
    /// Fleet filter.
    pub fleet_filter: Filter,
    /// Broker state.
    pub broker: Loadable<BrokerSnapshot>,
    /// Audit filter.
    pub audit_filter: Filter,
    /// Show only my requests.
    pub only_mine: bool,
    /// Selections per screen.
    pub cursors: [Cursor; Screen::ALL.len()],
    /// Approval ids already seen, to notice new ones.
    pub seen_approvals: Option<HashSet<String>>,
    /// The newest live flagged command already told (its audit sequence number).
    pub seen_flag: Option<u64>,
    /// Emergency requests already announced with a bell, to notice new ones.
    pub seen_emergencies: Option<HashSet<String>>,
    /// Recordings shows only the review queue (`r`).
    pub to_review: bool,
    /// The bottom line.
    pub status: Option<Status>,
    /// Set while the broker cannot be read.
    pub connection_lost: Option<String>,
    /// Demo codes; `None` outside demo mode (the panel is hidden).
    pub demo_codes: Option<Vec<DemoCode>>,
    /// `D` flipped the DEMO panel from its default for this width (panel from
    /// [`DEMO_SIDE_WIDTH`] up, strip below).
    pub demo_flipped: bool,
    /// The newest approval of one of my requests, to announce and open with `o` from anywhere.
    pub notice: Option<super::notice::Approved>,
    /// A request to select on the Requests screen once it is listed (the one just created).
    pub select_request: Option<String>,
    /// The session pane, once a session was opened.
    pub session: Option<SessionPane>,
    /// Set when the program should end.
    pub quit: bool,
}

impl State {
    /// A fresh state for `user` at `now` in a terminal of `size` (columns, rows).
    pub fn new(user: impl Into<String>, now: DateTime<Utc>, size: (u16, u16)) -> Self {
        State {
            now,
            size,
            screen: Screen::Fleet,
            user: user.into(),
            help: false,
            form: None,
            fleet: Loadable::Loading,
            fleet_visible: Vec::new(),
            fleet_filter: Filter::default(),
            broker: Loadable::Loading,
            audit_filter: Filter::default(),
            only_mine: false,
            cursors: [Cursor::default(); Screen::ALL.len()],
            seen_approvals: None,
            seen_flag: None,
            seen_emergencies: None,
            to_review: false,
            status: None,
            connection_lost: None,
            demo_codes: None,
            demo_flipped: false,
            notice: None,
            select_request: None,
            session: None,
            quit: false,
        }
    }

    /// The selection of the current screen.
    pub fn cursor(&self, screen: Screen) -> usize {
        self.cursors[screen.index()].selected
    }

    /// Whether the terminal is too small to draw the UI.
    pub fn too_small(&self) -> bool {
        self.size.0 < MIN_WIDTH || self.size.1 < MIN_HEIGHT
    }

    /// Whether the full DEMO panel shows (else the one-line strip), in demo mode.
    pub fn demo_panel(&self) -> bool {
        (self.size.0 >= DEMO_SIDE_WIDTH) != self.demo_flipped
    }

    /// Whether the session pane currently owns the keyboard.
    pub fn session_attached(&self) -> bool {
        self.screen == Screen::Session
            && self.session.as_ref().is_some_and(|s| s.is_live())
            && self.form.is_none()
            && !self.help
    }

    /// Requests shown on the Requests screen (mine only, or all), newest first.
    pub fn visible_requests(&self) -> Vec<&super::model::RequestRow> {
        match self.broker.ready() {
            Some(b) => b
                .requests
                .iter()
                .filter(|r| !self.only_mine || r.requester == self.user)
                .collect(),
            None => Vec::new(),
        }
    }

    /// Emergency requests every screen must announce (veto window open or session live).
    pub fn loud_emergencies(&self) -> Vec<&super::model::RequestRow> {
        self.broker
            .ready()
            .map(|b| b.requests.iter().filter(|r| r.loud()).collect())
            .unwrap_or_default()
    }

    /// Audit rows passing the filter.
    pub fn visible_audit(&self) -> Vec<&super::model::AuditRow> {
        let needle = self.audit_filter.text.to_lowercase();
        match self.broker.ready() {
            Some(b) => b
                .audit
                .iter()
                .filter(|a| {
                    needle.is_empty()
                        || a.kind.to_lowercase().contains(&needle)
                        || a.actor.to_lowercase().contains(&needle)
                        || a.detail.to_lowercase().contains(&needle)
                        || a.request
                            .as_deref()
                            .is_some_and(|r| r.to_lowercase().contains(&needle))
                })
                .collect(),
            None => Vec::new(),
        }
    }

    /// Number of rows on a screen's list (for moving the selection).
    pub fn row_count(&self, screen: Screen) -> usize {
        let b = self.broker.ready();
        match screen {
            Screen::Fleet => self.fleet_visible.len(),
            Screen::Requests => self.visible_requests().len(),
            Screen::Approvals => b.map_or(0, |b| b.approvals.len()),
            Screen::Recordings if self.to_review => b.map_or(0, |b| b.reviews.len()),
            Screen::Recordings => b.map_or(0, |b| b.recordings.len()),
            Screen::Audit => self.visible_audit().len(),
            Screen::Session => 0,
        }
    }

    /// Recomputes which fleet rows pass the filter (on new data or a new filter text).
    pub fn refilter_fleet(&mut self) {
        let needle = self.fleet_filter.text.to_lowercase();
        self.fleet_visible = match self.fleet.ready() {
            Some(rows) => rows
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    needle.is_empty()
                        || r.name.to_lowercase().contains(&needle)
                        || r.id.to_lowercase().contains(&needle)
                        || r.platform.to_lowercase().contains(&needle)
                        || r.badges
                            .iter()
                            .any(|b| b.label().to_lowercase().contains(&needle))
                })
                .map(|(i, _)| i)
                .collect(),
            None => Vec::new(),
        };
        self.clamp_cursor(Screen::Fleet);
    }

    /// Keeps a screen's selection inside its rows.
    pub fn clamp_cursor(&mut self, screen: Screen) {
        let n = self.row_count(screen);
        let c = &mut self.cursors[screen.index()].selected;
        if *c >= n {
            *c = n.saturating_sub(1);
        }
    }

    /// The selected fleet node.
    pub fn selected_node(&self) -> Option<&FleetRow> {
        let i = *self.fleet_visible.get(self.cursor(Screen::Fleet))?;
        self.fleet.ready()?.get(i)
    }
}
