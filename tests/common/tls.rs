//! Shared by the broker-over-TCP tests: a throwaway PKI made with the openssl CLI at test time,
//! and moto (STS and IAM) for identity proofs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use pink_sombrero::wire::proof::{ProofSigner, StsEndpoint};

/// A test CA and a server certificate it signed, valid for `localhost` and `127.0.0.1`.
pub struct Pki {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The server certificate chain (PEM).
    pub cert: PathBuf,
    /// The server key (PEM).
    pub key: PathBuf,
    /// Another CA, which signed nothing the server presents.
    pub other_ca: PathBuf,
}

/// Runs the openssl CLI in `dir` with whitespace-separated `args`.
fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is needed to make the test PKI");
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const NEW_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

fn self_signed_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &format!(
            "req -x509 {NEW_KEY} -keyout {name}.key -out {name}.pem -days 2 \
             -subj /CN=sombrero-test-{name} -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign"
        ),
    );
}

/// Makes the PKI in `dir` (keys are generated here, never committed).
pub fn pki(dir: &Path) -> Pki {
    self_signed_ca(dir, "ca");
    self_signed_ca(dir, "other-ca");
    leaf_cert(dir, "server", "localhost", "DNS:localhost,IP:127.0.0.1");
    Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        other_ca: dir.join("other-ca.pem"),
    }
}

/// A certificate from the test CA for `*.corp.test` and `localhost` (with the server key):
/// (certificate, key).
pub fn wildcard_cert(dir: &Path) -> (PathBuf, PathBuf) {
    leaf_cert(dir, "wild", "corp.test", "DNS:*.corp.test,DNS:localhost");
    (dir.join("wild.pem"), dir.join("wild.key"))
}

/// A server certificate `NAME.pem` (key `NAME.key`) the test CA signs for `san`.
fn leaf_cert(dir: &Path, name: &str, cn: &str, san: &str) {
    openssl(
        dir,
        &format!("req {NEW_KEY} -keyout {name}.key -out {name}.csr -subj /CN={cn}"),
    );
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!(
            "subjectAltName={san}\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    openssl(
        dir,
        &format!(
            "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {name}.pem \
             -days 2 -extfile {name}.ext"
        ),
    );
}

/// One IAM query call to moto (unsigned: moto does not check signatures unless told to; the
/// credential scope only routes the call to IAM). Returns the XML reply.
pub async fn iam_call(endpoint: &str, params: &[(&str, &str)]) -> String {
    let body: String = params
        .iter()
        .chain([("Version", "2010-05-08")].iter())
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--fail-with-body",
            "-X",
            "POST",
            endpoint,
            "-H",
            "Content-Type: application/x-www-form-urlencoded",
            "-H",
            "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
            "--data",
            &body,
        ])
        .output()
        .await
        .expect("curl is needed to set up moto's IAM");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "moto IAM {params:?}: {text}");
    text
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn between<'a>(xml: &'a str, tag: &str) -> &'a str {
    let start = xml.find(&format!("<{tag}>")).unwrap() + tag.len() + 2;
    let end = xml[start..].find(&format!("</{tag}>")).unwrap() + start;
    &xml[start..end]
}

/// An IAM user in moto with an access key and a policy allowing sts:GetCallerIdentity;
/// returns (ARN, credentials).
pub async fn iam_user(endpoint: &str, name: &str) -> (String, Credentials) {
    let user = iam_call(endpoint, &[("Action", "CreateUser"), ("UserName", name)]).await;
    let arn = between(&user, "Arn").to_string();
    iam_call(
        endpoint,
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", name),
            ("PolicyName", "whoami"),
            (
                "PolicyDocument",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:GetCallerIdentity","Resource":"*"}]}"#,
            ),
        ],
    )
    .await;
    let key = iam_call(
        endpoint,
        &[("Action", "CreateAccessKey"), ("UserName", name)],
    )
    .await;
    let credentials = Credentials::new(
        between(&key, "AccessKeyId"),
        between(&key, "SecretAccessKey"),
        None,
        None,
        "moto-iam",
    );
    (arn, credentials)
}

/// A signer for moto's STS with these credentials.
pub fn signer(endpoint: &str, credentials: Credentials) -> ProofSigner {
    ProofSigner::new(
        SharedCredentialsProvider::new(credentials),
        "us-east-1",
        StsEndpoint::parse(endpoint).unwrap(),
    )
}

/// A unique name for a test's IAM user.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A loopback port nobody listens on (just now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub use super::BIN;

/// A running `sombrero serve` on a TLS port; killed when dropped.
pub struct TlsDaemon {
    child: Child,
    pub port: u16,
    /// The data dir (its log files are read by tests).
    dir: tempfile::TempDir,
}

impl TlsDaemon {
    /// Bytes in the daemon's log files (`logs/` of its data dir).
    pub fn log_bytes(&self) -> u64 {
        std::fs::read_dir(self.dir.path().join("logs"))
            .map(|dir| {
                dir.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

impl Drop for TlsDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the daemon with `identities` (TOML lines for `[identities]`) checking proofs with
/// the STS at `sts`; `extra` are more `serve` arguments.
pub fn daemon(pki: &Pki, sts: &str, identities: &str, extra: &[&str]) -> TlsDaemon {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.toml"),
        format!("requesters = [\"*\"]\napprovers = [\"*\"]\n[identities]\n{identities}\n"),
    )
    .unwrap();
    let (child, line) = super::spawn_listening(
        Command::new(BIN)
            .env("SOMBRERO_DATA_DIR", dir.path())
            .args([
                "serve",
                "--listen",
                "tcp://127.0.0.1:0",
                "--sts-endpoint",
                sts,
            ])
            .arg("--tls-cert")
            .arg(&pki.cert)
            .arg("--tls-key")
            .arg(&pki.key)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    );
    let port = line
        .trim()
        .rsplit_once("tcp://127.0.0.1:")
        .and_then(|(_, p)| p.split(',').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the daemon did not say where it listens: {line:?}"));
    TlsDaemon { child, port, dir }
}

/// An STS stand-in on loopback that counts the calls the broker makes: it answers every
/// GetCallerIdentity with `arn`, except those signed with the access key [`BAD_KEY`], which it
/// refuses as STS would a bad signature. (The broker trusts STS's answer; the stand-in lets a
/// test count the broker's calls exactly.)
pub struct CountingSts {
    /// Its endpoint (`http://127.0.0.1:PORT`).
    pub endpoint: String,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// The access key [`CountingSts`] refuses.
pub const BAD_KEY: &str = "AKIDBAD";

impl CountingSts {
    /// Starts the stand-in on the current runtime.
    pub async fn start(arn: &str) -> CountingSts {
        Self::start_slow(arn, Duration::ZERO).await
    }

    /// Starts a stand-in that takes `delay` to answer each call (a slow or distant STS).
    pub async fn start_slow(arn: &str, delay: Duration) -> CountingSts {
        use std::sync::atomic::Ordering;
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = std::sync::Arc::clone(&calls);
        let ok = format!(
            "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>{arn}</Arn>\
             </GetCallerIdentityResult></GetCallerIdentityResponse>"
        );
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                counted.fetch_add(1, Ordering::SeqCst);
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let ok = ok.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    if auth.contains(&format!("Credential={BAD_KEY}/")) {
                        (
                            axum::http::StatusCode::FORBIDDEN,
                            "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code>\
                             <Message>bad signature</Message></Error></ErrorResponse>"
                                .to_string(),
                        )
                    } else {
                        (axum::http::StatusCode::OK, ok)
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        CountingSts { endpoint, calls }
    }

    /// How many calls it has answered.
    pub fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One TLS connection to a daemon, with its channel binding (what a proof sent on it must carry).
pub struct Conn {
    /// Sends requests on this connection only.
    pub sender: hyper::client::conn::http1::SendRequest<http_body_util::Empty<hyper::body::Bytes>>,
    /// The connection's channel binding.
    pub binding: String,
    /// Ends when the daemon closes the connection.
    pub closed: tokio::task::JoinHandle<Result<(), hyper::Error>>,
}

/// Opens a TLS connection to `127.0.0.1:port` (from `source` when given, a loopback address)
/// trusting `ca`, checking the certificate against `host`.
pub async fn connect_from(ca: &Path, host: &str, port: u16, source: Option<&str>) -> Conn {
    try_connect_from(ca, host, port, source)
        .await
        .expect("the daemon closed the connection before TLS")
}

/// [`connect_from`], `None` when the daemon closes the connection before the TLS handshake
/// ends (a connection over a cap).
pub async fn try_connect_from(
    ca: &Path,
    host: &str,
    port: u16,
    source: Option<&str>,
) -> Option<Conn> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(source) = source {
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    }
    let tcp = socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .ok()?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    let config = pink_sombrero::wire::tls::client_config(Some(ca)).unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .ok()?;
    let binding = pink_sombrero::wire::proof::channel_binding(&**tls.get_ref().1).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .ok()?;
    let closed = tokio::spawn(conn);
    Some(Conn {
        sender,
        binding,
        closed,
    })
}

/// [`connect_from`] the default source address.
pub async fn connect(ca: &Path, host: &str, port: u16) -> Conn {
    connect_from(ca, host, port, None).await
}

impl Conn {
    /// GET `path` with `authorization`: the status, the body as JSON (Null when it is not), and
    /// the `WWW-Authenticate` challenge; `None` when the connection is closed.
    pub async fn get(
        &mut self,
        host: &str,
        path: &str,
        authorization: Option<&str>,
    ) -> Option<(hyper::StatusCode, serde_json::Value, Option<String>)> {
        use http_body_util::BodyExt;
        self.sender.ready().await.ok()?;
        let mut req = hyper::Request::get(path).header("host", host);
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let resp = self
            .sender
            .send_request(req.body(http_body_util::Empty::new()).unwrap())
            .await
            .ok()?;
        let status = resp.status();
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        Some((status, json, challenge))
    }
}
