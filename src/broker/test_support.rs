//! A broker for unit tests elsewhere in the crate: a fresh data dir, a stopped clock.

use std::sync::Arc;

use chrono::{TimeZone, Utc};

use super::{Broker, BrokerOptions, TestClock};
use crate::config::Paths;

/// A broker over a fresh data dir whose policy file holds `policy`, its clock stopped at
/// 1_800_000_000 (2027-01-15); keep the dir alive as long as the broker.
pub(crate) fn broker(policy: &str) -> (tempfile::TempDir, Arc<TestClock>, Broker) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
    let clock = TestClock::at(Utc.timestamp_opt(1_800_000_000, 0).unwrap());
    let opts = BrokerOptions {
        policy_path: None,
        clock: Some(clock.clone()),
    };
    let b = Broker::open(&Paths::at(dir.path()), opts).unwrap();
    (dir, clock, b)
}
