//! The emergency door through a broker daemon.

use hyper::Method;

use crate::broker::Result;
use crate::request::{NewRequest, Request};

use super::{RemoteBroker, create_body};

impl RemoteBroker {
    /// Creates an emergency request as the connection's identity.
    pub fn create_emergency(&self, new: NewRequest, code: &str) -> Result<Request> {
        self.check_actor(&new.requester)?;
        let body = create_body(new, code);
        self.call(Method::POST, "/v1/requests/emergency".into(), Some(body))
    }
}
