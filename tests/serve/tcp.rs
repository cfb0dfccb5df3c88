//! `sombrero serve --listen tcp://...` end to end: the real daemon, TLS with a CA made at test
//! time, identity proofs checked with moto's STS, the ARN mapped through the policy's
//! `[identities]`. Every refusal is checked on the wire: tampered, misdirected, stale or
//! missing proofs, unknown ARNs, an unreachable STS, plaintext HTTP and an untrusted CA.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::common::moto::moto;
use crate::common::tls::{
    BIN, Pki, TlsDaemon, connect, daemon, free_port, iam_user, pki, signer, unique,
};
use aws_credential_types::Credentials;
use hyper::StatusCode;
use pink_sombrero::wire::proof::{MAX_AGE, Proof};
use pink_sombrero::wire::tls::client_config;

/// GET `path` on a new TLS connection trusting `ca`, as `host`, with `authorization`; the
/// status, body and challenge.
async fn get(
    ca: &Path,
    host: &str,
    port: u16,
    path: &str,
    authorization: Option<&str>,
) -> (StatusCode, serde_json::Value, Option<String>) {
    let mut c = connect(ca, host, port).await;
    c.get(host, path, authorization)
        .await
        .expect("the daemon closed the connection")
}

/// `GET /v1/whoami` on a new connection to `localhost` with the proof `make` signs for it
/// (given the connection's channel binding).
async fn whoami(
    pki: &Pki,
    d: &TlsDaemon,
    make: impl AsyncFnOnce(&str) -> Proof,
) -> (StatusCode, serde_json::Value) {
    let mut c = connect(&pki.ca, "localhost", d.port).await;
    let proof = make(&c.binding).await;
    let (status, body, _) = c
        .get("localhost", "/v1/whoami", Some(&proof.to_header()))
        .await
        .expect("the daemon closed the connection");
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

    let alice = signer(&moto, keys);
    let (status, me) = whoami(&pki, &d, async |b| {
        alice.sign("localhost", b).await.unwrap()
    })
    .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"], "alice");
    assert_eq!(me["external"], arn.as_str());
    assert_eq!(me["via"]["kind"], "iam");

    // The certificate's other name is a server id too, when the client dials by address.
    let mut c = connect(&pki.ca, "127.0.0.1", d.port).await;
    let by_ip = alice.sign("127.0.0.1", &c.binding).await.unwrap();
    let (status, me, _) = c
        .get("127.0.0.1", "/v1/whoami", Some(&by_ip.to_header()))
        .await
        .unwrap();
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
    let changed = async |b: &str| {
        let mut proof = alice.sign("localhost", b).await.unwrap();
        proof.body =
            "Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::1:role/admin".into();
        proof
    };
    refused(whoami(&pki, &d, changed).await, "GetCallerIdentity");

    // Made for another broker (replayed here by it).
    let other = async |b: &str| alice.sign("other-broker.example", b).await.unwrap();
    refused(whoami(&pki, &d, other).await, "other-broker.example");

    // Made for another STS host.
    let elsewhere = signer("https://sts.us-east-1.amazonaws.com", keys.clone());
    let proof = async |b: &str| elsewhere.sign("localhost", b).await.unwrap();
    refused(whoami(&pki, &d, proof).await, "sts.us-east-1.amazonaws.com");

    // Stale.
    let then = SystemTime::now() - MAX_AGE - Duration::from_secs(30);
    let stale = async |b: &str| alice.sign_at("localhost", b, then).await.unwrap();
    refused(whoami(&pki, &d, stale).await, "sign a fresh one");

    // Made on another TLS connection (seen there, replayed here): refused, never sent to STS.
    let elsewhere = connect(&pki.ca, "localhost", d.port).await;
    let replayed = async |_: &str| alice.sign("localhost", &elsewhere.binding).await.unwrap();
    refused(whoami(&pki, &d, replayed).await, "another TLS connection");

    // A client-supplied ARN is not an identity: the proof format has no such field.
    let mut json = serde_json::to_value(alice.sign("localhost", "00").await.unwrap()).unwrap();
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
    let mallory_signs = signer(&moto, keys);
    let proof = async |b: &str| mallory_signs.sign("localhost", b).await.unwrap();
    let (status, body) = whoami(&pki, &d, proof).await;
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
    let proof = async |b: &str| alice.sign("broker.team.example", b).await.unwrap();
    assert_eq!(whoami(&pki, &d, proof).await.0, StatusCode::OK);
    // Bound to another server id (the certificate's own name): 401.
    let proof = async |b: &str| alice.sign("localhost", b).await.unwrap();
    let (status, body) = whoami(&pki, &d, proof).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        message(&body).contains("\"localhost\", not this one"),
        "{body}"
    );
}

#[tokio::test]
async fn an_unreachable_sts_is_a_503() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let dead = format!("http://127.0.0.1:{}", free_port());
    let d = daemon(&pki, &dead, "", &[]);
    let keys = Credentials::new("AKID", "secret", None, None, "test");
    let dead_signs = signer(&dead, keys);
    let proof = async |b: &str| dead_signs.sign("localhost", b).await.unwrap();
    let (status, body) = whoami(&pki, &d, proof).await;
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
    // A scheme that is not https, or plain http to a non-loopback STS (proofs in the clear).
    for (sts, says) in [
        ("ftp://x", "bad STS endpoint"),
        ("http://sts.example.com", "loopback"),
    ] {
        let stderr = serve(&["--tls-cert", cert, "--tls-key", key, "--sts-endpoint", sts]);
        assert!(stderr.contains(says), "{sts}: {stderr}");
    }
    // A wildcard certificate without an exact --server-id: proofs for any host it covers
    // would be accepted, so the broker refuses to start.
    let (wild, wild_key) = crate::common::tls::wildcard_cert(dir.path());
    let (wild, wild_key) = (wild.to_str().unwrap(), wild_key.to_str().unwrap());
    let sts = ["--sts-endpoint", "http://127.0.0.1:9"];
    let stderr = serve(&[&["--tls-cert", wild, "--tls-key", wild_key][..], &sts].concat());
    assert!(
        stderr.contains("wildcard") && stderr.contains("--server-id"),
        "{stderr}"
    );
    let stderr = serve(
        &[
            &["--tls-cert", wild, "--tls-key", wild_key][..],
            &sts,
            &["--server-id", "*.corp.test"],
        ]
        .concat(),
    );
    assert!(stderr.contains("no wildcard"), "{stderr}");
    assert!(!data.exists(), "the data dir was created");
}

/// `sombrero --broker https://... ARGS` as a thin client with `keys` from the environment
/// (the default AWS chain) and its own empty data dir.
fn client(
    d: &TlsDaemon,
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

/// A proof with its signature removed (the `authorization` header dropped): cheap to make by
/// the thousand, never worth an STS call.
fn unsigned(mut proof: Proof) -> String {
    proof.headers.retain(|(n, _)| n != "authorization");
    proof.to_header()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unsigned_proofs_is_refused_before_sts_and_rate_limited_per_source() {
    use pink_sombrero::serve::proof_rate::BURST;
    use pink_sombrero::serve::tcp::MAX_FAILED_PROOFS;
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let arn = "arn:aws:iam::123456789012:user/alice";
    let sts = crate::common::tls::CountingSts::start(arn).await;
    let d = daemon(&pki, &sts.endpoint, &format!("{arn:?} = \"alice\""), &[]);
    let alice = signer(
        &sts.endpoint,
        Credentials::new("AKIDALICE", "secret", None, None, "test"),
    );

    // From 127.0.0.2: every refusal counts, the third closes the connection.
    let mut refused = 0;
    let mut limited = 0;
    for _ in 0..(BURST as usize + 6) {
        let mut c =
            crate::common::tls::connect_from(&pki.ca, "localhost", d.port, Some("127.0.0.2")).await;
        let proof = unsigned(alice.sign("localhost", &c.binding).await.unwrap());
        for i in 1..=MAX_FAILED_PROOFS {
            let (status, body, _) = c
                .get("localhost", "/v1/whoami", Some(&proof))
                .await
                .unwrap_or_else(|| panic!("closed before refusal {i}"));
            match status {
                StatusCode::UNAUTHORIZED => {
                    assert!(message(&body).contains("not signed"), "{body}");
                    refused += 1;
                }
                StatusCode::TOO_MANY_REQUESTS => limited += 1,
                other => panic!("{other}: {body}"),
            }
        }
        assert!(
            c.get("localhost", "/v1/whoami", Some(&proof))
                .await
                .is_none(),
            "a connection with {MAX_FAILED_PROOFS} refusals stayed open"
        );
    }
    // The burst, plus what refilled while the test ran.
    assert!(refused >= BURST as usize, "{refused} refused");
    assert!(limited > 0);
    assert_eq!(sts.calls(), 0, "an unsigned proof reached STS");

    // Another source (a legitimate client) is unaffected, and its proof is checked once.
    let (status, me) = whoami(&pki, &d, async |b| {
        alice.sign("localhost", b).await.unwrap()
    })
    .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"], "alice");
    assert_eq!(sts.calls(), 1);
}

/// The attack as written: 300 connections from one source send identity proofs that
/// STS must refuse (signed with a bad key, so they pass the shape checks) while STS takes a
/// second to answer each. A proven client on another address is still served in under 2 s
/// (its check waits for no one: the flooding source holds at most its share of STS places),
/// and the daemon's log grows by less than 1 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hundred_refused_proofs_against_a_slow_sts_leave_others_served() {
    use pink_sombrero::serve::proof_rate::{BURST, MAX_IN_FLIGHT_PER_SOURCE, REFILL_PER_SEC};
    use pink_sombrero::serve::tcp::MAX_FAILED_PROOFS;
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let arn = "arn:aws:iam::123456789012:user/alice";
    let sts = crate::common::tls::CountingSts::start_slow(arn, Duration::from_secs(1)).await;
    let d = daemon(&pki, &sts.endpoint, &format!("{arn:?} = \"alice\""), &[]);
    let log_before = d.log_bytes();
    let mallory = Arc::new(signer(
        &sts.endpoint,
        Credentials::new(crate::common::tls::BAD_KEY, "secret", None, None, "test"),
    ));

    let flood_started = std::time::Instant::now();
    let mut flood = Vec::new();
    for _ in 0..300 {
        let (ca, port, mallory) = (pki.ca.clone(), d.port, Arc::clone(&mallory));
        flood.push(tokio::spawn(async move {
            // Over the per-source connection cap the daemon closes it before TLS: refused too.
            let mut c =
                crate::common::tls::try_connect_from(&ca, "localhost", port, Some("127.0.0.2"))
                    .await?;
            let proof = mallory
                .sign("localhost", &c.binding)
                .await
                .unwrap()
                .to_header();
            let mut statuses = Vec::new();
            for _ in 0..=MAX_FAILED_PROOFS {
                match c.get("localhost", "/v1/whoami", Some(&proof)).await {
                    Some((status, _, _)) => statuses.push(status),
                    None => break,
                }
            }
            Some(statuses)
        }));
    }
    // Let the flood take every place it can before the legitimate client arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alice = signer(
        &sts.endpoint,
        Credentials::new("AKIDALICE", "secret", None, None, "test"),
    );
    let started = std::time::Instant::now();
    let (status, me) = whoami(&pki, &d, async |b| {
        alice.sign("localhost", b).await.unwrap()
    })
    .await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"], "alice");
    assert!(
        took < Duration::from_secs(2),
        "the proven client waited {took:?}"
    );

    let (mut refused, mut closed_at_once) = (0, 0);
    for task in flood {
        let Some(statuses) = task.await.unwrap() else {
            closed_at_once += 1;
            continue;
        };
        assert!(
            statuses.len() <= MAX_FAILED_PROOFS as usize,
            "a connection answered after {MAX_FAILED_PROOFS} refusals: {statuses:?}"
        );
        for s in statuses {
            assert_ne!(
                s,
                StatusCode::OK,
                "a proof signed with a bad key was accepted"
            );
            refused += 1;
        }
    }
    assert!(
        refused + closed_at_once >= 300,
        "{refused} refusals, {closed_at_once} closed at once"
    );
    // The flooding source reached STS only within its rate (the rest got 429 at once), and
    // never more than its share at a time: with a 1 s STS that is at most
    // MAX_IN_FLIGHT_PER_SOURCE calls per second of flood.
    let flood_secs = flood_started.elapsed().as_secs_f64().ceil();
    let by_rate = BURST + REFILL_PER_SEC * flood_secs;
    let by_share = MAX_IN_FLIGHT_PER_SOURCE as f64 * (flood_secs + 1.0);
    let calls = sts.calls() as f64 - 1.0;
    assert!(
        calls <= by_rate.min(by_share),
        "{calls} STS calls from the flood in {flood_secs} s"
    );
    let grew = d.log_bytes().saturating_sub(log_before);
    assert!(grew < 1_000_000, "the log grew by {grew} bytes");
}
