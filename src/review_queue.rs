//! The review queue: sessions whose recordings the policy says must be reviewed
//! (`review_required`), each with a deadline (`review_within` after the session ended), until
//! enough reviewers (not the requester) signed off. [`Broker::review_notices_due`] audits
//! `review_due` once when a session joins the queue and `review_overdue` once per
//! `review_within` interval while it is late; both notify the targets that list them. Emergency sessions are always queued (unless
//! `review_required = "none"`), by the `[emergency]` table's own deadline and sign-off count.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{EventKind, NewEvent};
use crate::broker::{Broker, BrokerError, SYSTEM_ACTOR};
use crate::policy::Policy;
pub use crate::policy::review::{DEFAULT_REVIEW_WITHIN, ReviewRequired};
use crate::request::{Request, State};

/// Most review notices audited per sweep (a policy switched to "all" finds every old session
/// at once; the rest follow on later sweeps).
pub const MAX_NOTICES_PER_SWEEP: usize = 50;

/// Sign-offs `r`'s recording needs under `policy`, and how long after the session they are
/// due, if it needs a review at all: an emergency session by `[emergency]`'s
/// `reviewers_required` and `review_within` (unless `review_required = "none"`), any other
/// session by one sign-off within `review_within` when `review_required = "all"`.
pub fn sign_offs_needed(policy: &Policy, r: &Request) -> Option<(u32, Duration)> {
    if r.state != State::Closed || r.opened_at.is_none() || r.ended_at.is_none() {
        return None;
    }
    match (policy.review_required, r.emergency.is_some()) {
        (ReviewRequired::None, _) => None,
        (_, true) => Some((
            policy.emergency.reviewers_required,
            policy.emergency.review_within,
        )),
        (ReviewRequired::All, false) => Some((1, policy.review_within)),
        (ReviewRequired::Emergency, false) => None,
    }
}

/// One session waiting for its review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReview {
    /// The request the session belonged to.
    pub request_id: String,
    /// The recording's file name, as the audit log knows it.
    pub recording: Option<String>,
    /// Who had the session.
    pub requester: String,
    /// Where.
    pub target: String,
    /// When the session ended.
    pub ended_at: DateTime<Utc>,
    /// When the review is due.
    pub due_at: DateTime<Utc>,
    /// Seconds until due; negative: overdue by that much.
    pub due_in_secs: i64,
    /// True once past due.
    pub overdue: bool,
    /// Reviewers who signed off so far.
    pub sign_offs: Vec<String>,
    /// Sign-offs needed.
    pub needed: u32,
    /// True for a session through the emergency door.
    pub emergency: bool,
}

/// What the audit log says about the recordings of some requests.
#[derive(Default)]
struct Seen {
    recording: BTreeMap<String, String>,
    reviewers: BTreeMap<String, BTreeSet<String>>,
}

/// The last path component of a recorded path.
fn file_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

impl Broker {
    /// Sessions waiting for a required review, soonest due first.
    pub fn pending_reviews(&self) -> Result<Vec<PendingReview>, BrokerError> {
        let policy = self.policy()?;
        if policy.review_required == ReviewRequired::None {
            return Ok(Vec::new());
        }
        let now = self.now();
        let queued: Vec<(Request, (u32, Duration))> = self
            .list(Some(State::Closed))?
            .into_iter()
            .filter_map(|r| sign_offs_needed(&policy, &r).map(|n| (r, n)))
            .collect();
        if queued.is_empty() {
            return Ok(Vec::new());
        }
        let ids: BTreeSet<&str> = queued.iter().map(|(r, _)| r.id.as_str()).collect();
        let seen = self.scan(&ids)?;
        let mut out: Vec<PendingReview> = queued
            .iter()
            .filter_map(|(r, (needed, within))| {
                let ended_at = r.ended_at?;
                let sign_offs: Vec<String> = seen
                    .reviewers
                    .get(&r.id)
                    .map(|s| s.iter().filter(|w| **w != r.requester).cloned().collect())
                    .unwrap_or_default();
                if sign_offs.len() >= *needed as usize {
                    return None;
                }
                let due_at = crate::request::after(ended_at, *within);
                let due_in_secs = (due_at - now).num_seconds();
                Some(PendingReview {
                    request_id: r.id.clone(),
                    recording: seen.recording.get(&r.id).cloned(),
                    requester: r.requester.clone(),
                    target: r.target.clone(),
                    ended_at,
                    due_at,
                    due_in_secs,
                    overdue: now >= due_at,
                    sign_offs,
                    needed: *needed,
                    emergency: r.emergency.is_some(),
                })
            })
            .collect();
        out.sort_by(|a, b| {
            a.due_at
                .cmp(&b.due_at)
                .then(a.request_id.cmp(&b.request_id))
        });
        Ok(out)
    }

    /// Reads the audit log page by page for the recordings and sign-offs of `ids`.
    fn scan(&self, ids: &BTreeSet<&str>) -> Result<Seen, BrokerError> {
        let mut seen = Seen::default();
        crate::review::audit_pages(self, |page| {
            for e in page {
                let Some(id) = e.request_id.as_deref().filter(|id| ids.contains(id)) else {
                    continue;
                };
                match e.kind {
                    EventKind::RecordingStarted | EventKind::RecordingSealed => {
                        if let Some(p) = e.data.get("path").and_then(|v| v.as_str()) {
                            seen.recording.insert(id.to_string(), file_name(p));
                        }
                    }
                    EventKind::Reviewed => {
                        seen.reviewers
                            .entry(id.to_string())
                            .or_default()
                            .insert(e.actor.clone());
                    }
                    _ => {}
                }
            }
        })?;
        Ok(seen)
    }

    /// Audits the review notices now due: `review_due` once per queued session, then
    /// `review_overdue` once per `review_within` interval past its deadline. Returns how many.
    pub fn review_notices_due(&self) -> Result<usize, BrokerError> {
        let policy = self.policy()?;
        let now = self.now();
        let rows = self.pending_reviews()?;
        let mut sent = 0;
        for row in rows {
            if sent >= MAX_NOTICES_PER_SWEEP {
                break;
            }
            let within = match row.emergency {
                true => policy.emergency.review_within,
                false => policy.review_within,
            };
            let wanted = notices_wanted(row.due_at, now, within);
            let done = self.write_tx(|tx| {
                let Some(mut r) = tx.request(&row.request_id)? else {
                    return Ok(false);
                };
                if r.review_notices >= wanted {
                    return Ok(false);
                }
                r.review_notices = wanted;
                tx.put_request(&r)?;
                let (kind, data) = if wanted == 1 {
                    (
                        EventKind::ReviewDue,
                        json!({"due_at": row.due_at, "target": row.target,
                               "requester": row.requester, "recording": row.recording,
                               "needed": row.needed}),
                    )
                } else {
                    (
                        EventKind::ReviewOverdue,
                        json!({"due_at": row.due_at, "overdue_secs": -row.due_in_secs,
                               "interval": humantime::format_duration(within).to_string(),
                               "recording": row.recording, "sign_offs": row.sign_offs,
                               "needed": row.needed}),
                    )
                };
                tx.append(
                    NewEvent::new(SYSTEM_ACTOR, kind, Some(&row.request_id), data),
                    now,
                )?;
                Ok(true)
            })?;
            sent += usize::from(done);
        }
        Ok(sent)
    }
}

/// Notices a session due at `due_at` should have had by `now`: 1 (`review_due`) before the
/// deadline, then one more per `within` started past it.
pub fn notices_wanted(due_at: DateTime<Utc>, now: DateTime<Utc>, within: Duration) -> u32 {
    if now < due_at {
        return 1;
    }
    2u32.saturating_add(crate::policy::notify::steps(due_at, now, within))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn one_due_notice_then_one_overdue_per_interval() {
        let due = Utc::now();
        let day = Duration::from_secs(86_400);
        assert_eq!(notices_wanted(due, due - TimeDelta::hours(1), day), 1);
        assert_eq!(notices_wanted(due, due, day), 2);
        assert_eq!(notices_wanted(due, due + TimeDelta::hours(23), day), 2);
        assert_eq!(notices_wanted(due, due + TimeDelta::hours(24), day), 3);
        assert_eq!(notices_wanted(due, due + TimeDelta::hours(49), day), 4);
    }

    use crate::broker::{Clock, TestClock};
    use crate::policy::Role;
    use crate::request::{CloseReason, NewRequest};
    use std::sync::Arc;

    const POLICY: &str = "requesters = [\"*\"]\napprovers = [\"*\"]\nreviewers = [\"*\"]\n\
        review_required = \"all\"\nreview_within = \"1h\"\n\
        [[notify]]\nkind = \"slack\"\nurl = \"https://hooks.example.com/x\"\nevents = [\"review_due\", \"review_overdue\"]\n";

    /// A broker with rita (requester), ann and bob (approvers) and rev (reviewer), and a
    /// session of rita's that ended.
    fn closed_session() -> (tempfile::TempDir, Arc<TestClock>, Broker, String) {
        let (dir, clock, b) = crate::broker::test_support::broker(POLICY);
        let mut secrets = std::collections::HashMap::new();
        for (name, role) in [
            ("rita", "requester"),
            ("ann", "approver"),
            ("bob", "approver"),
            ("rev", "reviewer"),
        ] {
            let e = b.enrol_user(name, Role::parse_set(role).unwrap()).unwrap();
            let code = crate::mfa::code_at(name, &e.secret_base32, clock.now()).unwrap();
            b.confirm_enrolment(name, &code).unwrap();
            secrets.insert(name, e.secret_base32);
        }
        let code = |who: &str| {
            clock.advance(Duration::from_secs(30));
            crate::mfa::code_at(who, &secrets[who], clock.now()).unwrap()
        };
        let new = NewRequest {
            requester: "rita".into(),
            target: "i-0abc1234".into(),
            reason: "database disk is full".into(),
            incident: None,
            duration: Duration::from_secs(600),
            command: None,
        };
        let id = b.create_request(new, &code("rita")).unwrap().id;
        b.approve(&id, "ann", &code("ann"), None).unwrap();
        b.approve(&id, "bob", &code("bob"), None).unwrap();
        b.begin_open(&id, "rita", Some(&code("rita"))).unwrap();
        b.session_started(&id, "rita-0123").unwrap();
        b.record(
            "recorder",
            EventKind::RecordingStarted,
            Some(&id),
            json!({"path": "/r/x.cast"}),
        )
        .unwrap();
        b.close_session(&id, CloseReason::Exited { code: Some(0) })
            .unwrap();
        (dir, clock, b, id)
    }

    fn kinds(b: &Broker, kind: EventKind) -> usize {
        b.audit_events(0, 10_000)
            .unwrap()
            .iter()
            .filter(|e| e.kind == kind)
            .count()
    }

    #[test]
    fn a_closed_session_is_queued_notified_once_per_interval_until_reviewed() {
        let (_dir, clock, b, id) = closed_session();
        let rows = b.pending_reviews().unwrap();
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.request_id, id);
        assert_eq!(row.recording.as_deref(), Some("x.cast"));
        assert_eq!((row.requester.as_str(), row.needed), ("rita", 1));
        assert_eq!(row.due_in_secs, 3600);
        assert!(!row.overdue);
        assert_eq!(b.review_notices_due().unwrap(), 1);
        assert_eq!(b.review_notices_due().unwrap(), 0, "review_due once");
        assert_eq!(kinds(&b, EventKind::ReviewDue), 1);
        clock.advance(Duration::from_secs(3600));
        assert!(b.pending_reviews().unwrap()[0].overdue);
        assert_eq!(b.review_notices_due().unwrap(), 1);
        assert_eq!(b.review_notices_due().unwrap(), 0, "once per interval");
        clock.advance(Duration::from_secs(1800));
        assert_eq!(b.review_notices_due().unwrap(), 0);
        clock.advance(Duration::from_secs(1800));
        assert_eq!(b.review_notices_due().unwrap(), 1, "the next interval");
        assert_eq!(kinds(&b, EventKind::ReviewOverdue), 2);
        // Each notice queued its notification.
        let queued: Vec<_> = b
            .outbox_due(100)
            .unwrap()
            .into_iter()
            .map(|i| i.event)
            .collect();
        assert_eq!(queued.len(), 3, "{queued:?}");
        // The requester's own sign-off does not count; a reviewer's ends it.
        b.record(
            "rita",
            EventKind::Reviewed,
            Some(&id),
            json!({"digest": "ab"}),
        )
        .unwrap();
        assert_eq!(
            b.pending_reviews().unwrap()[0].sign_offs,
            Vec::<String>::new()
        );
        b.record(
            "rev",
            EventKind::Reviewed,
            Some(&id),
            json!({"digest": "ab"}),
        )
        .unwrap();
        assert!(b.pending_reviews().unwrap().is_empty());
        clock.advance(Duration::from_secs(7200));
        assert_eq!(b.review_notices_due().unwrap(), 0);
    }

    #[test]
    fn the_policy_decides_who_is_queued() {
        assert_eq!(ReviewRequired::parse("all"), Some(ReviewRequired::All));
        assert_eq!(ReviewRequired::parse("some"), None);
        assert_eq!(ReviewRequired::default(), ReviewRequired::Emergency);
        assert_eq!(file_name("/var/lib/s/recordings/a.cast"), "a.cast");
    }
}
