//! The roles a user can be enrolled with (the lowest layer: stores, targets and rules all
//! name them).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// A role a user is enrolled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May ask for access.
    Requester,
    /// May approve or deny.
    Approver,
    /// May sign off recordings.
    Reviewer,
}

impl Role {
    /// Parses `requester`, `approver`, `reviewer` or `both` (requester and approver).
    pub fn parse_set(s: &str) -> Option<BTreeSet<Role>> {
        let mut out = BTreeSet::new();
        for part in s.split(',').map(str::trim) {
            match part {
                "requester" => {
                    out.insert(Role::Requester);
                }
                "approver" => {
                    out.insert(Role::Approver);
                }
                "reviewer" => {
                    out.insert(Role::Reviewer);
                }
                "both" => {
                    out.insert(Role::Requester);
                    out.insert(Role::Approver);
                }
                _ => return None,
            }
        }
        Some(out)
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Requester => "requester",
            Role::Approver => "approver",
            Role::Reviewer => "reviewer",
        }
    }
}
