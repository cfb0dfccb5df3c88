//! EC2 DescribeInstances through the Query API, by hand: the one EC2 call the fleet needs (an
//! instance's launch time, the base of its age, and its state: a tainted instance Systems
//! Manager does not list may be stopped or terminated), without aws-sdk-ec2 (minutes of build
//! time).
//!
//! A form-encoded `POST Action=DescribeInstances&Version=2016-11-15&InstanceId.N=…` to the EC2
//! endpoint (`AWS_ENDPOINT_URL_EC2`, a profile's `ec2` `endpoint_url`, `AWS_ENDPOINT_URL`, else
//! `https://ec2.{region}.amazonaws.com`), SigV4-signed with the SDK config's credentials and
//! sent through the SDK's own HTTP connector. The XML reply is read with the SDK's XML decoder;
//! an EC2 error reply (`<Response><Errors><Error><Code>…<Message>…`) becomes
//! [`FleetError::Api`] with its code.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::{HttpConnector, SharedHttpConnector};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use aws_smithy_xml::decode::{Document, ScopedDecoder, try_data};
use aws_types::SdkConfig;
use aws_types::service_config::ServiceConfigKey;
use chrono::{DateTime, Utc};

use super::FleetError;

/// The operation name errors carry.
const OP: &str = "DescribeInstances";
/// The Query API version EC2 documents DescribeInstances under.
const API_VERSION: &str = "2016-11-15";
/// Instance ids per call: keeps the form small; EC2 does not paginate a call that names ids.
const IDS_PER_CALL: usize = 200;
/// Longest a call (connect, send, read the reply) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The error code for ids EC2 does not know.
const NOT_FOUND: &str = "InvalidInstanceID.NotFound";
/// Most of an unreadable error body quoted back.
const QUOTED_BODY_CHARS: usize = 200;

/// One instance as DescribeInstances reports it (only what the fleet needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ec2Instance {
    /// The instance id.
    pub id: String,
    /// When it launched (absent if the reply lacks a readable `launchTime`).
    pub launched: Option<DateTime<Utc>>,
    /// Its state name (`pending`, `running`, `stopping`, `stopped`, `shutting-down`,
    /// `terminated`), if the reply has one.
    pub state: Option<String>,
}

impl Ec2Instance {
    /// Whether the instance is gone or going for good (`shutting-down`, `terminated`).
    pub fn terminated(&self) -> bool {
        matches!(self.state.as_deref(), Some("shutting-down" | "terminated"))
    }
}

/// An EC2 Query API client for DescribeInstances.
#[derive(Clone)]
pub struct Ec2Query {
    endpoint: Endpoint,
    region: String,
    credentials: Option<SharedCredentialsProvider>,
    /// Built on first use: loading the TLS roots is wasted on a fleet with no `i-` instance.
    connector: Arc<OnceLock<SharedHttpConnector>>,
}

impl std::fmt::Debug for Ec2Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ec2Query")
            .field("endpoint", &self.endpoint.url)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Where the calls go: the URL as configured, and its parts for the request and the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    /// `scheme://authority/path`, without a trailing slash on the path.
    url: String,
    /// `host[:port]`, the signed Host header.
    authority: String,
}

impl Endpoint {
    /// Parses an `http://` or `https://` URL; a query or fragment is refused.
    fn parse(url: &str) -> Result<Self, FleetError> {
        let bad = |why: &str| FleetError::Api {
            op: OP,
            code: None,
            message: format!(
                "the EC2 endpoint {url:?} {why}; set AWS_ENDPOINT_URL_EC2 to a URL like https://ec2.us-east-1.amazonaws.com"
            ),
        };
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| bad("is not an http(s) URL"))?;
        if rest.contains(['?', '#']) {
            return Err(bad("has a query or fragment"));
        }
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("has no host"));
        }
        Ok(Endpoint {
            url: url.trim_end_matches('/').to_owned(),
            authority: authority.to_owned(),
        })
    }

    /// EC2's public endpoint for a region (China regions live under `amazonaws.com.cn`).
    fn default_for(region: &str) -> String {
        let suffix = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!("https://ec2.{region}.{suffix}")
    }
}

impl Ec2Query {
    /// A client for the config's region, credentials and EC2 endpoint (resolved as the SDK
    /// clients resolve theirs).
    pub fn from_config(sdk: &SdkConfig) -> Result<Self, FleetError> {
        let region = sdk.region().ok_or(FleetError::NoRegion)?.to_string();
        let configured = sdk
            .service_config()
            .and_then(|c| {
                let key = ServiceConfigKey::builder()
                    .service_id("EC2")
                    .env("AWS_ENDPOINT_URL")
                    .profile("endpoint_url")
                    .build()
                    .ok()?;
                c.load_config(key)
            })
            .or_else(|| sdk.endpoint_url().map(str::to_owned));
        let url = configured.unwrap_or_else(|| Endpoint::default_for(&region));
        Ok(Ec2Query {
            endpoint: Endpoint::parse(&url)?,
            region,
            credentials: sdk.credentials_provider(),
            connector: Arc::default(),
        })
    }

    /// The endpoint calls go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint.url
    }

    /// One DescribeInstances for `ids` (all of its pages). An id EC2 does not know fails the
    /// whole call, with code `InvalidInstanceID.NotFound`, as EC2 answers.
    pub async fn describe(&self, ids: &[&str]) -> Result<Vec<Ec2Instance>, FleetError> {
        let mut form = format!("Action={OP}&Version={API_VERSION}");
        for (n, id) in ids.iter().enumerate() {
            form.push_str(&format!("&InstanceId.{}={}", n + 1, form_encode(id)));
        }
        let mut instances = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let body = match &token {
                Some(t) => format!("{form}&NextToken={}", form_encode(t)),
                None => form.clone(),
            };
            let page = parse_reply(&self.call(body).await?)?;
            instances.extend(page.instances);
            token = page.next_token.filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok(instances);
            }
        }
    }

    /// Launch times by instance id, in batches; see [`Self::describe_known`].
    pub async fn launch_times(
        &self,
        ids: &[&str],
    ) -> Result<HashMap<String, DateTime<Utc>>, FleetError> {
        Ok(self
            .describe_known(ids)
            .await?
            .into_iter()
            .filter_map(|i| Some((i.id, i.launched?)))
            .collect())
    }

    /// DescribeInstances in batches. Ids EC2 does not know (an instance Systems Manager
    /// still lists after EC2 forgot it) are left out; any other error fails the lookup.
    pub async fn describe_known(&self, ids: &[&str]) -> Result<Vec<Ec2Instance>, FleetError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(IDS_PER_CALL) {
            let mut asked: Vec<&str> = chunk.to_vec();
            while !asked.is_empty() {
                match self.describe(&asked).await {
                    Ok(found) => {
                        out.extend(found);
                        break;
                    }
                    Err(e) if e.aws_code() == Some(NOT_FOUND) => {
                        let unknown = unknown_ids(&e, &asked);
                        // An answer naming none of ours would loop forever: give up with it.
                        if unknown.is_empty() {
                            return Err(e);
                        }
                        tracing::debug!(?unknown, "EC2 does not know these instances");
                        asked.retain(|id| !unknown.contains(id));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    /// Signs and sends one form; returns the reply body of a 2xx answer, else the EC2 error.
    async fn call(&self, form: String) -> Result<String, FleetError> {
        let transport = |what: String| FleetError::Api {
            op: OP,
            code: None,
            message: what,
        };
        let mut request = HttpRequest::new(SdkBody::from(form.clone()));
        request
            .set_method("POST")
            .map_err(|e| transport(e.to_string()))?;
        request
            .set_uri(format!("{}/", self.endpoint.url))
            .map_err(|e| transport(e.to_string()))?;
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let mut headers = vec![
            ("host".to_owned(), self.endpoint.authority.clone()),
            ("content-type".to_owned(), content_type.to_owned()),
        ];
        headers.extend(self.sign(&form, &headers).await?);
        for (name, value) in headers {
            request
                .headers_mut()
                .try_insert(name, value)
                .map_err(|e| transport(e.to_string()))?;
        }
        let send = async {
            let response = self.connector().call(request).await.map_err(|e| {
                transport(format!("cannot reach {}: {}", self.endpoint.url, chain(&e)))
            })?;
            let status = response.status().as_u16();
            let bytes = ByteStream::new(response.into_body())
                .collect()
                .await
                .map_err(|e| transport(format!("reading the reply: {e}")))?
                .into_bytes();
            Ok::<_, FleetError>((status, String::from_utf8_lossy(&bytes).into_owned()))
        };
        let (status, body) = tokio::time::timeout(CALL_TIMEOUT, send)
            .await
            .map_err(|_| {
                transport(format!(
                    "no answer from {} within {}s",
                    self.endpoint.url,
                    CALL_TIMEOUT.as_secs()
                ))
            })??;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(error_reply(status, &body))
        }
    }

    /// The SigV4 headers (service `ec2`) for a POST of `form` with `headers`.
    async fn sign(
        &self,
        form: &str,
        headers: &[(String, String)],
    ) -> Result<Vec<(String, String)>, FleetError> {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        use aws_sigv4::sign::v4;

        let fail = |why: String| FleetError::Api {
            op: OP,
            code: None,
            message: format!("cannot sign the request: {why}; check the AWS credentials"),
        };
        let provider = self
            .credentials
            .as_ref()
            .ok_or_else(|| fail("no credentials are configured".to_owned()))?;
        let identity = provider
            .provide_credentials()
            .await
            .map_err(|e| fail(chain(&e)))?
            .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("ec2")
            .time(std::time::SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| fail(e.to_string()))?
            .into();
        let url = format!("{}/", self.endpoint.url);
        let signable = SignableRequest::new(
            "POST",
            &url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(form.as_bytes()),
        )
        .map_err(|e| fail(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| fail(e.to_string()))?
            .into_parts();
        let (signed, _) = instructions.into_parts();
        Ok(signed
            .into_iter()
            .map(|h| (h.name().to_owned(), h.value().to_owned()))
            .collect())
    }

    fn connector(&self) -> &SharedHttpConnector {
        self.connector.get_or_init(|| {
            SharedHttpConnector::new(
                aws_smithy_http_client::Connector::builder()
                    .tls_provider(tls::Provider::Rustls(
                        tls::rustls_provider::CryptoMode::AwsLc,
                    ))
                    .build(),
            )
        })
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut m = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        m.push_str(": ");
        m.push_str(&s.to_string());
        source = s.source();
    }
    m
}

/// Percent-encodes a form value (everything but RFC 3986's unreserved characters).
fn form_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The ids of `asked` that an `InvalidInstanceID.NotFound` message names (`The instance ID
/// 'i-1' does not exist`, `The instance IDs 'i-1, i-2' do not exist`).
fn unknown_ids<'a>(e: &FleetError, asked: &[&'a str]) -> Vec<&'a str> {
    let FleetError::Api { message, .. } = e else {
        return Vec::new();
    };
    let named: Vec<&str> = message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .collect();
    asked
        .iter()
        .copied()
        .filter(|id| named.contains(id))
        .collect()
}

/// One page of a DescribeInstances reply.
#[derive(Debug, Default, PartialEq, Eq)]
struct Page {
    instances: Vec<Ec2Instance>,
    next_token: Option<String>,
}

fn xml_error(e: impl std::fmt::Display) -> FleetError {
    FleetError::Api {
        op: OP,
        code: None,
        message: format!("unreadable reply: {e}"),
    }
}

/// Reads `DescribeInstancesResponse/reservationSet/item/instancesSet/item/{instanceId,launchTime,
/// instanceState/name}`
/// and `nextToken`; everything else is skipped.
fn parse_reply(xml: &str) -> Result<Page, FleetError> {
    let mut doc = Document::new(xml);
    let mut root = doc.root_element().map_err(xml_error)?;
    if !root.start_el().matches("DescribeInstancesResponse") {
        return Err(xml_error(format!(
            "expected DescribeInstancesResponse, found <{}>",
            root.start_el().local()
        )));
    }
    let mut page = Page::default();
    while let Some(mut tag) = root.next_tag() {
        if tag.start_el().matches("nextToken") {
            page.next_token = Some(try_data(&mut tag).map_err(xml_error)?.into_owned());
        } else if tag.start_el().matches("reservationSet") {
            for_each_item(&mut tag, |reservation| {
                while let Some(mut set) = reservation.next_tag() {
                    if set.start_el().matches("instancesSet") {
                        for_each_item(&mut set, |item| {
                            page.instances.extend(instance(item)?);
                            Ok(())
                        })?;
                    }
                }
                Ok(())
            })?;
        }
    }
    Ok(page)
}

/// Runs `f` on each `<item>` child of a set.
fn for_each_item(
    set: &mut ScopedDecoder,
    mut f: impl FnMut(&mut ScopedDecoder) -> Result<(), FleetError>,
) -> Result<(), FleetError> {
    while let Some(mut item) = set.next_tag() {
        if item.start_el().matches("item") {
            f(&mut item)?;
        }
    }
    Ok(())
}

/// One `instancesSet/item`; an item without an id is skipped.
fn instance(item: &mut ScopedDecoder) -> Result<Option<Ec2Instance>, FleetError> {
    let (mut id, mut launched, mut state) = (None, None, None);
    while let Some(mut field) = item.next_tag() {
        if field.start_el().matches("instanceState") {
            while let Some(mut part) = field.next_tag() {
                if part.start_el().matches("name") {
                    state = Some(try_data(&mut part).map_err(xml_error)?.trim().to_owned());
                }
            }
        } else if field.start_el().matches("instanceId") {
            id = Some(try_data(&mut field).map_err(xml_error)?.into_owned());
        } else if field.start_el().matches("launchTime") {
            let text = try_data(&mut field).map_err(xml_error)?;
            launched = DateTime::parse_from_rfc3339(text.trim())
                .ok()
                .map(|t| t.with_timezone(&Utc));
        }
    }
    Ok(id.filter(|i| !i.is_empty()).map(|id| Ec2Instance {
        id,
        launched,
        state,
    }))
}

/// The EC2 error in a non-2xx reply, or the status and the start of the body.
fn error_reply(status: u16, body: &str) -> FleetError {
    let parsed = (|| {
        let mut doc = Document::new(body);
        let mut root = doc.root_element().ok()?;
        while let Some(mut errors) = root.next_tag() {
            if !errors.start_el().matches("Errors") {
                continue;
            }
            while let Some(mut error) = errors.next_tag() {
                if !error.start_el().matches("Error") {
                    continue;
                }
                let (mut code, mut message) = (None, None);
                while let Some(mut field) = error.next_tag() {
                    if field.start_el().matches("Code") {
                        code = try_data(&mut field).ok().map(|c| c.into_owned());
                    } else if field.start_el().matches("Message") {
                        message = try_data(&mut field).ok().map(|m| m.into_owned());
                    }
                }
                return Some((code?, message));
            }
        }
        None
    })();
    match parsed {
        Some((code, message)) => FleetError::Api {
            op: OP,
            message: match message {
                Some(m) => format!("{code}: {m}"),
                None => code.clone(),
            },
            code: Some(code),
        },
        None => FleetError::Api {
            op: OP,
            code: None,
            message: format!(
                "HTTP {status}: {}",
                body.chars()
                    .take(QUOTED_BODY_CHARS)
                    .collect::<String>()
                    .trim()
            ),
        },
    }
}

#[cfg(test)]
#[path = "ec2_query_tests.rs"]
mod tests;
