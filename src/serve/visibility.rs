//! Who may read what of the audit log and the policy through the daemon: both hold identity
//! mappings (OS users, uids, IAM ARNs) and everyone's activity, so approvers and reviewers see
//! them whole; anyone else sees the events of their own requests and their own actions, and
//! the policy without its `[identities]` table.

use std::collections::BTreeSet;

use crate::audit::Event;
use crate::broker::{Broker, BrokerError};
use crate::policy::Role;
use crate::wire::ErrorKind;

use super::error::ApiError;

/// What of the audit log and policy one user may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sight {
    /// Everything (approvers, reviewers).
    All,
    /// Events of these requests (theirs) and their own actions.
    Own {
        /// The user.
        user: String,
        /// Ids of the requests they made.
        requests: BTreeSet<String>,
    },
}

impl Sight {
    /// What `user` may see now (roles and policy as they are).
    pub fn of(b: &Broker, user: &str) -> Result<Sight, BrokerError> {
        if b.permits(user, Role::Approver)? || b.permits(user, Role::Reviewer)? {
            return Ok(Sight::All);
        }
        let requests = b
            .list(None)?
            .into_iter()
            .filter(|r| r.requester == user)
            .map(|r| r.id)
            .collect();
        Ok(Sight::Own {
            user: user.to_string(),
            requests,
        })
    }

    /// Whether this event may be shown.
    pub fn shows(&self, e: &Event) -> bool {
        match self {
            Sight::All => true,
            Sight::Own { user, requests } => {
                e.actor == *user
                    || e.request_id
                        .as_ref()
                        .is_some_and(|id| requests.contains(id))
            }
        }
    }

    /// The events of `events` that may be shown.
    pub fn filter(&self, events: Vec<Event>) -> Vec<Event> {
        events.into_iter().filter(|e| self.shows(e)).collect()
    }

    /// Refuses (403) the events of request `id` unless they may be seen.
    pub fn request(&self, id: &str) -> Result<(), ApiError> {
        match self {
            Sight::Own { user, requests } if !requests.contains(id) => Err(ApiError::new(
                ErrorKind::Forbidden,
                format!(
                    "{user} may read the audit events of their own requests only; {id} is someone else's (approvers and reviewers see all)"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The policy text as it may be shown: whole, or without its `[identities]` table.
    pub fn policy_text(&self, text: String) -> String {
        if *self == Sight::All {
            return text;
        }
        match text.parse::<toml::Table>() {
            Ok(mut table) => {
                table.remove("identities");
                format!(
                    "# [identities] withheld: approvers and reviewers see the whole policy\n{}",
                    toml::to_string(&table).unwrap_or_default()
                )
            }
            // The broker parsed it before; fail closed all the same.
            Err(_) => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requester_sees_the_policy_without_identities() {
        let own = Sight::Own {
            user: "rita".into(),
            requests: BTreeSet::new(),
        };
        let text = "requesters = [\"*\"]\napprovers = [\"*\"]\napprovals_required = 1\n[identities]\n\"arn:aws:iam::1:role/x\" = \"bob\"\n";
        let shown = own.policy_text(text.into());
        assert!(!shown.contains("arn:aws"), "{shown}");
        let p = crate::policy::Policy::parse(&shown, std::path::Path::new("p.toml")).unwrap();
        assert_eq!(p.approvals_required, 1);
        assert!(p.identities.is_empty());
        assert_eq!(Sight::All.policy_text(text.into()), text);
    }
}
