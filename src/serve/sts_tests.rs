use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::*;
use crate::wire::proof::*;

/// The channel binding of the connection the tests' proofs are made for.
const BOUND: &str = "00112233";

fn signer(endpoint: &str) -> ProofSigner {
    let credentials = SharedCredentialsProvider::new(Credentials::new(
        "AKIDEXAMPLE",
        "secret",
        Some("token".into()),
        None,
        "test",
    ));
    ProofSigner::new(
        credentials,
        "us-east-1",
        StsEndpoint::parse(endpoint).unwrap(),
    )
}

fn verifier(endpoint: &str, id: &str) -> Verifier {
    Verifier::new(
        StsEndpoint::parse(endpoint).unwrap(),
        ServerId::Named(id.into()),
    )
    .unwrap()
}

async fn proof() -> Proof {
    signer("https://sts.us-east-1.amazonaws.com")
        .sign("broker.example", BOUND)
        .await
        .unwrap()
}

fn rejected(result: Result<(), StsError>, needle: &str) {
    let msg = match result {
        Err(StsError::Rejected(msg)) => msg,
        other => format!("not a rejection: {other:?}"),
    };
    assert!(
        msg.contains(needle),
        "expected a rejection mentioning {needle:?}: {msg}"
    );
}

#[tokio::test]
async fn a_fresh_proof_for_this_broker_passes_the_checks() {
    let proof = proof().await;
    let v = verifier("https://sts.us-east-1.amazonaws.com/", "broker.example");
    v.check(&proof, BOUND, Utc::now()).unwrap();
    assert_eq!(proof.url, "https://sts.us-east-1.amazonaws.com/");
    assert_eq!(proof.header("host"), Some("sts.us-east-1.amazonaws.com"));
    assert_eq!(proof.header("x-amz-security-token"), Some("token"));
    let auth = proof.header("authorization").unwrap();
    assert!(auth.contains("/us-east-1/sts/aws4_request"), "{auth}");
    assert!(auth.contains(SERVER_ID_HEADER), "{auth}");
}

#[tokio::test]
async fn the_header_encoding_round_trips_and_refuses_other_schemes() {
    let proof = proof().await;
    assert_eq!(Proof::from_header(&proof.to_header()).unwrap(), proof);
    assert!(matches!(
        Proof::from_header("Bearer abc"),
        Err(StsError::Missing)
    ));
    assert!(matches!(
        Proof::from_header("SombreroSTS !!!"),
        Err(StsError::Rejected(_))
    ));
    let extra = B64.encode(br#"{"method":"POST","url":"u","headers":[],"body":"b","arn":"x"}"#);
    assert!(matches!(
        Proof::from_header(&format!("SombreroSTS {extra}")),
        Err(StsError::Rejected(_))
    ));
}

#[tokio::test]
async fn a_proof_for_another_broker_is_refused() {
    let proof = proof().await;
    let v = verifier("https://sts.us-east-1.amazonaws.com", "other.example");
    rejected(v.check(&proof, BOUND, Utc::now()), "broker.example");
}

#[tokio::test]
async fn a_proof_signed_for_another_sts_host_is_refused() {
    let proof = signer("https://sts.evil.example")
        .sign("broker.example", BOUND)
        .await
        .unwrap();
    let v = verifier("https://sts.us-east-1.amazonaws.com", "broker.example");
    rejected(v.check(&proof, BOUND, Utc::now()), "sts.evil.example");
    // Only the URL rewritten: the host header still names the other host.
    let mut moved = proof.clone();
    moved.url = "https://sts.us-east-1.amazonaws.com/".into();
    rejected(v.check(&moved, BOUND, Utc::now()), "host header");
}

#[tokio::test]
async fn another_action_or_body_is_refused() {
    let v = verifier("https://sts.us-east-1.amazonaws.com", "broker.example");
    let mut proof = proof().await;
    proof.body = "Action=AssumeRole&Version=2011-06-15&RoleArn=x".into();
    rejected(v.check(&proof, BOUND, Utc::now()), "GetCallerIdentity");
    let mut proof = self::proof().await;
    proof.method = "GET".into();
    rejected(v.check(&proof, BOUND, Utc::now()), "POST");
}

#[tokio::test]
async fn extra_repeated_or_unsigned_headers_are_refused() {
    let v = verifier("https://sts.us-east-1.amazonaws.com", "broker.example");
    let mut proof = proof().await;
    proof
        .headers
        .push(("x-forwarded-for".into(), "1.2.3.4".into()));
    rejected(v.check(&proof, BOUND, Utc::now()), "x-forwarded-for");

    let mut proof = self::proof().await;
    proof
        .headers
        .push((SERVER_ID_HEADER.to_uppercase(), "broker.example".into()));
    rejected(v.check(&proof, BOUND, Utc::now()), "twice");

    let mut proof = self::proof().await;
    for (name, value) in &mut proof.headers {
        if name == "authorization" {
            *value = value.replace(&format!(";{SERVER_ID_HEADER}"), "");
        }
    }
    rejected(v.check(&proof, BOUND, Utc::now()), SERVER_ID_HEADER);

    let mut proof = self::proof().await;
    proof.headers.retain(|(n, _)| n != SERVER_ID_HEADER);
    rejected(v.check(&proof, BOUND, Utc::now()), SERVER_ID_HEADER);
}

#[tokio::test]
async fn a_proof_bound_to_another_connection_or_unbound_is_refused() {
    let v = verifier("https://sts.us-east-1.amazonaws.com", "broker.example");
    let proof = proof().await;
    rejected(
        v.check(&proof, "ffff", Utc::now()),
        "another TLS connection",
    );
    let mut unsigned = proof.clone();
    for (name, value) in &mut unsigned.headers {
        if name == "authorization" {
            *value = value.replace(&format!("{BINDING_HEADER};"), "");
        }
    }
    rejected(v.check(&unsigned, BOUND, Utc::now()), BINDING_HEADER);
    let mut missing = proof;
    missing.headers.retain(|(n, _)| n != BINDING_HEADER);
    rejected(
        v.check(&missing, BOUND, Utc::now()),
        "another TLS connection",
    );
}

#[tokio::test]
async fn refusals_repeat_attacker_values_escaped_and_cut() {
    let v = verifier("https://sts.us-east-1.amazonaws.com", "broker.example");
    let mut proof = proof().await;
    proof.method = format!("\x1b[31m{}", "A".repeat(10_000));
    let msg = match v.check(&proof, BOUND, Utc::now()) {
        Err(StsError::Rejected(msg)) => msg,
        other => format!("not a rejection: {other:?}"),
    };
    assert!(msg.contains("only POST"), "{msg}");
    assert!(msg.len() < MAX_ECHO_CHARS + 200, "{} bytes", msg.len());
    assert!(!msg.contains('\x1b'), "{msg}");
    assert!(msg.contains("10005 bytes"), "{msg}");
}

#[test]
fn plain_http_sts_is_only_for_loopback() {
    for ok in [
        "http://127.0.0.1:5000",
        "http://[::1]:5000/",
        "http://localhost:5000",
    ] {
        StsEndpoint::parse(ok).unwrap();
    }
    for bad in [
        "http://sts.amazonaws.com",
        "http://10.0.0.1:5000",
        "ftp://127.0.0.1",
    ] {
        let e = StsEndpoint::parse(bad).unwrap_err();
        assert!(matches!(e, StsError::Endpoint(_)), "{bad}: {e}");
    }
}

#[tokio::test]
async fn an_old_or_future_proof_is_refused() {
    let v = verifier("https://sts.us-east-1.amazonaws.com", "broker.example");
    let proof = proof().await;
    let late = Utc::now() + delta(MAX_AGE) + TimeDelta::seconds(5);
    rejected(v.check(&proof, BOUND, late), "sign a fresh one");
    let early = Utc::now() - delta(MAX_SKEW) - TimeDelta::seconds(5);
    rejected(v.check(&proof, BOUND, early), "clock");
}

#[test]
fn endpoints_are_normalised_with_host_and_port() {
    let e = StsEndpoint::parse("http://127.0.0.1:5000").unwrap();
    assert_eq!(e.as_str(), "http://127.0.0.1:5000/");
    assert_eq!(e.host(), "127.0.0.1:5000");
    let e = StsEndpoint::parse("https://sts.eu-west-1.amazonaws.com:443/").unwrap();
    assert_eq!(e.host(), "sts.eu-west-1.amazonaws.com");
    assert!(StsEndpoint::parse("ftp://x").is_err());
    assert!(StsEndpoint::parse("https://x/?Action=AssumeRole").is_err());
}

#[test]
fn the_arn_comes_from_the_result_element_only() {
    let ok = r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
      <GetCallerIdentityResult>
        <UserId>AIDA</UserId><Account>123456789012</Account>
        <Arn>arn:aws:iam::123456789012:user/alice</Arn>
      </GetCallerIdentityResult>
      <ResponseMetadata><RequestId>x</RequestId></ResponseMetadata>
    </GetCallerIdentityResponse>"#;
    assert_eq!(
        caller_arn(ok).as_deref(),
        Some("arn:aws:iam::123456789012:user/alice")
    );
    let elsewhere =
        "<GetCallerIdentityResponse><Arn>arn:aws:iam::1:user/x</Arn></GetCallerIdentityResponse>";
    assert_eq!(caller_arn(elsewhere), None);
    let not_arn = "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>alice</Arn></GetCallerIdentityResult></GetCallerIdentityResponse>";
    assert_eq!(caller_arn(not_arn), None);
    assert_eq!(caller_arn("not xml"), None);
}

#[test]
fn sts_error_messages_carry_code_and_message() {
    let err = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
      <Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code>
      <Message>The request signature we calculated does not match</Message></Error>
      <RequestId>x</RequestId></ErrorResponse>"#;
    assert_eq!(
        sts_error_message(err).as_deref(),
        Some("SignatureDoesNotMatch: The request signature we calculated does not match")
    );
}

#[test]
fn emulator_error_shapes_are_read_too() {
    let err = "<ErrorResponse><Errors><Error><Code>InvalidClientTokenId</Code>\
               <Message>The security token included in the request is invalid.</Message>\
               <Type>Sender</Type></Error></Errors></ErrorResponse>";
    assert_eq!(
        sts_error_message(err).as_deref(),
        Some("InvalidClientTokenId: The security token included in the request is invalid.")
    );
}

/// An STS stand-in on loopback that answers exactly one request with `arn`, then is gone:
/// any second call to STS fails as unavailable.
async fn sts_answering_once(arn: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let body = format!(
        "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>{arn}</Arn>\
         </GetCallerIdentityResult></GetCallerIdentityResponse>"
    );
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        // Headers, then the fixed body.
        while !String::from_utf8_lossy(&request).ends_with(BODY) {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request ended early");
            request.extend_from_slice(&buf[..n]);
        }
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(reply.as_bytes()).await.unwrap();
        // Dropping the listener: nothing answers from now on.
    });
    endpoint
}

#[tokio::test]
async fn a_verified_proof_is_reused_on_its_connection_only() {
    let arn = "arn:aws:iam::123456789012:user/alice";
    let endpoint = sts_answering_once(arn).await;
    let v = verifier(&endpoint, "broker.example");
    let s = signer(&endpoint);
    let header = s.sign("broker.example", BOUND).await.unwrap().to_header();

    let conn = ConnectionIdentity::new(BOUND.into());
    assert_eq!(conn.resolve(Some(&header), &v).await.unwrap().arn, arn);
    // Same connection, same proof: no second call to STS (it would fail now).
    assert_eq!(conn.resolve(Some(&header), &v).await.unwrap().arn, arn);
    // A new proof on the same connection is verified afresh.
    let later = std::time::SystemTime::now() + Duration::from_secs(1);
    let other = s
        .sign_at("broker.example", BOUND, later)
        .await
        .unwrap()
        .to_header();
    let err = conn.resolve(Some(&other), &v).await.unwrap_err();
    assert_eq!(err.status(), 503, "{err}");
    // Another connection (another binding) with the first proof: refused before STS.
    let err = ConnectionIdentity::new("44556677".into())
        .resolve(Some(&header), &v)
        .await
        .unwrap_err();
    assert_eq!(err.status(), 401, "{err}");
    assert!(err.to_string().contains("another TLS connection"), "{err}");
    // No proof at all.
    assert!(matches!(
        conn.resolve(None, &v).await,
        Err(StsError::Missing)
    ));
}

#[tokio::test]
async fn a_cached_identity_expires_with_its_proof() {
    let arn = "arn:aws:iam::123456789012:user/alice";
    let endpoint = sts_answering_once(arn).await;
    let v = verifier(&endpoint, "broker.example");
    let header = signer(&endpoint)
        .sign("broker.example", BOUND)
        .await
        .unwrap()
        .to_header();
    let conn = ConnectionIdentity::new(BOUND.into());
    assert_eq!(conn.resolve(Some(&header), &v).await.unwrap().arn, arn);
    // The proof's lifetime passes on a long-lived connection: the cache no longer answers, and
    // the proof goes to STS again (which is gone now).
    if let Some(verified) = conn.verified.lock().await.as_mut() {
        verified.until = Utc::now() - TimeDelta::seconds(1);
    }
    let err = conn.resolve(Some(&header), &v).await.unwrap_err();
    assert_eq!(err.status(), 503, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifications_in_flight_are_bounded_broker_wide() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (n, m) = (Arc::clone(&now), Arc::clone(&most));
    // A slow STS stand-in that records how many calls it holds at once.
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move || {
            let (n, m) = (Arc::clone(&n), Arc::clone(&m));
            async move {
                m.fetch_max(n.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                n.fetch_sub(1, Ordering::SeqCst);
                "<GetCallerIdentityResponse><GetCallerIdentityResult>\
                 <Arn>arn:aws:iam::1:user/a</Arn></GetCallerIdentityResult>\
                 </GetCallerIdentityResponse>"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let v = Arc::new(verifier(&endpoint, "broker.example"));
    let proof = signer(&endpoint)
        .sign("broker.example", BOUND)
        .await
        .unwrap();
    let calls: Vec<_> = (0..3 * MAX_CONCURRENT_VERIFICATIONS)
        .map(|_| {
            let (v, proof) = (Arc::clone(&v), proof.clone());
            tokio::spawn(async move { v.verify(&proof, BOUND).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= MAX_CONCURRENT_VERIFICATIONS,
        "{most} verifications at once"
    );
}

#[tokio::test]
async fn a_client_keeps_one_proof_per_connection() {
    let proofs = ClientProofs::new(
        signer("https://sts.us-east-1.amazonaws.com"),
        "broker.example",
    );
    let a1 = proofs.header("aa").await.unwrap();
    // Another second: a re-signed proof would differ.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let b1 = proofs.header("bb").await.unwrap();
    assert_ne!(a1, b1);
    // Back on the first connection: its own proof again, not a new one the broker would
    // have to verify afresh.
    assert_eq!(proofs.header("aa").await.unwrap(), a1);
    assert_eq!(proofs.header("bb").await.unwrap(), b1);
}
