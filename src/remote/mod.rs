//! The client of a `sombrero serve` daemon: [`RemoteBroker`] implements [`BrokerApi`] over HTTP.
//!
//! The API is synchronous (as the embedded broker is); each call runs on the client's own
//! small runtime and the calling thread waits for it, so it can be called from plain threads
//! and from `spawn_blocking` alike. A [`Connector`] opens the byte stream: [`UnixConnector`]
//! for `unix:` addresses; TLS for `tcp://` plugs in as another connector.

pub mod connector;
pub mod emergency;
pub mod fleet;
pub mod notify;
pub mod pool;
pub mod recordings;
pub mod screen;
pub mod session;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{BrokerApi, MAX_WAIT};
use crate::audit::Event;
use crate::broker::{AuditCheck, BrokerError, Result, UserInfo};
use crate::config::AwsOptions;
use crate::policy::{Policy, Role};
use crate::request::{NewRequest, Request, State};
use crate::wire::body::{
    CreateBody, DecideBody, ErrorBody, ExpireReply, KillBody, PermitsReply, PolicyReply,
    RevisionReply,
};
use crate::wire::identity::Identity;
use crate::wire::{Endpoint, ErrorKind};

pub use connector::{BoxIo, Connector, TlsConnector, UnixConnector};
use pool::{Pool, SendError};

/// The most audit events the daemon returns per page.
const AUDIT_PAGE: usize = 5_000;

/// A broker reached over the wire.
pub struct RemoteBroker {
    inner: Arc<Inner>,
    rt: Arc<ClientRuntime>,
    identity: OnceLock<Identity>,
}

struct Inner {
    endpoint: String,
    connector: Arc<dyn Connector>,
    pool: Pool,
}

/// The runtime client calls run on (one worker thread; several clients may share one). It
/// shuts down without waiting, so dropping a client inside another runtime (the TUI's) is safe.
pub struct ClientRuntime(Option<tokio::runtime::Runtime>);

impl ClientRuntime {
    /// A new client runtime.
    pub fn new() -> Result<Arc<ClientRuntime>> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sombrero-client")
            .enable_all()
            .build()
            .map_err(|e| BrokerError::Internal(format!("cannot start the client runtime: {e}")))?;
        Ok(Arc::new(ClientRuntime(Some(rt))))
    }
}

impl Drop for ClientRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

fn unavailable(endpoint: &str, what: impl std::fmt::Display) -> BrokerError {
    let hint = if endpoint.starts_with("tcp://") {
        "is `sombrero serve` listening there, and does --ca name the CA that signed its certificate?"
    } else {
        "is `sombrero serve` running, and may you use its socket?"
    };
    BrokerError::Remote {
        kind: ErrorKind::Unavailable,
        message: format!("cannot reach the broker at {endpoint}: {what} ({hint})"),
    }
}

/// A write whose connection broke after it was sent: the broker may or may not have applied it.
fn outcome_unknown(endpoint: &str, method: &Method, path: &str, what: String) -> BrokerError {
    BrokerError::Remote {
        kind: ErrorKind::Unavailable,
        message: format!(
            "the connection to the broker at {endpoint} broke after {method} {path} was sent ({what}); it may or may not have been applied, so it was not sent again: check with `sombrero show` or `sombrero list` before retrying"
        ),
    }
}

impl RemoteBroker {
    /// A client for `endpoint` with default options (over TCP: the public web roots, the
    /// default AWS credential chain).
    pub fn connect(endpoint: &Endpoint) -> Result<RemoteBroker> {
        RemoteBroker::connect_with(endpoint, &AwsOptions::default())
    }

    /// A client for `endpoint`; over TCP, TLS per `--ca` with an IAM identity proof from the
    /// AWS credentials `--profile`/`--region` select.
    pub fn connect_with(endpoint: &Endpoint, g: &AwsOptions) -> Result<RemoteBroker> {
        let connector: Arc<dyn Connector> = match endpoint {
            Endpoint::Unix(path) => Arc::new(UnixConnector::new(path.clone())),
            Endpoint::Tcp(addr) => {
                Arc::new(
                    TlsConnector::new(addr, g).map_err(|message| BrokerError::Remote {
                        kind: ErrorKind::Input,
                        message: format!("--broker {endpoint}: {message}"),
                    })?,
                )
            }
        };
        RemoteBroker::with_connector(endpoint.to_string(), connector)
    }

    /// A client over any transport (`endpoint` names it in messages).
    pub fn with_connector(endpoint: String, connector: Arc<dyn Connector>) -> Result<RemoteBroker> {
        Ok(RemoteBroker::on_runtime(
            endpoint,
            connector,
            ClientRuntime::new()?,
        ))
    }

    /// A client whose calls run on a shared runtime.
    pub fn on_runtime(
        endpoint: String,
        connector: Arc<dyn Connector>,
        rt: Arc<ClientRuntime>,
    ) -> RemoteBroker {
        RemoteBroker {
            inner: Arc::new(Inner {
                endpoint,
                pool: Pool::new(Arc::clone(&connector)),
                connector,
            }),
            rt,
            identity: OnceLock::new(),
        }
    }

    /// The transport to the daemon (relayed sessions open their own connection on it).
    pub fn connector(&self) -> Arc<dyn Connector> {
        Arc::clone(&self.inner.connector)
    }

    /// The daemon's address, for messages.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// Who the daemon says this connection is.
    pub fn whoami(&self) -> Result<Identity> {
        if let Some(i) = self.identity.get() {
            return Ok(i.clone());
        }
        let me: Identity = self.call(Method::GET, "/v1/whoami".into(), None::<()>)?;
        Ok(self.identity.get_or_init(|| me).clone())
    }

    /// Runs one call on the client runtime and waits for it on this thread.
    fn call<T, B>(&self, method: Method, path: String, body: Option<B>) -> Result<T>
    where
        T: DeserializeOwned + Send + 'static,
        B: Serialize,
    {
        let body = match body {
            Some(b) => serde_json::to_vec(&b)
                .map_err(|e| BrokerError::Internal(format!("cannot encode the request: {e}")))?,
            None => Vec::new(),
        };
        self.run(move |inner| async move { inner.call(method, path, body).await })
    }

    /// Runs `f` on the client runtime and waits for it on this thread.
    fn run<T, F>(&self, f: impl FnOnce(Arc<Inner>) -> F) -> Result<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let Some(rt) = &self.rt.0 else {
            return Err(BrokerError::Internal("the client runtime is gone".into()));
        };
        let fut = f(Arc::clone(&self.inner));
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| BrokerError::Internal("the client runtime stopped".into()))?
    }

    /// Like `call`, for a reply that is not JSON (a file): its bytes.
    fn call_raw(&self, path: String) -> Result<Bytes> {
        self.run(move |inner| async move {
            let (status, bytes) = inner.exchange(Method::GET, path, Vec::new()).await?;
            if status.is_success() {
                return Ok(bytes);
            }
            // Not a success: decode yields the daemon's error.
            decode::<()>(&inner.endpoint, status, &bytes).map(|()| bytes)
        })
    }

    /// Refuses an actor other than the connection's identity: the daemon would act as the
    /// identity anyway, and silently doing so would surprise the caller.
    fn check_actor(&self, actor: &str) -> Result<()> {
        let me = self.whoami()?;
        if me.user == actor {
            return Ok(());
        }
        Err(BrokerError::Remote {
            kind: ErrorKind::Input,
            message: format!(
                "the broker knows you as {} (from {}); it cannot act as {actor}",
                me.user, me.external
            ),
        })
    }
}

impl Inner {
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Vec<u8>,
    ) -> Result<T> {
        let (status, bytes) = self.exchange(method, path, body).await?;
        decode(&self.endpoint, status, &bytes)
    }

    /// One request; the reply's status and whole body.
    async fn exchange(
        &self,
        method: Method,
        path: String,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes)> {
        let ep = &self.endpoint;
        // The pool adds the identity proof: it is bound to the connection it goes on.
        let req = hyper::Request::builder()
            .method(method.clone())
            .uri(&path)
            .header(HOST, self.connector.host())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| BrokerError::Internal(format!("cannot build the request: {e}")))?;
        let (resp, lease) = self.pool.send(&req).await.map_err(|e| match e {
            SendError::Connect(e) => unavailable(ep, e),
            SendError::Unknown(e) => outcome_unknown(ep, &method, &path, e),
            SendError::Identity(message) => BrokerError::Remote {
                kind: ErrorKind::Identity,
                message,
            },
        })?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unavailable(ep, e))?
            .to_bytes();
        self.pool.put(lease);
        Ok((status, bytes))
    }
}

/// A reply body, or the daemon's error as a [`BrokerError::Remote`].
fn decode<T: DeserializeOwned>(endpoint: &str, status: StatusCode, bytes: &[u8]) -> Result<T> {
    if status.is_success() {
        return serde_json::from_slice(bytes)
            .map_err(|e| unavailable(endpoint, format!("unreadable reply: {e}")));
    }
    Err(match serde_json::from_slice::<ErrorBody>(bytes) {
        // A lifecycle refusal stays typed; its text is made here from the same fields.
        Ok(ErrorBody {
            kind: ErrorKind::Refused,
            refusal: Some(refusal),
            ..
        }) => BrokerError::Refused(refusal),
        Ok(e) => BrokerError::Remote {
            kind: e.kind,
            message: e.message,
        },
        // axum's own rejections (a malformed body or path) are plain text.
        Err(_) => BrokerError::Remote {
            kind: if status.is_client_error() {
                ErrorKind::Input
            } else {
                ErrorKind::Internal
            },
            message: format!(
                "the broker answered {status}: {}",
                String::from_utf8_lossy(bytes).trim()
            ),
        },
    })
}

/// Escapes a path segment or query value (request ids and names are plain, but be safe).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const NO_BODY: Option<()> = None;

/// The body that creates `new` (the requester is the connection's identity, not sent).
fn create_body(new: NewRequest, code: &str) -> CreateBody {
    CreateBody {
        target: new.target,
        reason: new.reason,
        incident: new.incident,
        duration_secs: new.duration.as_secs(),
        command: new.command,
        code: code.to_string(),
    }
}

impl BrokerApi for RemoteBroker {
    fn identity(&self) -> Result<Option<String>> {
        Ok(Some(self.whoami()?.user))
    }

    fn revision(&self) -> Result<u64> {
        let r: RevisionReply = self.call(Method::GET, "/v1/revision".into(), NO_BODY)?;
        Ok(r.revision)
    }

    fn wait_revision(&self, after: u64, timeout: Duration) -> Result<u64> {
        let ms = timeout.min(MAX_WAIT).as_millis();
        let path = format!("/v1/revision?after={after}&wait_ms={ms}");
        let r: RevisionReply = self.call(Method::GET, path, NO_BODY)?;
        Ok(r.revision)
    }

    fn waits_for_changes(&self) -> bool {
        true
    }

    fn policy(&self) -> Result<Policy> {
        let r: PolicyReply = self.call(Method::GET, "/v1/policy".into(), NO_BODY)?;
        let path = format!("{} (on the broker)", r.path);
        Ok(Policy::parse(&r.text, std::path::Path::new(&path))?)
    }

    fn permits(&self, name: &str, role: Role) -> Result<bool> {
        let path = format!("/v1/permits/{}?user={}", role.as_str(), enc(name));
        let r: PermitsReply = self.call(Method::GET, path, NO_BODY)?;
        Ok(r.permitted)
    }

    fn users(&self) -> Result<Vec<UserInfo>> {
        self.call(Method::GET, "/v1/users".into(), NO_BODY)
    }

    fn create_request(&self, new: NewRequest, code: &str) -> Result<Request> {
        self.check_actor(&new.requester)?;
        let body = create_body(new, code);
        self.call(Method::POST, "/v1/requests".into(), Some(body))
    }

    fn create_emergency(&self, new: NewRequest, code: &str) -> Result<Request> {
        RemoteBroker::create_emergency(self, new, code)
    }

    fn pending_reviews(&self) -> Result<Vec<crate::review_queue::PendingReview>> {
        RemoteBroker::pending_reviews(self)
    }

    fn approve(&self, id: &str, by: &str, code: &str, comment: Option<&str>) -> Result<Request> {
        self.decide("approve", id, by, code, comment)
    }

    fn deny(&self, id: &str, by: &str, code: &str, comment: Option<&str>) -> Result<Request> {
        self.decide("deny", id, by, code, comment)
    }

    fn cancel(&self, id: &str, by: &str) -> Result<Request> {
        self.check_actor(by)?;
        let path = format!("/v1/requests/{}/cancel", enc(id));
        self.call(Method::POST, path, NO_BODY)
    }

    fn kill_session(&self, id: &str, by: &str, code: &str) -> Result<Request> {
        self.check_actor(by)?;
        let path = format!("/v1/requests/{}/kill", enc(id));
        let body = KillBody {
            code: code.to_string(),
        };
        self.call(Method::POST, path, Some(body))
    }

    fn get(&self, id: &str) -> Result<Request> {
        self.call(Method::GET, format!("/v1/requests/{}", enc(id)), NO_BODY)
    }

    fn list(&self, state: Option<State>) -> Result<Vec<Request>> {
        let path = match state {
            Some(s) => format!("/v1/requests?state={}", s.as_str()),
            None => "/v1/requests".into(),
        };
        self.call(Method::GET, path, NO_BODY)
    }

    fn expire_due(&self) -> Result<usize> {
        let r: ExpireReply = self.call(Method::POST, "/v1/expire".into(), NO_BODY)?;
        Ok(r.expired)
    }

    fn audit_events(&self, after_seq: u64, limit: usize) -> Result<Vec<Event>> {
        let mut out: Vec<Event> = Vec::new();
        let mut after = after_seq;
        while out.len() < limit {
            let want = (limit - out.len()).min(AUDIT_PAGE);
            let path = format!("/v1/audit?after={after}&limit={want}");
            let page: Vec<Event> = self.call(Method::GET, path, NO_BODY)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            let short = page.len() < want;
            out.extend(page);
            if short {
                break;
            }
        }
        Ok(out)
    }

    fn audit_for_request(&self, id: &str) -> Result<Vec<Event>> {
        let path = format!("/v1/requests/{}/events", enc(id));
        self.call(Method::GET, path, NO_BODY)
    }

    fn verify_audit(&self) -> Result<AuditCheck> {
        self.call(Method::GET, "/v1/audit/verify".into(), NO_BODY)
    }

    fn switch_user(&self, name: &str, _code: &str) -> Result<()> {
        let me = self.whoami()?;
        Err(BrokerError::Remote {
            kind: ErrorKind::Input,
            message: format!(
                "cannot switch to {name}: the broker knows you as {} from your connection ({}); run the TUI as that person instead",
                me.user, me.external
            ),
        })
    }
}

impl RemoteBroker {
    fn decide(
        &self,
        verb: &str,
        id: &str,
        by: &str,
        code: &str,
        comment: Option<&str>,
    ) -> Result<Request> {
        self.check_actor(by)?;
        let body = DecideBody {
            code: code.to_string(),
            comment: comment.map(str::to_string),
        };
        let path = format!("/v1/requests/{}/{verb}", enc(id));
        self.call(Method::POST, path, Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_kind_and_message() {
        let body = br#"{"kind":"refused","message":"ann already approved req-1"}"#;
        let e = decode::<Request>("unix:/s", StatusCode::CONFLICT, body).unwrap_err();
        assert!(e.is_refusal());
        assert_eq!(e.to_string(), "ann already approved req-1");
        let e = decode::<Request>("unix:/s", StatusCode::BAD_REQUEST, b"Invalid URL").unwrap_err();
        assert!(e.is_input(), "{e}");
        let e = decode::<Request>("unix:/s", StatusCode::OK, b"nonsense").unwrap_err();
        assert!(!e.is_input() && !e.is_refusal(), "{e}");
    }

    #[test]
    fn encodes_path_segments() {
        assert_eq!(enc("req-0a1b"), "req-0a1b");
        assert_eq!(enc("a/b?c"), "a%2Fb%3Fc");
    }

    #[test]
    fn unreachable_daemon_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let ep = Endpoint::Unix(dir.path().join("none.sock"));
        let b = RemoteBroker::connect(&ep).unwrap();
        let e = b.revision().unwrap_err();
        assert!(e.to_string().contains("cannot reach the broker"), "{e}");
        assert!(!e.is_input() && !e.is_refusal());
    }
}
