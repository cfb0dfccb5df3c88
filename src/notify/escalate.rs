//! Escalation: a request still pending after `escalate_after` is announced again to the
//! targets listing `escalation`, once per step (at 1x, 2x, 3x ... `escalate_after`).

use std::time::Duration;

use serde_json::json;

use crate::audit::{EventKind, NewEvent};
use crate::broker::{Broker, BrokerError, SYSTEM_ACTOR};
use crate::request::State;
use crate::store::Store;

/// How often the daemon (and the embedded worker) looks for escalations due.
pub const SWEEP: Duration = Duration::from_secs(5);

pub use crate::policy::notify::steps;

impl Broker {
    /// Audits `request_escalated` (which notifies) for every pending request that reached a
    /// new escalation step; returns how many were escalated.
    pub fn escalate_due(&self) -> Result<usize, BrokerError> {
        let policy = self.policy()?;
        let Some(every) = policy.escalate_after else {
            return Ok(0);
        };
        let now = self.now();
        // A cheap look first: most sweeps find nothing and write nothing.
        let due: Vec<String> = self
            .store()
            .requests(Some(State::Pending))?
            .into_iter()
            .filter(|r| !r.is_due(now) && steps(r.created_at, now, every) > r.escalations)
            .map(|r| r.id)
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        Ok(self.write_tx(|tx| {
            let mut n = 0;
            for id in &due {
                let Some(mut r) = tx.request(id)? else {
                    continue;
                };
                let step = steps(r.created_at, now, every);
                if r.state != State::Pending || r.is_due(now) || step <= r.escalations {
                    continue;
                }
                r.escalations = step;
                tx.put_request(&r)?;
                let waited = (now - r.created_at).num_seconds().max(0);
                tx.append(
                    NewEvent::new(
                        SYSTEM_ACTOR,
                        EventKind::RequestEscalated,
                        Some(id),
                        json!({"step": step, "pending_secs": waited,
                               "approvals": r.approvals.len()}),
                    ),
                    now,
                )?;
                n += 1;
            }
            Ok(n)
        })?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use chrono::Utc;

    #[test]
    fn steps_count_whole_intervals() {
        let t0 = Utc::now();
        let m5 = Duration::from_secs(300);
        assert_eq!(steps(t0, t0 + TimeDelta::seconds(299), m5), 0);
        assert_eq!(steps(t0, t0 + TimeDelta::seconds(300), m5), 1);
        assert_eq!(steps(t0, t0 + TimeDelta::seconds(901), m5), 3);
        assert_eq!(steps(t0, t0 - TimeDelta::seconds(10), m5), 0);
        assert_eq!(steps(t0, t0 + TimeDelta::seconds(10), Duration::ZERO), 0);
    }
}
