//! One POST to one target, bounded in time, with errors that never name the URL.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::event::NotifyEvent;
use super::payload;
use super::targets::{NotifyKind, NotifyTarget};

/// How long one delivery may take, connecting included.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest error text kept (in the outbox, the audit log and `notify test`).
pub const MAX_ERROR_CHARS: usize = 200;

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong (no URL, no secret).
    pub error: String,
    /// False when retrying cannot help (a 4xx other than 408/429, no URL or secret).
    pub retry: bool,
}

impl Failure {
    fn new(error: impl Into<String>, retry: bool) -> Failure {
        let error: String = error
            .into()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_ERROR_CHARS)
            .collect();
        Failure { error, retry }
    }
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Posts notifications (one client, connections reused).
#[derive(Clone)]
pub struct Deliverer {
    http: HttpsClient,
}

impl Deliverer {
    /// A deliverer with the platform's web PKI roots.
    pub fn new() -> Result<Deliverer, String> {
        let tls = crate::wire::tls::client_config(None).map_err(|e| e.to_string())?;
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(DELIVERY_TIMEOUT));
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Deliverer {
            http: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Sends `payload` as `event` to `target`; `id` is the idempotency key. Returns the HTTP
    /// status on a 2xx.
    pub async fn send(
        &self,
        target: &NotifyTarget,
        id: &str,
        event: NotifyEvent,
        payload: &Value,
    ) -> Result<u16, Failure> {
        let url = target.resolve_url().map_err(|e| Failure::new(e, false))?;
        let body = match target.kind {
            NotifyKind::Webhook => payload.to_string(),
            NotifyKind::Slack => payload::slack(event, payload).to_string(),
        };
        let mut req = hyper::Request::post(url.as_str())
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("pink-sombrero/", env!("CARGO_PKG_VERSION")),
            )
            .header(payload::IDEMPOTENCY_HEADER, id)
            .header(payload::EVENT_HEADER, event.as_str());
        if let Some(secret) = target
            .resolve_secret()
            .map_err(|e| Failure::new(e, false))?
        {
            let now = chrono::Utc::now().timestamp();
            req = req
                .header(payload::TIMESTAMP_HEADER, now.to_string())
                .header(
                    payload::SIGNATURE_HEADER,
                    payload::sign(&secret, now, body.as_bytes()),
                );
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Failure::new(format!("cannot build the request: {e}"), false))?;
        let sent = tokio::time::timeout(DELIVERY_TIMEOUT, self.http.request(req)).await;
        let response = match sent {
            Err(_) => {
                return Err(Failure::new(
                    format!("no answer within {}s", DELIVERY_TIMEOUT.as_secs()),
                    true,
                ));
            }
            // hyper's errors name the failure (connect refused, reset), never the URL.
            Ok(Err(e)) => return Err(Failure::new(crate::text::error_chain(&e), true)),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        // The body is not read: nothing in it matters, and a peer could make it endless.
        drop(response);
        if status.is_success() {
            return Ok(status.as_u16());
        }
        let retry = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
        Err(Failure::new(format!("HTTP {}", status.as_u16()), retry))
    }
}
