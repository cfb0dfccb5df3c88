//! Notifications through a broker daemon: `notify test` runs on the broker, which holds the
//! URLs and secrets.

use hyper::Method;

use crate::broker::Result;
use crate::notify::worker::TestResult;

use super::{NO_BODY, RemoteBroker};

impl RemoteBroker {
    /// Sends a test notification to every target of the broker's policy; one result each.
    pub fn notify_test(&self) -> Result<Vec<TestResult>> {
        self.call(Method::POST, "/v1/notify/test".into(), NO_BODY)
    }
}
