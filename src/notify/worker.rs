//! The delivery worker: takes due notifications off the outbox and posts them, concurrently
//! and bounded, so one slow or dead receiver delays nobody and nothing else.
//!
//! Each notification is claimed first (its attempt count moves on, and it is not due again
//! for [`LEASE`]), so two workers (two brokers on one DynamoDB table) rarely post it twice;
//! a worker that dies mid-post leaves it to be retried when the lease ends. At least once:
//! receivers drop repeats by the idempotency key.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;

use super::deliver::{Deliverer, Failure};
use super::event::NotifyEvent;
use super::outbox::{MAX_ATTEMPTS, OutboxItem};
use crate::audit::{EventKind, NewEvent};
use crate::broker::{Broker, BrokerError, SYSTEM_ACTOR};
use crate::request::after;
use crate::store::Store;

/// How often the outbox is looked at.
pub const POLL: Duration = Duration::from_secs(1);
/// Most notifications taken per look.
pub const BATCH: usize = 32;
/// Most deliveries in flight at once.
pub const MAX_IN_FLIGHT: usize = 8;
/// How long a claimed notification stays another worker's (longer than a delivery may take).
pub const LEASE: Duration = Duration::from_secs(60);
/// How often the review queue is checked for notices due (it reads the audit log).
pub const REVIEW_SWEEP: Duration = Duration::from_secs(30);
/// The first retry waits this long; each next one twice as long, up to [`BACKOFF_CAP`].
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// The wait after the `attempts`-th failed attempt.
pub fn backoff(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(16);
    (BACKOFF_BASE * 2u32.pow(exp)).min(BACKOFF_CAP)
}

impl Broker {
    /// Notifications due now, oldest first.
    pub fn outbox_due(&self, limit: usize) -> Result<Vec<OutboxItem>, BrokerError> {
        Ok(self.store().outbox_due(self.now(), limit)?)
    }

    /// Claims `item` for one attempt; `None` when another worker has it.
    pub fn outbox_claim(&self, item: &OutboxItem) -> Result<Option<OutboxItem>, BrokerError> {
        let mut claimed = item.clone();
        claimed.attempts += 1;
        claimed.next_at = after(self.now(), LEASE);
        Ok(self
            .store()
            .outbox_update(&claimed, item.attempts)?
            .then_some(claimed))
    }

    /// Settles a claimed notification: delivered (gone), retried later, or given up (gone,
    /// with `notification_failed` audited in the same transaction). The first failure is
    /// audited too, so an outage shows in the log at once, not only when it is given up.
    pub fn outbox_settle(
        &self,
        item: &OutboxItem,
        outcome: Result<u16, Failure>,
    ) -> Result<(), BrokerError> {
        let failure = match outcome {
            Ok(_) => return Ok(self.store().outbox_done(&item.id)?),
            Err(f) => f,
        };
        let now = self.now();
        let give_up = !failure.retry || item.attempts >= MAX_ATTEMPTS;
        tracing::warn!(
            target = %item.target,
            event = %item.event,
            attempts = item.attempts,
            error = %failure.error,
            give_up,
            "notification not delivered"
        );
        let failed = |final_: bool| {
            NewEvent::new(
                SYSTEM_ACTOR,
                EventKind::NotificationFailed,
                item.payload["request"]["id"].as_str(),
                json!({
                    "target": item.target,
                    "event": item.event.as_str(),
                    "notification": item.id,
                    "attempts": item.attempts,
                    "error": failure.error,
                    "final": final_,
                }),
            )
        };
        if give_up {
            let e = failed(true);
            self.write_tx(|tx| {
                tx.outbox_remove(&item.id)?;
                tx.append(e.clone(), now)
            })?;
            return Ok(());
        }
        let mut retry = item.clone();
        retry.next_at = after(now, backoff(item.attempts));
        retry.last_error = Some(failure.error.clone());
        self.store().outbox_update(&retry, item.attempts)?;
        if item.attempts == 1 {
            let e = failed(false);
            self.write_tx(|tx| tx.append(e.clone(), now))?;
        }
        Ok(())
    }
}

/// Runs blocking broker work off the async threads.
async fn blocking<T: Send + 'static>(
    broker: &Arc<Broker>,
    f: impl FnOnce(&Broker) -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, BrokerError> {
    let b = Arc::clone(broker);
    tokio::task::spawn_blocking(move || f(&b))
        .await
        .map_err(|e| BrokerError::Internal(format!("notification worker: {e}")))?
}

/// One attempt at one notification: claim, post, settle.
async fn attempt(broker: &Arc<Broker>, deliverer: &Deliverer, item: OutboxItem) -> bool {
    let claim = blocking(broker, move |b| b.outbox_claim(&item)).await;
    let Ok(Some(item)) = claim else {
        return false;
    };
    let target = blocking(broker, |b| b.policy())
        .await
        .ok()
        .and_then(|p| p.notify.into_iter().find(|t| t.name == item.target));
    let outcome = match &target {
        Some(t) => deliverer.send(t, &item.id, item.event, &item.payload).await,
        None => Err(Failure {
            error: format!("target {:?} is no longer in the policy", item.target),
            retry: false,
        }),
    };
    let delivered = outcome.is_ok();
    if let Err(e) = blocking(broker, move |b| b.outbox_settle(&item, outcome)).await {
        tracing::warn!(error = %e, "settling a notification failed");
    }
    delivered
}

/// One look at the outbox: delivers what is due; returns how many were delivered.
pub async fn pass(broker: &Arc<Broker>, deliverer: &Deliverer) -> usize {
    let due = match blocking(broker, |b| b.outbox_due(BATCH)).await {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(error = %e, "reading the outbox failed");
            return 0;
        }
    };
    futures_util::stream::iter(due)
        .map(|item| attempt(broker, deliverer, item))
        .buffer_unordered(MAX_IN_FLIGHT)
        .filter(|delivered| std::future::ready(*delivered))
        .count()
        .await
}

/// Delivers notifications until `stopping` turns true, and runs the escalation sweep
/// ([`super::escalate`], every [`super::escalate::SWEEP`]) and the review queue's
/// ([`crate::review_queue`], every [`REVIEW_SWEEP`]).
pub async fn run(broker: Arc<Broker>, mut stopping: watch::Receiver<bool>) {
    let deliverer = match Deliverer::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "no notification client: notifications stay queued");
            return;
        }
    };
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweep = tokio::time::interval(super::escalate::SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reviews = tokio::time::interval(REVIEW_SWEEP);
    reviews.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = poll.tick() => {
                // Drain: a full batch means more may be waiting.
                while pass(&broker, &deliverer).await >= BATCH {}
            }
            _ = sweep.tick() => {
                if let Err(e) = blocking(&broker, |b| b.escalate_due()).await {
                    tracing::warn!(error = %e, "escalation sweep failed");
                }
            }
            _ = reviews.tick() => {
                if let Err(e) = blocking(&broker, |b| b.review_notices_due()).await {
                    tracing::warn!(error = %e, "review sweep failed");
                }
            }
            () = crate::shutdown::stopped(&mut stopping) => return,
        }
    }
}

/// What `notify test` reports for one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestResult {
    /// The target's name.
    pub target: String,
    /// `webhook` or `slack`.
    pub kind: String,
    /// Where it posts, redacted.
    pub url: String,
    /// True when the receiver answered 2xx.
    pub delivered: bool,
    /// The HTTP status on success.
    pub status: Option<u16>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Sends one test notification to every target (not queued, not retried) and reports each.
pub async fn test_all(broker: &Arc<Broker>, by: &str) -> Result<Vec<TestResult>, BrokerError> {
    let policy = blocking(broker, |b| b.policy()).await?;
    let deliverer = Deliverer::new().map_err(BrokerError::Internal)?;
    let now: DateTime<Utc> = Utc::now();
    let id = format!("test-{}", uuid::Uuid::new_v4().simple());
    let payload = json!({
        "id": id,
        "event": "test",
        "at": now,
        "audit": {"actor": by, "kind": "test", "data": {}},
        "request": null,
    });
    let sends = policy.notify.iter().map(|t| {
        let (deliverer, payload, id) = (&deliverer, &payload, &id);
        async move {
            let out = deliverer.send(t, id, NotifyEvent::Test, payload).await;
            TestResult {
                target: t.name.clone(),
                kind: serde_json::to_value(t.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                url: t.url_shown(),
                delivered: out.is_ok(),
                status: out.as_ref().ok().copied(),
                error: out.err().map(|f| f.error),
            }
        }
    });
    Ok(futures_util::future::join_all(sends).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::test_support::broker;
    use crate::broker::{Clock, TestClock};
    use crate::policy::Role;
    use crate::request::NewRequest;

    const POLICY: &str = "requesters = [\"*\"]\napprovers = [\"*\"]\n\
        [[notify]]\nname = \"all\"\nkind = \"slack\"\nurl = \"https://hooks.example.com/T/B/x\"\nevents = [\"request_created\", \"request_approved\"]\n\
        [[notify]]\nname = \"bobs\"\nkind = \"slack\"\nurl = \"https://hooks.example.com/T/B/y\"\nevents = [\"request_created\"]\nusers = [\"bob\"]\n";

    fn request(b: &Broker, clock: &TestClock) -> String {
        let e = b
            .enrol_user("rita", Role::parse_set("requester").unwrap())
            .unwrap();
        let code = crate::mfa::code_at("rita", &e.secret_base32, clock.now()).unwrap();
        b.confirm_enrolment("rita", &code).unwrap();
        clock.advance(Duration::from_secs(30));
        let code = crate::mfa::code_at("rita", &e.secret_base32, clock.now()).unwrap();
        b.create_request(ask("i-0abc1234"), &code).unwrap().id
    }

    fn ask(target: &str) -> NewRequest {
        NewRequest {
            requester: "rita".into(),
            target: target.into(),
            reason: "database disk is full".into(),
            incident: None,
            duration: Duration::from_secs(600),
            command: None,
        }
    }

    fn failures(b: &Broker) -> Vec<serde_json::Value> {
        b.audit_events(0, 1000)
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == EventKind::NotificationFailed)
            .map(|e| e.data)
            .collect()
    }

    #[test]
    fn the_event_and_its_notification_commit_together_and_filters_apply() {
        let (_dir, clock, b) = broker(POLICY);
        let id = request(&b, &clock);
        let due = b.outbox_due(100).unwrap();
        // "bobs" only takes events about bob: rita's request is not his.
        assert_eq!(due.len(), 1, "{due:?}");
        let item = &due[0];
        assert_eq!(item.target, "all");
        assert_eq!(item.event, NotifyEvent::RequestCreated);
        assert_eq!(item.payload["request"]["id"], id.as_str());
        assert_eq!(item.payload["id"], item.id.as_str());
        assert_eq!(item.payload["audit"]["kind"], "request_created");
        // Enrolment and MFA events notify nobody.
        assert!(due.iter().all(|i| i.event != NotifyEvent::Test));
    }

    #[test]
    fn claims_are_exclusive_and_failures_back_off_then_give_up_audited() {
        let (_dir, clock, b) = broker(POLICY);
        request(&b, &clock);
        let item = b.outbox_due(10).unwrap().remove(0);
        let claimed = b.outbox_claim(&item).unwrap().unwrap();
        assert_eq!(claimed.attempts, 1);
        // A second worker holding the stale copy gets nothing; nor is it due while claimed.
        assert!(b.outbox_claim(&item).unwrap().is_none());
        assert!(b.outbox_due(10).unwrap().is_empty());
        let fail = || Failure {
            error: "HTTP 503".into(),
            retry: true,
        };
        b.outbox_settle(&claimed, Err(fail())).unwrap();
        assert_eq!(failures(&b).len(), 1, "the first failure is audited");
        assert_eq!(failures(&b)[0]["final"], false);
        assert!(b.outbox_due(10).unwrap().is_empty(), "backing off");
        let mut attempts = 1;
        while attempts < MAX_ATTEMPTS {
            clock.advance(BACKOFF_CAP);
            let item = b.outbox_due(10).unwrap().remove(0);
            assert_eq!(item.last_error.as_deref(), Some("HTTP 503"));
            let claimed = b.outbox_claim(&item).unwrap().unwrap();
            attempts = claimed.attempts;
            b.outbox_settle(&claimed, Err(fail())).unwrap();
        }
        clock.advance(BACKOFF_CAP);
        assert!(b.outbox_due(10).unwrap().is_empty(), "given up");
        let f = failures(&b);
        assert_eq!(f.len(), 2, "first failure and the final one only: {f:?}");
        assert_eq!(f[1]["final"], true);
        assert_eq!(f[1]["attempts"], MAX_ATTEMPTS);
        assert_eq!(b.verify_audit().unwrap().broken, None);
    }

    #[test]
    fn a_delivered_one_is_gone_and_a_permanent_failure_gives_up_at_once() {
        let (_dir, clock, b) = broker(POLICY);
        request(&b, &clock);
        request_again(&b, &clock);
        let mut due = b.outbox_due(10).unwrap();
        assert_eq!(due.len(), 2);
        let first = b.outbox_claim(&due.remove(0)).unwrap().unwrap();
        b.outbox_settle(&first, Ok(200)).unwrap();
        let second = b.outbox_claim(&due.remove(0)).unwrap().unwrap();
        let gone = Failure {
            error: "HTTP 404".into(),
            retry: false,
        };
        b.outbox_settle(&second, Err(gone)).unwrap();
        clock.advance(BACKOFF_CAP * 2);
        assert!(b.outbox_due(10).unwrap().is_empty());
        let f = failures(&b);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0]["final"], true);
    }

    fn request_again(b: &Broker, clock: &TestClock) {
        clock.advance(Duration::from_secs(30));
        let secret = b.store().users().unwrap()[0].secret_base32.clone();
        let code = crate::mfa::code_at("rita", &secret, clock.now()).unwrap();
        b.create_request(ask("i-0abc5678"), &code).unwrap();
    }

    #[test]
    fn escalation_fires_once_per_step_while_pending() {
        let policy = format!("escalate_after = \"5m\"\n{POLICY}");
        let policy = policy.replace(
            "events = [\"request_created\", \"request_approved\"]",
            "events = [\"escalation\"]",
        );
        let (_dir, clock, b) = broker(&policy);
        request(&b, &clock);
        assert_eq!(b.escalate_due().unwrap(), 0);
        clock.advance(Duration::from_secs(300));
        assert_eq!(b.escalate_due().unwrap(), 1);
        assert_eq!(b.escalate_due().unwrap(), 0, "once per step");
        clock.advance(Duration::from_secs(300));
        assert_eq!(b.escalate_due().unwrap(), 1);
        let due = b.outbox_due(10).unwrap();
        assert_eq!(due.len(), 2);
        assert!(due.iter().all(|i| i.event == NotifyEvent::Escalation));
        assert_eq!(due[1].payload["audit"]["data"]["step"], 2);
        // Past its TTL (30m default) nothing escalates any more.
        clock.advance(Duration::from_secs(3600));
        assert_eq!(b.escalate_due().unwrap(), 0);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), BACKOFF_BASE);
        assert_eq!(backoff(2), BACKOFF_BASE * 2);
        assert_eq!(backoff(4), BACKOFF_BASE * 8);
        assert_eq!(backoff(30), BACKOFF_CAP);
    }
}
