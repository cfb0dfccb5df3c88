//! Notifications through a broker daemon: `notify test` runs on the broker, which holds the
//! URLs and secrets; the review queue is the broker's.

use hyper::Method;

use crate::broker::Result;
use crate::notify::worker::TestResult;
use crate::review_queue::PendingReview;

use super::{NO_BODY, RemoteBroker};

impl RemoteBroker {
    /// Sends a test notification to every target of the broker's policy; one result each.
    pub fn notify_test(&self) -> Result<Vec<TestResult>> {
        self.call(Method::POST, "/v1/notify/test".into(), NO_BODY)
    }

    /// The broker's review queue (approvers and reviewers).
    pub fn pending_reviews(&self) -> Result<Vec<PendingReview>> {
        self.call(Method::GET, "/v1/reviews/pending".into(), NO_BODY)
    }
}
