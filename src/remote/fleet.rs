//! The fleet through a broker daemon: its listing and its rogue scan, made with the daemon's
//! own fleet credentials (a thin client holds none).

use hyper::Method;

use crate::broker::Result;
use crate::fleet::scan::{NodeRow, RogueReport};

use super::{NO_BODY, RemoteBroker};

impl RemoteBroker {
    /// The daemon's fleet listing, marked as `sombrero fleet --json` marks it.
    pub fn fleet(&self) -> Result<Vec<NodeRow>> {
        self.call(Method::GET, "/v1/fleet".into(), NO_BODY)
    }

    /// Runs the rogue scan on the daemon (approvers and reviewers only); new findings are
    /// audited there.
    pub fn rogue(&self) -> Result<RogueReport> {
        self.call(Method::POST, "/v1/rogue".into(), NO_BODY)
    }
}
