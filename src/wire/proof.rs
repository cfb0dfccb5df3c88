//! The AWS IAM identity proof for clients over TCP (the pattern of Vault's IAM auth and
//! aws-iam-authenticator).
//!
//! The client SigV4-signs, with its own AWS credentials, an `sts:GetCallerIdentity` request it
//! never sends, and gives it to the broker as a [`Proof`]. Two signed headers bind it:
//! [`SERVER_ID_HEADER`] names the broker it is meant for, and [`BINDING_HEADER`] carries a value
//! exported from the TLS session it is sent on ([`channel_binding`], RFC 5705 keying material,
//! as RFC 9266 does for SCRAM), which the broker computes from its own side of the connection.
//! So a proof is useless to anyone who sees it: another broker refuses the server id, and this
//! broker refuses it on any other connection. The broker checks the proof's shape strictly and
//! cheaply (`serve::sts::Verifier::check`) before any STS call, forwards exactly that request to its own
//! configured STS endpoint, and takes the ARN from STS's answer: whoever could sign it holds
//! those credentials. A client-supplied ARN is never read.

use std::time::Duration;

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::Mutex;
use url::Url;

/// The signed header that binds a proof to one broker.
pub const SERVER_ID_HEADER: &str = "x-pink-sombrero-server-id";
/// The signed header that binds a proof to one TLS connection: [`channel_binding`] in hex.
pub const BINDING_HEADER: &str = "x-pink-sombrero-channel-binding";
/// The RFC 5705 exporter label both ends derive the channel binding with.
pub const BINDING_LABEL: &[u8] = b"EXPORTER-pink-sombrero-sts-proof";
/// Bytes of keying material in a channel binding.
const BINDING_BYTES: usize = 32;
/// The `Authorization` scheme that carries a proof.
pub const AUTH_SCHEME: &str = "SombreroSTS";
/// The only request body a proof may carry.
pub const BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
/// The body's content type (as the AWS SDKs send it).
pub const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// How long after signing a proof is accepted (STS itself allows 15 minutes).
pub const MAX_AGE: Duration = Duration::from_secs(5 * 60);
/// How far in the future a proof's date may be (clock skew between client and broker).
pub const MAX_SKEW: Duration = Duration::from_secs(2 * 60);
/// Largest accepted `Authorization` value.
const MAX_PROOF_BYTES: usize = 16 * 1024;
/// The longest attacker-supplied value a refusal message (and so the log) repeats.
pub const MAX_ECHO_CHARS: usize = 200;

/// The channel binding of one TLS connection (either end): 32 bytes of RFC 5705 keying
/// material under [`BINDING_LABEL`], hex. Both ends of one connection compute the same value;
/// no other connection has it.
pub fn channel_binding<D>(conn: &rustls::ConnectionCommon<D>) -> Result<String, StsError> {
    conn.export_keying_material([0u8; BINDING_BYTES], BINDING_LABEL, None)
        .map(hex::encode)
        .map_err(|e| StsError::Sign(format!("cannot export TLS keying material: {e}")))
}

/// `value` as a refusal message may repeat it: escaped (`{:?}`) and cut to [`MAX_ECHO_CHARS`].
pub fn echo(value: &str) -> String {
    let escaped = format!("{value:?}");
    if escaped.chars().count() <= MAX_ECHO_CHARS {
        return escaped;
    }
    let cut: String = escaped.chars().take(MAX_ECHO_CHARS).collect();
    format!("{cut}... ({} bytes)", value.len())
}

/// Why a proof could not be made or was not accepted.
#[derive(Debug, Error)]
pub enum StsError {
    /// No proof was presented.
    #[error(
        "this broker needs an AWS identity proof (Authorization: {AUTH_SCHEME} ...): connect with `sombrero --broker https://...`"
    )]
    Missing,
    /// The proof is not one this broker accepts (shape, host, server id, date).
    #[error("identity proof refused: {0}")]
    Rejected(String),
    /// STS answered and refused the signature (bad or expired credentials).
    #[error("STS refused the identity proof: {0}")]
    Refused(String),
    /// This source address asked for too many proof checks.
    #[error("too many identity proofs from {0}: wait a few seconds and reconnect")]
    Limited(String),
    /// STS could not be reached or failed.
    #[error("STS at {endpoint} is unavailable: {message}")]
    Unavailable {
        /// The configured STS endpoint.
        endpoint: String,
        /// What happened.
        message: String,
    },
    /// The client could not sign (no credentials or region).
    #[error("cannot make an AWS identity proof: {0}")]
    Sign(String),
    /// An STS endpoint URL is unusable.
    #[error("bad STS endpoint {0}")]
    Endpoint(String),
}

impl StsError {
    /// The HTTP status the broker answers with: 503 when STS is unavailable, 429 when the
    /// source is over its rate, else 401.
    pub fn status(&self) -> u16 {
        match self {
            StsError::Unavailable { .. } => 503,
            StsError::Limited(_) => 429,
            _ => 401,
        }
    }
}

/// A signed, unsent `sts:GetCallerIdentity` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    /// Always `POST`.
    pub method: String,
    /// The STS endpoint it was signed for.
    pub url: String,
    /// Every header, lower-case names, as signed.
    pub headers: Vec<(String, String)>,
    /// Always [`BODY`].
    pub body: String,
}

impl Proof {
    /// The `Authorization` header value: the scheme and the base64 of the proof's JSON.
    pub fn to_header(&self) -> String {
        // Serialising strings and a vector of pairs cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{AUTH_SCHEME} {}", B64.encode(json))
    }

    /// Parses an `Authorization` header value made by [`Proof::to_header`].
    pub fn from_header(value: &str) -> Result<Self, StsError> {
        if value.len() > MAX_PROOF_BYTES {
            return Err(StsError::Rejected("the proof is too large".into()));
        }
        let encoded = value
            .strip_prefix(AUTH_SCHEME)
            .and_then(|rest| rest.strip_prefix(' '))
            .ok_or(StsError::Missing)?;
        let json = B64
            .decode(encoded.trim())
            .map_err(|_| StsError::Rejected("not base64".into()))?;
        serde_json::from_slice(&json)
            .map_err(|e| StsError::Rejected(echo(&format!("not a proof: {e}"))))
    }

    /// The value of one header (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// When the proof was signed (its `x-amz-date`).
    pub(crate) fn signed_at(&self) -> Result<DateTime<Utc>, StsError> {
        let date = self
            .header("x-amz-date")
            .ok_or_else(|| StsError::Rejected("no x-amz-date header".into()))?;
        NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ")
            .map(|d| d.and_utc())
            .map_err(|_| {
                StsError::Rejected(format!("x-amz-date {} is not a SigV4 date", echo(date)))
            })
    }
}

/// An STS endpoint, normalised so client and broker spell it the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsEndpoint {
    url: Url,
    host: String,
}

impl StsEndpoint {
    /// Parses an endpoint URL (`https://sts.eu-west-1.amazonaws.com`, or an emulator's).
    pub fn parse(endpoint: &str) -> Result<Self, StsError> {
        let url =
            Url::parse(endpoint).map_err(|e| StsError::Endpoint(format!("{endpoint:?}: {e}")))?;
        let bad = |why: &str| StsError::Endpoint(format!("{endpoint:?}: {why}"));
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            None => false,
        };
        match url.scheme() {
            "https" => {}
            // Proofs are bearer credentials for five minutes: only a local emulator (tests,
            // moto) may see them in the clear.
            "http" if loopback => {}
            "http" => {
                return Err(bad(
                    "http is allowed only for a loopback emulator (127.0.0.1, ::1, localhost); use https",
                ));
            }
            _ => return Err(bad("only https is supported")),
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(bad("give only scheme, host, port and path"));
        }
        let Some(host) = url.host_str() else {
            return Err(bad("no host"));
        };
        let host = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        // http(s) URLs always have a path, at least "/": no trailing-slash ambiguity.
        Ok(StsEndpoint { url, host })
    }

    /// The regional endpoint, `https://sts.REGION.amazonaws.com/`.
    pub fn regional(region: &str) -> Result<Self, StsError> {
        Self::parse(&format!("https://sts.{region}.amazonaws.com/"))
    }

    /// The client's choice: `AWS_ENDPOINT_URL_STS`, then `AWS_ENDPOINT_URL` (the SDKs' own
    /// overrides), else the regional endpoint.
    pub fn from_env(region: &str) -> Result<Self, StsError> {
        ["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"]
            .iter()
            .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
            .map_or_else(|| Self::regional(region), |url| Self::parse(&url))
    }

    /// The URL as proofs carry it.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// The `Host` header value (port only when not the scheme's default).
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// The client side: signs proofs with the client's own credentials.
#[derive(Debug, Clone)]
pub struct ProofSigner {
    credentials: SharedCredentialsProvider,
    region: String,
    endpoint: StsEndpoint,
}

impl ProofSigner {
    /// A signer for `endpoint`, signing in `region` with `credentials`.
    pub fn new(
        credentials: SharedCredentialsProvider,
        region: &str,
        endpoint: StsEndpoint,
    ) -> Self {
        ProofSigner {
            credentials,
            region: region.to_string(),
            endpoint,
        }
    }

    /// A signer from an SDK config: its credentials and region, the endpoint from
    /// [`StsEndpoint::from_env`].
    pub fn from_sdk(sdk: &aws_config::SdkConfig) -> Result<Self, StsError> {
        let credentials = sdk.credentials_provider().ok_or_else(|| {
            StsError::Sign("no AWS credentials found (set a profile or AWS_* variables)".into())
        })?;
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| StsError::Sign("no AWS region: set --region or AWS_REGION".into()))?;
        let endpoint = StsEndpoint::from_env(&region)?;
        Ok(Self::new(credentials, &region, endpoint))
    }

    /// Signs a fresh proof meant for the broker known as `server_id`, on the TLS connection
    /// whose [`channel_binding`] is `binding`.
    pub async fn sign(&self, server_id: &str, binding: &str) -> Result<Proof, StsError> {
        self.sign_at(server_id, binding, std::time::SystemTime::now())
            .await
    }

    /// Signs a proof dated `time` (a fresh one is [`ProofSigner::sign`]).
    pub async fn sign_at(
        &self,
        server_id: &str,
        binding: &str,
        time: std::time::SystemTime,
    ) -> Result<Proof, StsError> {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        use aws_sigv4::sign::v4;

        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| StsError::Sign(format!("no AWS credentials: {e}")))?;
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("sts")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| StsError::Sign(e.to_string()))?
            .into();
        let mut headers = vec![
            ("host".to_string(), self.endpoint.host().to_string()),
            ("content-type".to_string(), CONTENT_TYPE.to_string()),
            (SERVER_ID_HEADER.to_string(), server_id.to_string()),
            (BINDING_HEADER.to_string(), binding.to_string()),
        ];
        let signable = SignableRequest::new(
            "POST",
            self.endpoint.as_str(),
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            SignableBody::Bytes(BODY.as_bytes()),
        )
        .map_err(|e| StsError::Sign(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| StsError::Sign(e.to_string()))?
            .into_parts();
        let (signed, _) = instructions.into_parts();
        headers.extend(
            signed
                .iter()
                .map(|h| (h.name().to_ascii_lowercase(), h.value().to_string())),
        );
        Ok(Proof {
            method: "POST".into(),
            url: self.endpoint.as_str().to_string(),
            headers,
            body: BODY.into(),
        })
    }
}

/// The client's proofs for one broker: one per connection (its channel binding), signed
/// afresh once the last is [`REFRESH`] old, so every request presents one well within
/// [`MAX_AGE`].
#[derive(Debug)]
pub struct ClientProofs {
    signer: ProofSigner,
    server_id: String,
    /// Per channel binding (connection): when its proof was signed, and its header. Reused
    /// so the broker verifies one proof per connection, not one per request.
    current: Mutex<std::collections::HashMap<String, (std::time::Instant, String)>>,
}

/// How long a client reuses a proof before signing a new one.
pub const REFRESH: Duration = Duration::from_secs(60);

impl ClientProofs {
    /// Proofs for the broker known as `server_id` (the host name the client dials).
    pub fn new(signer: ProofSigner, server_id: &str) -> Self {
        ClientProofs {
            signer,
            server_id: server_id.to_string(),
            current: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The `Authorization` header value to send on the connection whose channel binding is
    /// `binding`.
    pub async fn header(&self, binding: &str) -> Result<String, StsError> {
        let mut current = self.current.lock().await;
        if let Some((at, header)) = current.get(binding)
            && at.elapsed() < REFRESH
        {
            return Ok(header.clone());
        }
        let header = self
            .signer
            .sign(&self.server_id, binding)
            .await?
            .to_header();
        // Proofs of connections long gone are forgotten (a client keeps a few open).
        current.retain(|_, (at, _)| at.elapsed() < REFRESH);
        current.insert(
            binding.to_string(),
            (std::time::Instant::now(), header.clone()),
        );
        Ok(header)
    }
}
