//! Which sessions' recordings must be reviewed, as the policy says (`review_required`,
//! `review_within`); the queue itself is [`crate::review_queue`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `review_within` when the policy does not set it.
pub const DEFAULT_REVIEW_WITHIN: Duration = Duration::from_secs(24 * 60 * 60);
/// Which sessions need a review.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewRequired {
    /// Emergency sessions only (the default).
    #[default]
    Emergency,
    /// Every session.
    All,
    /// None (reviews stay possible, nothing is queued).
    None,
}

impl ReviewRequired {
    /// Parses `emergency`, `all` or `none`.
    pub fn parse(s: &str) -> Option<ReviewRequired> {
        match s {
            "emergency" => Some(ReviewRequired::Emergency),
            "all" => Some(ReviewRequired::All),
            "none" => Some(ReviewRequired::None),
            _ => None,
        }
    }
}
