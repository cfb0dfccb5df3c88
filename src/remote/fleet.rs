//! The fleet through a broker daemon: its listing its rogue scan and its reaper, made with the daemon's
//! own fleet credentials (a thin client holds none).

use hyper::Method;

use crate::broker::Result;
use crate::wire::body::ReapBody;
use crate::workflows::reaper::Reaped;
use crate::workflows::scan::{NodeRow, RogueReport};

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

    /// Runs the reaper on the daemon (approvers and reviewers only): what it did, or with
    /// `dry_run` would do. It returns when every replacement it started has ended.
    pub fn reap(&self, dry_run: bool) -> Result<Vec<Reaped>> {
        self.call(Method::POST, "/v1/reap".into(), Some(ReapBody { dry_run }))
    }
}
