//! A backend of requests, users and audit only, over any [`BrokerApi`]: for front ends and
//! tests that leave the fleet, recordings and sessions out (every such call says so).

use std::path::PathBuf;
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{
    Backend, BackendError, CastSource, KeyInfo, Killed, Listing, OpenedSession, PreparedReview,
    Progress, ReplaySource, Result, SessionRequest, TerminalOpen, Verified,
};
use crate::api::BrokerApi;
use crate::audit::Event;
use crate::notify::worker::TestResult;
use crate::policy::Policy;
use crate::workflows::reaper::Reaped;
use crate::workflows::scan::{NodeRow, RogueReport};

/// Requests, users and audit through `api`; nothing else.
#[derive(Clone)]
pub struct ApiOnly(Arc<dyn BrokerApi>);

impl ApiOnly {
    /// The backend over `api`.
    pub fn new(api: Arc<dyn BrokerApi>) -> ApiOnly {
        ApiOnly(api)
    }
}

/// The answer of every part this backend leaves out.
fn left_out<T: Send + 'static>(what: &str) -> BoxFuture<'static, Result<T>> {
    let e = BackendError::Input(format!("{what} is not available here"));
    futures_util::future::ready(Err(e)).boxed()
}

impl Backend for ApiOnly {
    fn api(&self) -> Result<Arc<dyn BrokerApi>> {
        Ok(Arc::clone(&self.0))
    }
    fn policy_source(&self) -> BoxFuture<'_, Result<(String, Policy)>> {
        left_out("the policy file")
    }
    fn notify_test(&self) -> BoxFuture<'_, Result<Vec<TestResult>>> {
        left_out("notifications")
    }
    fn fleet(&self) -> BoxFuture<'_, Result<Vec<NodeRow>>> {
        left_out("the fleet")
    }
    fn reap(&self, _: bool, _: Progress) -> BoxFuture<'_, Result<Vec<Reaped>>> {
        left_out("the fleet")
    }
    fn rogue(&self) -> BoxFuture<'_, Result<RogueReport>> {
        left_out("the fleet")
    }
    fn recordings(&self) -> BoxFuture<'_, Result<Listing>> {
        left_out("recordings")
    }
    fn verify(&self, _: PathBuf, _: Option<VerifyingKey>) -> BoxFuture<'_, Result<Verified>> {
        left_out("recordings")
    }
    fn replay_source(
        &self,
        _: PathBuf,
        _: Option<VerifyingKey>,
    ) -> BoxFuture<'_, Result<ReplaySource>> {
        left_out("recordings")
    }
    fn cast(&self, _: PathBuf) -> BoxFuture<'_, Result<CastSource>> {
        left_out("recordings")
    }
    fn prepare_review(
        &self,
        _: PathBuf,
        _: Option<String>,
    ) -> BoxFuture<'_, Result<PreparedReview>> {
        left_out("recordings")
    }
    fn sign_off(&self, _: PreparedReview, _: String, _: String) -> BoxFuture<'_, Result<Event>> {
        left_out("recordings")
    }
    fn recorder_key(&self) -> BoxFuture<'_, Result<KeyInfo>> {
        left_out("recordings")
    }
    fn open_session(&self, _: SessionRequest) -> BoxFuture<'_, Result<OpenedSession>> {
        left_out("sessions")
    }
    fn open_terminal(&self, _: TerminalOpen, _: Progress) -> BoxFuture<'_, Result<u8>> {
        left_out("sessions")
    }
    fn watch_terminal(&self, _: String) -> BoxFuture<'_, Result<u8>> {
        left_out("sessions")
    }
    fn kill(&self, _: String, _: String, _: String) -> BoxFuture<'_, Result<Killed>> {
        left_out("sessions")
    }
    fn duties(&self, _: tokio::sync::watch::Receiver<bool>) -> BoxFuture<'static, ()> {
        futures_util::future::ready(()).boxed()
    }
}
