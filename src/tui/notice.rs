//! The requester's notice: one of my requests became approved, wherever I am in the UI.

use super::model::RequestRow;
use crate::request::State;

/// An approved request of the acting user, announced once and opened with `o` from any screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    /// Request id.
    pub id: String,
    /// Who approved it, in order.
    pub by: Vec<String>,
}

impl Approved {
    /// The line shown wherever the requester is.
    pub fn message(&self) -> String {
        if self.by.is_empty() {
            // Only the emergency door approves without approvers: its veto window ended.
            return format!("{}: nobody denied the EMERGENCY: press o to open", self.id);
        }
        format!(
            "{} approved by {}: press o to open",
            self.id,
            people(&self.by)
        )
    }
}

/// `alice`, `alice and bob`, `alice, bob and carol`.
pub fn people(names: &[String]) -> String {
    match names {
        [] => "nobody".to_string(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// What a new listing means for `user`: their newest request that turned approved since
/// `before` (`ring`: news, ring the bell), or, on a first listing (`before` is `None`), their
/// newest approved request, shown without a bell (it is not news, but `o` should open it).
pub fn on_listing(
    before: Option<&[RequestRow]>,
    after: &[RequestRow],
    user: &str,
) -> Option<(Approved, bool)> {
    let mine_approved = |r: &&RequestRow| r.requester == user && r.state == State::Approved;
    let was_approved = |id: &str| {
        before.is_some_and(|b| b.iter().any(|r| r.id == id && r.state == State::Approved))
    };
    // Listings are newest first.
    let r = after
        .iter()
        .filter(mine_approved)
        .find(|r| before.is_none() || !was_approved(&r.id))?;
    let approved = Approved {
        id: r.id.clone(),
        by: r.approved_by.clone(),
    };
    Some((approved, before.is_some()))
}

/// Whether the announced request can still be opened (it is still listed as approved).
pub fn still_open(notice: &Approved, listing: &[RequestRow]) -> bool {
    listing
        .iter()
        .any(|r| r.id == notice.id && r.state == State::Approved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn row(id: &str, requester: &str, state: State) -> RequestRow {
        RequestRow {
            id: id.into(),
            requester: requester.into(),
            target: "mi-1".into(),
            reason: "disk full".into(),
            incident: None,
            duration_secs: 60,
            state,
            approved_by: vec!["alice".into(), "bob".into()],
            approvals_required: 2,
            created_at: Utc::now(),
            deadline: None,
            emergency: None,
        }
    }

    #[test]
    fn only_my_newly_approved_request_is_news() {
        let pending = [row("r-1", "oncall", State::Pending)];
        let approved = [row("r-1", "oncall", State::Approved)];
        let (n, ring) = on_listing(Some(&pending), &approved, "oncall").unwrap();
        assert!(ring);
        assert_eq!(
            n.message(),
            "r-1 approved by alice and bob: press o to open"
        );
        // Already approved before: nothing new.
        assert_eq!(on_listing(Some(&approved), &approved, "oncall"), None);
        // Someone else's: nothing for me.
        assert_eq!(on_listing(Some(&pending), &approved, "carol"), None);
        // A first listing shows it, quietly.
        assert_eq!(
            on_listing(None, &approved, "oncall").map(|x| x.1),
            Some(false)
        );
        assert!(still_open(&n, &approved) && !still_open(&n, &pending));
    }

    #[test]
    fn names_read_as_a_list() {
        let v = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(people(&v(&["alice"])), "alice");
        assert_eq!(people(&v(&["a", "b", "c"])), "a, b and c");
    }

    #[test]
    fn an_emergency_approved_by_its_window_says_so() {
        let n = |by: &[&str]| Approved {
            id: "r-1".into(),
            by: by.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            n(&[]).message(),
            "r-1: nobody denied the EMERGENCY: press o to open"
        );
        assert_eq!(
            n(&["bob"]).message(),
            "r-1 approved by bob: press o to open"
        );
    }
}
