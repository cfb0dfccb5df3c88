//! `sombrero serve --listen tcp://...` end to end: the real daemon, TLS with a CA made at test
//! time, identity proofs checked with moto's STS, the ARN mapped through the policy's
//! `[identities]`. Every refusal is checked on the wire: tampered, misdirected, stale or
//! missing proofs, unknown ARNs, an unreachable STS, plaintext HTTP and an untrusted CA.

mod moto_support;
mod tcp_support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use moto_support::moto;
use pink_sombrero::serve::sts::{MAX_AGE, Proof};
use pink_sombrero::serve::tls::client_config;
use tcp_support::{BIN, Daemon, Pki, daemon, free_port, iam_user, pki, signer, unique};

/// GET `path` over TLS trusting `ca`, as `host`, with `authorization`; the status and body.
async fn get(
    ca: &Path,
    host: &str,
    port: u16,
    path: &str,
    authorization: Option<&str>,
) -> (StatusCode, serde_json::Value, Option<String>) {
    let tls = client_config(Some(ca)).unwrap();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let mut req = hyper::Request::get(format!("https://{host}:{port}{path}"));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&body)));
    (status, json, challenge)
}

async fn whoami(pki: &Pki, d: &Daemon, proof: &Proof) -> (StatusCode, serde_json::Value) {
    let (status, body, _) = get(
        &pki.ca,
        "localhost",
        d.port,
        "/v1/whoami",
        Some(&proof.to_header()),
    )
    .await;
    (status, body)
}

fn message(body: &serde_json::Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn whoami_over_tls_is_the_user_mapped_from_the_arn_sts_reports() {
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (arn, keys) = iam_user(&moto, &unique("alice")).await;
    let d = daemon(&pki, &moto, &format!("{arn:?} = \"alice\""), &[]);

    let proof = signer(&moto, keys.clone()).sign("localhost").await.unwrap();
    let (status, me) = whoami(&pki, &d, &proof).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"], "alice");
    assert_eq!(me["external"], arn.as_str());
    assert_eq!(me["via"]["kind"], "iam");

    // The certificate's other name is a server id too, when the client dials by address.
    let by_ip = signer(&moto, keys).sign("127.0.0.1").await.unwrap();
    let (status, me, _) = get(
        &pki.ca,
        "127.0.0.1",
        d.port,
        "/v1/whoami",
        Some(&by_ip.to_header()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"], "alice");
}

#[tokio::test]
async fn tampered_misdirected_stale_or_missing_proofs_are_refused() {
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (arn, keys) = iam_user(&moto, &unique("alice")).await;
    let d = daemon(&pki, &moto, &format!("{arn:?} = \"alice\""), &[]);
    let alice = signer(&moto, keys.clone());
    let refused = |(status, body): (StatusCode, serde_json::Value), needle: &str| {
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["kind"], "identity", "{body}");
        assert!(message(&body).contains(needle), "{needle:?} not in {body}");
    };

    // The body changed to another action.
    let mut proof = alice.sign("localhost").await.unwrap();
    proof.body = "Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::1:role/admin".into();
    refused(whoami(&pki, &d, &proof).await, "GetCallerIdentity");

    // Made for another broker (replayed here by it).
    let proof = alice.sign("other-broker.example").await.unwrap();
    refused(whoami(&pki, &d, &proof).await, "other-broker.example");

    // Made for another STS host.
    let elsewhere = signer("https://sts.us-east-1.amazonaws.com", keys.clone());
    let proof = elsewhere.sign("localhost").await.unwrap();
    refused(
        whoami(&pki, &d, &proof).await,
        "sts.us-east-1.amazonaws.com",
    );

    // Stale.
    let then = SystemTime::now() - MAX_AGE - Duration::from_secs(30);
    let proof = alice.sign_at("localhost", then).await.unwrap();
    refused(whoami(&pki, &d, &proof).await, "sign a fresh one");

    // A client-supplied ARN is not an identity: the proof format has no such field.
    let mut json = serde_json::to_value(alice.sign("localhost").await.unwrap()).unwrap();
    json["arn"] = arn.clone().into();
    let forged = format!(
        "SombreroSTS {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, json.to_string())
    );
    let (status, body, _) = get(&pki.ca, "localhost", d.port, "/v1/whoami", Some(&forged)).await;
    refused((status, body), "not a proof");

    // No proof at all: 401 with the scheme to use.
    let (status, body, challenge) = get(&pki.ca, "localhost", d.port, "/v1/whoami", None).await;
    refused((status, body), "identity proof");
    assert_eq!(challenge.as_deref(), Some("SombreroSTS"));
}

#[tokio::test]
async fn an_arn_the_policy_does_not_map_is_refused() {
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (alice, _) = iam_user(&moto, &unique("alice")).await;
    let (mallory, keys) = iam_user(&moto, &unique("mallory")).await;
    let d = daemon(&pki, &moto, &format!("{alice:?} = \"alice\""), &[]);
    let proof = signer(&moto, keys).sign("localhost").await.unwrap();
    let (status, body) = whoami(&pki, &d, &proof).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["kind"], "identity");
    assert!(
        message(&body).contains(&format!("{mallory} is not a sombrero user")),
        "{body}"
    );
}

#[tokio::test]
async fn an_explicit_server_id_replaces_the_certificate_names() {
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (arn, keys) = iam_user(&moto, &unique("alice")).await;
    let d = daemon(
        &pki,
        &moto,
        &format!("{arn:?} = \"alice\""),
        &["--server-id", "broker.team.example"],
    );
    let alice = signer(&moto, keys);
    let proof = alice.sign("broker.team.example").await.unwrap();
    assert_eq!(whoami(&pki, &d, &proof).await.0, StatusCode::OK);
    let proof = alice.sign("localhost").await.unwrap();
    assert_eq!(whoami(&pki, &d, &proof).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_unreachable_sts_is_a_503() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let dead = format!("http://127.0.0.1:{}", free_port());
    let d = daemon(&pki, &dead, "", &[]);
    let keys = Credentials::new("AKID", "secret", None, None, "test");
    let proof = signer(&dead, keys).sign("localhost").await.unwrap();
    let (status, body) = whoami(&pki, &d, &proof).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["kind"], "unavailable");
    assert!(message(&body).contains(&dead), "{body}");
}

#[tokio::test]
async fn plaintext_http_and_untrusted_clients_get_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let d = daemon(&pki, "http://127.0.0.1:9", "", &[]);

    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    tcp.write_all(b"GET /v1/whoami HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    let _ = tcp.read_to_end(&mut reply);
    assert!(
        !String::from_utf8_lossy(&reply).contains("HTTP/"),
        "plaintext got an HTTP answer: {reply:?}"
    );

    // A client that does not trust the test CA fails the handshake.
    let tls = Arc::new((*client_config(Some(&pki.other_ca)).unwrap()).clone());
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", d.port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let err = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[test]
fn bad_tls_or_sts_options_are_usage_errors_before_the_data_dir_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let data = dir.path().join("data");
    let serve = |extra: &[&str]| {
        let out = Command::new(BIN)
            .env("SOMBRERO_DATA_DIR", &data)
            .args(["serve", "--listen", "tcp://127.0.0.1:0"])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    assert!(serve(&[]).contains("--tls-cert"));
    let stderr = serve(&["--tls-cert", key, "--tls-key", key]);
    assert!(stderr.contains("no CERTIFICATE block"), "{stderr}");
    let stderr = serve(&[
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--sts-endpoint",
        "ftp://x",
    ]);
    assert!(stderr.contains("bad STS endpoint"), "{stderr}");
    assert!(!data.exists(), "the data dir was created");
}

/// `sombrero --broker https://... ARGS` as a thin client with `keys` from the environment
/// (the default AWS chain) and its own empty data dir.
fn client(
    d: &Daemon,
    ca: Option<&Path>,
    moto: &str,
    keys: &Credentials,
    args: &[&str],
) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.env("SOMBRERO_DATA_DIR", home.path())
        .env("HOME", home.path())
        .env("AWS_ACCESS_KEY_ID", keys.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", keys.secret_access_key())
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_STS", moto)
        .args(["--broker", &format!("https://localhost:{}", d.port)]);
    if let Some(ca) = ca {
        cmd.arg("--ca").arg(ca);
    }
    cmd.args(args).output().unwrap()
}

#[tokio::test]
async fn the_cli_over_https_proves_its_own_aws_identity() {
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (alice, alice_keys) = iam_user(&moto, &unique("alice")).await;
    let (_, stranger_keys) = iam_user(&moto, &unique("stranger")).await;
    let d = daemon(&pki, &moto, &format!("{alice:?} = \"alice\""), &[]);

    let out = client(&d, Some(&pki.ca), &moto, &alice_keys, &["whoami", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let me: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(me["user"], "alice");
    assert_eq!(me["external"], alice.as_str());

    // Other commands go the same way.
    let out = client(&d, Some(&pki.ca), &moto, &alice_keys, &["list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );

    // An identity the policy does not map: refused (exit 1), naming the ARN.
    let out = client(&d, Some(&pki.ca), &moto, &stranger_keys, &["whoami"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(":user/stranger-") && stderr.contains("not a sombrero user"),
        "{stderr}"
    );

    // Without the CA the broker's certificate is not trusted: nothing is sent.
    let out = client(&d, None, &moto, &alice_keys, &["whoami"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("UnknownIssuer") || stderr.contains("certificate"),
        "{stderr}"
    );
}
