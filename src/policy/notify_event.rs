//! The events a notify target may ask for, and which audit events they come from.

use serde::{Deserialize, Serialize};

use crate::audit::EventKind;

/// A notifiable event, as written in `events = [...]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// A request is waiting for approvals.
    RequestCreated,
    /// One approver approved.
    ApprovalGiven,
    /// The threshold was reached.
    RequestApproved,
    /// An approver denied.
    RequestDenied,
    /// A session started.
    SessionOpened,
    /// A session ended.
    SessionEnded,
    /// An emergency request opened without approvals.
    EmergencyOpened,
    /// A tainted instance could not be replaced.
    ReplacementFailed,
    /// A session that did not go through pink-sombrero.
    RogueFound,
    /// A recording needs review.
    ReviewDue,
    /// A recording's review is overdue.
    ReviewOverdue,
    /// A request is still pending after `escalate_after` (once per step).
    Escalation,
    /// A command typed in a live session raised a risk flag (`command_flagged`).
    CommandFlagged,
    /// `sombrero notify test` (never queued; every target receives it).
    Test,
    /// An emergency request was made: every target receives it, whatever it lists.
    EmergencyRequested,
}

impl NotifyEvent {
    /// True for events every target receives, whatever its `events` and filters say.
    pub fn is_for_everyone(self) -> bool {
        matches!(self, NotifyEvent::Test | NotifyEvent::EmergencyRequested)
    }

    /// Every event a target may list (not `test` or `emergency_requested`, which go to all).
    pub const ALL: [NotifyEvent; 13] = [
        NotifyEvent::RequestCreated,
        NotifyEvent::ApprovalGiven,
        NotifyEvent::RequestApproved,
        NotifyEvent::RequestDenied,
        NotifyEvent::SessionOpened,
        NotifyEvent::SessionEnded,
        NotifyEvent::EmergencyOpened,
        NotifyEvent::ReplacementFailed,
        NotifyEvent::RogueFound,
        NotifyEvent::ReviewDue,
        NotifyEvent::ReviewOverdue,
        NotifyEvent::Escalation,
        NotifyEvent::CommandFlagged,
    ];

    /// The notifiable event an audit event is, if any.
    pub fn of(kind: EventKind) -> Option<NotifyEvent> {
        Some(match kind {
            EventKind::RequestCreated => NotifyEvent::RequestCreated,
            EventKind::ApprovalGiven => NotifyEvent::ApprovalGiven,
            EventKind::RequestApproved => NotifyEvent::RequestApproved,
            EventKind::RequestDenied => NotifyEvent::RequestDenied,
            EventKind::SessionOpened => NotifyEvent::SessionOpened,
            EventKind::SessionClosed => NotifyEvent::SessionEnded,
            EventKind::ReplacementFailed => NotifyEvent::ReplacementFailed,
            EventKind::EmergencyRequested => NotifyEvent::EmergencyRequested,
            EventKind::EmergencyOpened => NotifyEvent::EmergencyOpened,
            EventKind::RogueSessionFound => NotifyEvent::RogueFound,
            EventKind::ReviewDue => NotifyEvent::ReviewDue,
            EventKind::ReviewOverdue => NotifyEvent::ReviewOverdue,
            EventKind::RequestEscalated => NotifyEvent::Escalation,
            EventKind::CommandFlagged => NotifyEvent::CommandFlagged,
            _ => return None,
        })
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::RequestCreated => "request_created",
            NotifyEvent::ApprovalGiven => "approval_given",
            NotifyEvent::RequestApproved => "request_approved",
            NotifyEvent::RequestDenied => "request_denied",
            NotifyEvent::SessionOpened => "session_opened",
            NotifyEvent::SessionEnded => "session_ended",
            NotifyEvent::EmergencyOpened => "emergency_opened",
            NotifyEvent::ReplacementFailed => "replacement_failed",
            NotifyEvent::RogueFound => "rogue_found",
            NotifyEvent::ReviewDue => "review_due",
            NotifyEvent::ReviewOverdue => "review_overdue",
            NotifyEvent::Escalation => "escalation",
            NotifyEvent::CommandFlagged => "command_flagged",
            NotifyEvent::Test => "test",
            NotifyEvent::EmergencyRequested => "emergency_requested",
        }
    }

    /// Parses a name a target may list.
    pub fn parse(s: &str) -> Option<NotifyEvent> {
        NotifyEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

impl std::fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for e in NotifyEvent::ALL {
            assert_eq!(NotifyEvent::parse(e.as_str()), Some(e));
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
        }
        assert_eq!(NotifyEvent::parse("test"), None);
        assert_eq!(
            NotifyEvent::of(EventKind::SessionClosed),
            Some(NotifyEvent::SessionEnded)
        );
        assert_eq!(NotifyEvent::of(EventKind::MfaAccepted), None);
        assert_eq!(
            NotifyEvent::of(EventKind::CommandFlagged),
            Some(NotifyEvent::CommandFlagged)
        );
        assert_eq!(
            NotifyEvent::parse("command_flagged"),
            Some(NotifyEvent::CommandFlagged)
        );
    }
}
