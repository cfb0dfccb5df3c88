//! The broker's side of the AWS IAM identity proof ([`crate::wire::proof`] has the protocol
//! and the client's side): [`Verifier::check`] checks a proof's shape strictly and cheaply
//! before any STS call, then forwards exactly that request to the broker's own configured STS
//! endpoint and takes the ARN from STS's answer. A client-supplied ARN is never read.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Mutex, Semaphore};

use super::tls::ServerTls;
use crate::wire::proof::{
    BINDING_HEADER, BODY, CONTENT_TYPE, MAX_AGE, MAX_ECHO_CHARS, MAX_SKEW, Proof, SERVER_ID_HEADER,
    StsEndpoint, StsError, echo,
};
use crate::wire::tls::client_config;

/// How long the broker waits for STS.
const STS_TIMEOUT: Duration = Duration::from_secs(10);
/// The most proofs the broker has STS verify at once (all connections together), so clients
/// cannot make it flood STS; more wait their turn (at most [`STS_TIMEOUT`]).
pub const MAX_CONCURRENT_VERIFICATIONS: usize = 8;
/// Largest accepted STS reply.
const MAX_REPLY_BYTES: usize = 64 * 1024;
/// The headers a proof may carry; anything else is refused rather than forwarded.
const ALLOWED_HEADERS: [&str; 7] = [
    "host",
    "content-type",
    "x-amz-date",
    "x-amz-security-token",
    "authorization",
    SERVER_ID_HEADER,
    BINDING_HEADER,
];
/// The headers that must be covered by the signature.
const SIGNED_HEADERS: [&str; 4] = ["host", "x-amz-date", SERVER_ID_HEADER, BINDING_HEADER];

/// Which server ids this broker answers to.
#[derive(Debug, Clone)]
pub enum ServerId {
    /// Exactly this one (`--server-id`).
    Named(String),
    /// Any DNS name or IP address the broker's TLS certificate is valid for: the names a client
    /// can reach it by. Only for a certificate without wildcard names ([`ServerId::for_tls`]).
    Certified(ServerTls),
}

impl ServerId {
    /// The server id of a broker with `tls`: exactly `named` when given; else the
    /// certificate's names, refused when one is a wildcard (a proof made for any host it covers,
    /// someone else's, would be accepted).
    pub fn for_tls(named: Option<&str>, tls: &ServerTls) -> Result<ServerId, StsError> {
        match named {
            Some(name) if name.is_empty() || name.contains('*') => Err(StsError::Endpoint(
                "--server-id must be one exact host name, no wildcard".into(),
            )),
            Some(name) => Ok(ServerId::Named(name.to_string())),
            None if tls.has_wildcard_name() => Err(StsError::Endpoint(
                "the TLS certificate has a wildcard name, so identity proofs made for other hosts it covers would be accepted here: give --server-id with the exact host name clients dial".into(),
            )),
            None => Ok(ServerId::Certified(tls.clone())),
        }
    }
}

impl ServerId {
    fn accepts(&self, id: &str) -> bool {
        match self {
            ServerId::Named(name) => name == id,
            ServerId::Certified(tls) => tls.certifies(id),
        }
    }
}

/// The identity STS returned for a proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    /// The caller's ARN, as STS reports it.
    pub arn: String,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The broker side: checks proofs and asks STS whose they are.
#[derive(Debug, Clone)]
pub struct Verifier {
    endpoint: StsEndpoint,
    server_id: ServerId,
    http: HttpsClient,
    in_flight: Arc<Semaphore>,
}

impl Verifier {
    /// A verifier forwarding to `endpoint`, accepting proofs bound to `server_id`.
    pub fn new(endpoint: StsEndpoint, server_id: ServerId) -> Result<Self, StsError> {
        let tls = client_config(None).map_err(|e| StsError::Sign(e.to_string()))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Verifier {
            endpoint,
            server_id,
            http,
            in_flight: Arc::new(Semaphore::new(MAX_CONCURRENT_VERIFICATIONS)),
        })
    }

    /// The STS endpoint proofs must be signed for.
    pub fn endpoint(&self) -> &StsEndpoint {
        &self.endpoint
    }

    /// Checks a proof's shape without asking STS: only `POST` of exactly [`BODY`] to the
    /// configured endpoint, only known headers, each once, `host`, the date, the server id and
    /// the channel binding signed, the server id one this broker answers to, the binding that
    /// of this connection (`binding`), the date within [`MAX_AGE`].
    pub fn check(&self, proof: &Proof, binding: &str, now: DateTime<Utc>) -> Result<(), StsError> {
        let reject = |why: String| Err(StsError::Rejected(why));
        if proof.method != "POST" {
            return reject(format!(
                "method {}: only POST is accepted",
                echo(&proof.method)
            ));
        }
        if proof.url != self.endpoint.as_str() {
            return reject(format!(
                "signed for {}, but this broker verifies with STS at {}: sign for that endpoint (AWS_ENDPOINT_URL_STS, or --region for a regional one)",
                echo(&proof.url),
                self.endpoint.as_str()
            ));
        }
        if proof.body != BODY {
            return reject("the body is not exactly a GetCallerIdentity call".into());
        }
        for (i, (name, _)) in proof.headers.iter().enumerate() {
            if !ALLOWED_HEADERS.iter().any(|a| a.eq_ignore_ascii_case(name)) {
                return reject(format!("header {} is not allowed in a proof", echo(name)));
            }
            if proof.headers[..i]
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                return reject(format!("header {} appears twice", echo(name)));
            }
        }
        if proof.header("host") != Some(self.endpoint.host()) {
            return reject(format!("the host header is not {}", self.endpoint.host()));
        }
        if proof.header("content-type") != Some(CONTENT_TYPE) {
            return reject("the content type is not the form encoding".into());
        }
        let Some(server_id) = proof.header(SERVER_ID_HEADER) else {
            return reject(format!("no {SERVER_ID_HEADER} header"));
        };
        if !self.server_id.accepts(server_id) {
            return reject(format!(
                "it was made for the broker {}, not this one",
                echo(server_id)
            ));
        }
        // Constant time is moot (the value is no secret to either end), equality is not.
        if proof.header(BINDING_HEADER) != Some(binding) {
            return reject(format!(
                "it is bound to another TLS connection ({BINDING_HEADER}): a proof is good only on the connection it was made for"
            ));
        }
        check_authorization(proof)?;
        let signed_at = proof.signed_at()?;
        let age = now.signed_duration_since(signed_at);
        if age > delta(MAX_AGE) {
            return reject(format!(
                "it was signed at {signed_at}, more than {}s ago: sign a fresh one",
                MAX_AGE.as_secs()
            ));
        }
        if -age > delta(MAX_SKEW) {
            return reject(format!(
                "it is dated {signed_at}, in the future: check the client's clock"
            ));
        }
        Ok(())
    }

    /// Checks the proof for the connection bound as `binding`, forwards it to STS and returns
    /// the identity STS reports.
    pub async fn verify(&self, proof: &Proof, binding: &str) -> Result<CallerIdentity, StsError> {
        self.check(proof, binding, Utc::now())?;
        let mut request = hyper::Request::post(self.endpoint.as_str());
        for (name, value) in &proof.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .body(Full::new(Bytes::from_static(BODY.as_bytes())))
            .map_err(|e| StsError::Rejected(format!("unusable header: {e}")))?;
        let unavailable = |message: String| StsError::Unavailable {
            endpoint: self.endpoint.as_str().to_string(),
            message,
        };
        let _permit = tokio::time::timeout(STS_TIMEOUT, self.in_flight.acquire())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                unavailable("the broker is busy verifying other identity proofs; try again".into())
            })?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| unavailable(error_chain(&e)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_REPLY_BYTES)
                .collect()
                .await
                .map_err(|e| unavailable(format!("reading the reply: {e}")))?
                .to_bytes();
            Ok::<_, StsError>((status, body))
        };
        let (status, body) = tokio::time::timeout(STS_TIMEOUT, exchange)
            .await
            .map_err(|_| unavailable(format!("no answer within {}s", STS_TIMEOUT.as_secs())))??;
        let text = String::from_utf8_lossy(&body);
        if status.is_success() {
            let arn = caller_arn(&text)
                .ok_or_else(|| unavailable("the reply carries no caller ARN".into()))?;
            return Ok(CallerIdentity { arn });
        }
        // STS may quote what the client sent: bounded and without control characters.
        let message: String = sts_error_message(&text)
            .unwrap_or_else(|| format!("HTTP {status}: {text}"))
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_ECHO_CHARS)
            .collect();
        if status.is_server_error() || status.as_u16() == 429 {
            Err(unavailable(message))
        } else {
            Err(StsError::Refused(message))
        }
    }
}

/// The `Authorization` header must be a SigV4 signature for the `sts` service dated the same
/// day as `x-amz-date`, covering [`SIGNED_HEADERS`].
fn check_authorization(proof: &Proof) -> Result<(), StsError> {
    let reject = |why: &str| Err(StsError::Rejected(why.to_string()));
    let Some(auth) = proof.header("authorization") else {
        return reject("no authorization header: the request is not signed");
    };
    let Some(fields) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return reject("the signature is not AWS4-HMAC-SHA256");
    };
    let field = |key: &str| {
        fields
            .split(',')
            .map(str::trim)
            .find_map(|f| f.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    };
    let (Some(credential), Some(signed), Some(_)) = (
        field("Credential"),
        field("SignedHeaders"),
        field("Signature"),
    ) else {
        return reject("the signature lacks Credential, SignedHeaders or Signature");
    };
    // Credential=AKID/DATE/REGION/SERVICE/aws4_request
    let scope: Vec<&str> = credential.split('/').collect();
    let [_, day, _, service, "aws4_request"] = scope.as_slice() else {
        return reject("the credential scope is malformed");
    };
    if *service != "sts" {
        return reject("the signature is not for the sts service");
    }
    if !proof
        .header("x-amz-date")
        .is_some_and(|date| date.starts_with(day))
    {
        return reject("the credential scope's date is not the x-amz-date's");
    }
    let signed: Vec<&str> = signed.split(';').collect();
    if let Some(missing) = SIGNED_HEADERS.iter().find(|h| !signed.contains(h)) {
        return Err(StsError::Rejected(format!(
            "the signature does not cover the {missing} header"
        )));
    }
    Ok(())
}

/// The ARN in a `GetCallerIdentityResponse`.
fn caller_arn(xml: &str) -> Option<String> {
    let arn = xml_text(
        xml,
        &[
            "GetCallerIdentityResponse",
            "GetCallerIdentityResult",
            "Arn",
        ],
    )?;
    let plausible =
        arn.starts_with("arn:") && arn.len() <= 2048 && arn.bytes().all(|b| b.is_ascii_graphic());
    plausible.then_some(arn)
}

/// The message of an STS `ErrorResponse`, with its code (`ErrorResponse/Error` as STS sends
/// it, or `ErrorResponse/Errors/Error` as some emulators do).
fn sts_error_message(xml: &str) -> Option<String> {
    [
        &["ErrorResponse", "Error"][..],
        &["ErrorResponse", "Errors", "Error"],
    ]
    .iter()
    .find_map(|error| {
        let field = |leaf| xml_text(xml, &[error, &[leaf][..]].concat());
        let message = field("Message")?;
        Some(match field("Code") {
            Some(code) => format!("{code}: {message}"),
            None => message,
        })
    })
}

/// The text of the first element at `path` (root first).
fn xml_text(xml: &str, path: &[&str]) -> Option<String> {
    use aws_smithy_xml::decode::{Document, ScopedDecoder, try_data};

    fn descend(scope: &mut ScopedDecoder<'_, '_>, path: &[&str]) -> Option<String> {
        let (first, rest) = path.split_first()?;
        while let Some(mut child) = scope.next_tag() {
            if child.start_el().matches(first) {
                return if rest.is_empty() {
                    try_data(&mut child).ok().map(|s| s.trim().to_string())
                } else {
                    descend(&mut child, rest)
                };
            }
        }
        None
    }

    let (root_name, rest) = path.split_first()?;
    let mut doc = Document::new(xml);
    let mut root = doc.root_element().ok()?;
    if !root.start_el().matches(root_name) {
        return None;
    }
    descend(&mut root, rest)
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

pub(crate) use crate::text::error_chain;

/// One connection's verified identity: a proof is sent to STS once per connection and its
/// result reused for the same proof, only while the proof itself is valid ([`MAX_AGE`]).
#[derive(Debug)]
pub struct ConnectionIdentity {
    binding: String,
    verified: Mutex<Option<Verified>>,
}

#[derive(Debug)]
struct Verified {
    header: String,
    until: DateTime<Utc>,
    identity: CallerIdentity,
}

impl ConnectionIdentity {
    /// A connection whose [`crate::wire::proof::channel_binding`] is `binding`, nothing proven yet.
    pub fn new(binding: String) -> Self {
        ConnectionIdentity {
            binding,
            verified: Mutex::new(None),
        }
    }

    /// Whether `header` is the proof this connection already verified (and still fresh): no
    /// STS call, nothing to rate-limit.
    pub async fn is_cached(&self, header: Option<&str>) -> bool {
        let verified = self.verified.lock().await;
        verified
            .as_ref()
            .is_some_and(|v| Some(v.header.as_str()) == header && Utc::now() < v.until)
    }

    /// The identity proven by the `Authorization` header `header` (or `None` if absent).
    pub async fn resolve(
        &self,
        header: Option<&str>,
        verifier: &Verifier,
    ) -> Result<CallerIdentity, StsError> {
        let header = header.ok_or(StsError::Missing)?;
        let mut verified = self.verified.lock().await;
        if let Some(v) = verified
            .as_ref()
            .filter(|v| v.header == header && Utc::now() < v.until)
        {
            return Ok(v.identity.clone());
        }
        let proof = Proof::from_header(header)?;
        let identity = verifier.verify(&proof, &self.binding).await?;
        *verified = Some(Verified {
            header: header.to_string(),
            until: proof.signed_at()? + delta(MAX_AGE),
            identity: identity.clone(),
        });
        Ok(identity)
    }
}

#[cfg(test)]
#[path = "sts_tests.rs"]
mod tests;
