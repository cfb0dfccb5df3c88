//! Effects as data: what `update` asks the driver to do.

use std::path::PathBuf;
use std::time::Duration;

/// One effect for the driver to perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Re-read the broker and fleet now.
    Reload,
    /// Ask for break-glass access.
    CreateRequest {
        /// Target node id.
        target: String,
        /// Why.
        reason: String,
        /// Incident reference.
        incident: Option<String>,
        /// Requested grant.
        duration: Duration,
        /// The requester's TOTP code.
        code: String,
        /// Through the emergency door (confirmed on the form).
        emergency: bool,
    },
    /// Approve a request as the acting user.
    Approve {
        /// Request id.
        id: String,
        /// The approver's TOTP code.
        code: String,
        /// Optional comment.
        comment: Option<String>,
    },
    /// Deny a request as the acting user.
    Deny {
        /// Request id.
        id: String,
        /// The approver's TOTP code.
        code: String,
        /// Why (required).
        comment: String,
    },
    /// Cancel my request.
    Cancel {
        /// Request id.
        id: String,
    },
    /// End the live session of a request (approvers).
    Kill {
        /// Request id.
        id: String,
        /// The approver's TOTP code.
        code: String,
    },
    /// Become another user (proved with their TOTP code).
    SwitchUser {
        /// User name.
        name: String,
        /// Their TOTP code.
        code: String,
    },
    /// Watch the live session of a request read-only in a pane of this size.
    WatchSession {
        /// Request id.
        id: String,
        /// Pane rows.
        rows: u16,
        /// Pane columns.
        cols: u16,
    },
    /// Open the session of an approved request with a pane of this size.
    OpenSession {
        /// Request id.
        id: String,
        /// Pane rows.
        rows: u16,
        /// Pane columns.
        cols: u16,
        /// The requester's TOTP code, when the policy wants one at open.
        code: Option<String>,
    },
    /// Keystrokes for the session.
    SendInput(Vec<u8>),
    /// The session pane changed size.
    Resize {
        /// Pane rows.
        rows: u16,
        /// Pane columns.
        cols: u16,
    },
    /// End the session (terminate it on the node).
    EndSession,
    /// Open a recording in the player.
    OpenRecording(PathBuf),
    /// Ring the terminal bell.
    Bell,
    /// Leave the program.
    Quit,
}
