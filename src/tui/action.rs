//! The one `Action` enum: everything that can change the UI state.
//!
//! Bindable actions come from keys through the keymap; the rest (snapshots, outcomes, session
//! bytes, ticks) come from the driver and can never be bound to a key, because the keymap only
//! produces the bindable variants.

use chrono::{DateTime, Utc};
use crossterm::event::KeyEvent;

use super::model::{BrokerSnapshot, DemoCode, FleetRow, Loadable};

/// A screen (tab).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Screen {
    /// The nodes.
    Fleet,
    /// All break-glass requests.
    Requests,
    /// Requests waiting for this user's approval.
    Approvals,
    /// The terminal pane of an open session.
    Session,
    /// Session recordings.
    Recordings,
    /// The audit log.
    Audit,
}

impl Screen {
    /// Every screen in tab order.
    pub const ALL: [Screen; 6] = [
        Screen::Fleet,
        Screen::Requests,
        Screen::Approvals,
        Screen::Session,
        Screen::Recordings,
        Screen::Audit,
    ];

    /// Tab title.
    pub fn title(self) -> &'static str {
        match self {
            Screen::Fleet => "Fleet",
            Screen::Requests => "Requests",
            Screen::Approvals => "Approvals",
            Screen::Session => "Session",
            Screen::Recordings => "Recordings",
            Screen::Audit => "Audit",
        }
    }

    /// Position in [`Screen::ALL`].
    pub fn index(self) -> usize {
        Screen::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }
}

/// Something that happens to the UI.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    // ---- bindable: produced by the keymap ----
    /// Next tab.
    NextTab,
    /// Previous tab.
    PrevTab,
    /// Jump to a tab.
    GoTo(Screen),
    /// Selection up.
    Up,
    /// Selection down.
    Down,
    /// Selection a page up.
    PageUp,
    /// Selection a page down.
    PageDown,
    /// Back out of the current overlay, input or screen (`q`, Esc).
    Back,
    /// Leave the program.
    Quit,
    /// Show the keys of the current screen.
    Help,
    /// Start typing a filter.
    StartFilter,
    /// Start a break-glass request for the selected node.
    StartRequest,
    /// Show only my requests / everyone's.
    ToggleMine,
    /// Open (or return to) a session: the selected approved request on Requests, else the one
    /// just announced as approved.
    OpenSession,
    /// Cancel the selected request (mine only).
    CancelRequest,
    /// End the live session of the selected request (approvers).
    KillSession,
    /// Watch the live session of the selected request read-only (approvers, reviewers).
    WatchSession,
    /// Approve the selected request.
    Approve,
    /// Deny the selected request.
    Deny,
    /// Switch the acting user.
    SwitchUser,
    /// Open the selected recording in the player.
    OpenRecording,
    /// Show only the recordings waiting for a review (the review queue) / all of them.
    ToggleToReview,
    /// Start an emergency request for the selected node (the request form, door on).
    StartEmergency,
    /// On the request form: switch the emergency door on or off.
    ToggleEmergency,
    /// Show the whole DEMO panel or its one-line strip.
    ToggleDemo,
    /// Next input field.
    NextField,
    /// Previous input field.
    PrevField,
    /// Submit the current input.
    Submit,
    /// Delete the character before the cursor.
    Backspace,
    /// A typed character for the focused input.
    Input(char),
    /// Pasted text.
    Paste(String),
    /// A key while a session owns the keyboard (passed through unless it is the chord).
    SessionKey(KeyEvent),

    // ---- internal: produced by the driver only ----
    /// Clock tick with the current time.
    Tick(DateTime<Utc>),
    /// The terminal is now this size (columns, rows).
    Resize(u16, u16),
    /// Fresh broker state.
    Snapshot(Box<BrokerSnapshot>),
    /// Fresh fleet list (or its failure).
    Fleet(Loadable<Vec<FleetRow>>),
    /// The broker could not be read; the message says why.
    ConnectionLost(String),
    /// Current demo codes.
    DemoCodes(Vec<DemoCode>),
    /// An intent succeeded.
    Done(Done),
    /// An intent was refused or failed; the message says what to do.
    Refused(String),
    /// Bytes from the session.
    SessionOutput(Vec<u8>),
    /// A notice from the session path (taint, recording, reconnect...).
    SessionNotice(String),
    /// The session ended.
    SessionClosed(String),
}

/// What a successful intent produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// A request was created.
    RequestCreated {
        /// Its id.
        id: String,
        /// For an emergency request: when its veto window ends.
        emergency: Option<DateTime<Utc>>,
    },
    /// An approval was recorded.
    Approved {
        /// Request id.
        id: String,
        /// Approvals it now has.
        approvals: usize,
        /// True when this approval completed it (Approved: the requester may open it).
        complete: bool,
        /// Who asked.
        requester: String,
    },
    /// A denial was recorded.
    Denied {
        /// Request id.
        id: String,
    },
    /// A request was cancelled.
    Cancelled {
        /// Request id.
        id: String,
    },
    /// A live session was ended.
    Killed {
        /// Request id.
        id: String,
    },
    /// The acting user changed.
    UserSwitched {
        /// New acting user.
        name: String,
    },
    /// A session is open.
    SessionOpened {
        /// Request id.
        request: String,
        /// Target node.
        target: String,
        /// When the grant ends.
        ends_at: Option<DateTime<Utc>>,
        /// Whether it is being recorded (it must be; shown so people can see it).
        recording: bool,
    },
    /// The player was opened (the driver owns it until it returns).
    RecordingClosed,
}
