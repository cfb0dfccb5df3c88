//! The IAM identity proof against moto's STS, through the real signer and verifier: the ARN is
//! the one STS reports for the signing credentials; an unreachable STS is a 503, not a 401.

use crate::common::moto::moto;
use crate::common::tls::{free_port, iam_user, signer, unique};
use aws_credential_types::Credentials;
use pink_sombrero::serve::sts::{ServerId, Verifier};
use pink_sombrero::wire::proof::{StsEndpoint, StsError};

/// The channel binding of the connection these proofs are made for.
const BOUND: &str = "0a0b0c0d";

fn verifier(endpoint: &str, id: &str) -> Verifier {
    Verifier::new(
        StsEndpoint::parse(endpoint).unwrap(),
        ServerId::Named(id.into()),
    )
    .unwrap()
}

#[tokio::test]
async fn the_identity_is_the_iam_user_whose_keys_signed() {
    let Some(moto) = moto() else { return };
    let (arn, keys) = iam_user(&moto, &unique("alice")).await;
    let proof = signer(&moto, keys)
        .sign("broker.test", BOUND)
        .await
        .unwrap();
    let identity = verifier(&moto, "broker.test")
        .verify(&proof, BOUND)
        .await
        .unwrap();
    assert_eq!(identity.arn, arn);
    assert!(
        arn.starts_with("arn:aws:iam::") && arn.contains(":user/alice-"),
        "{arn}"
    );
}

#[tokio::test]
async fn two_users_get_two_identities() {
    let Some(moto) = moto() else { return };
    let (alice, alice_keys) = iam_user(&moto, &unique("alice")).await;
    let (bob, bob_keys) = iam_user(&moto, &unique("bob")).await;
    let v = verifier(&moto, "broker.test");
    let a = signer(&moto, alice_keys)
        .sign("broker.test", BOUND)
        .await
        .unwrap();
    let b = signer(&moto, bob_keys)
        .sign("broker.test", BOUND)
        .await
        .unwrap();
    assert_eq!(v.verify(&a, BOUND).await.unwrap().arn, alice);
    assert_eq!(v.verify(&b, BOUND).await.unwrap().arn, bob);
}

#[tokio::test]
async fn a_proof_for_another_broker_never_reaches_sts() {
    let Some(moto) = moto() else { return };
    let (_, keys) = iam_user(&moto, &unique("mallory")).await;
    let proof = signer(&moto, keys).sign("evil.test", BOUND).await.unwrap();
    let err = verifier(&moto, "broker.test")
        .verify(&proof, BOUND)
        .await
        .unwrap_err();
    assert!(matches!(err, StsError::Rejected(_)), "{err}");
    assert_eq!(err.status(), 401);
}

#[tokio::test]
async fn an_unreachable_sts_is_unavailable_not_unauthorised() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let keys = Credentials::new("AKID", "secret", None, None, "test");
    let proof = signer(&endpoint, keys)
        .sign("broker.test", BOUND)
        .await
        .unwrap();
    let err = verifier(&endpoint, "broker.test")
        .verify(&proof, BOUND)
        .await
        .unwrap_err();
    assert!(matches!(err, StsError::Unavailable { .. }), "{err}");
    assert_eq!(err.status(), 503);
    assert!(err.to_string().contains(&endpoint), "{err}");
}

/// A moto of its own that checks SigV4 signatures (as STS does) after the first `free` calls,
/// which set up a user. Killed when dropped.
struct CheckingMoto {
    endpoint: String,
    _child: tokio::process::Child,
}

async fn checking_moto(free: u32) -> CheckingMoto {
    let server = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    assert!(
        server.exists(),
        "{} is missing: scripts/moto-up installs it",
        server.display()
    );
    let port = free_port();
    let child = tokio::process::Command::new(server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", free.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return CheckingMoto {
                endpoint,
                _child: child,
            };
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the signature-checking moto did not start on {endpoint}");
}

#[tokio::test]
async fn sts_refusing_a_signature_is_a_401_carrying_its_message() {
    if moto().is_none() {
        return;
    }
    // Three free calls: CreateUser, PutUserPolicy, CreateAccessKey.
    let moto = checking_moto(3).await;
    let (arn, keys) = iam_user(&moto.endpoint, &unique("alice")).await;
    let v = verifier(&moto.endpoint, "broker.test");

    let good = signer(&moto.endpoint, keys.clone())
        .sign("broker.test", BOUND)
        .await
        .unwrap();
    assert_eq!(v.verify(&good, BOUND).await.unwrap().arn, arn);

    // Alice's key id without her secret: a forged identity.
    let forged_keys = Credentials::new(keys.access_key_id(), "guessed", None, None, "test");
    let forged = signer(&moto.endpoint, forged_keys)
        .sign("broker.test", BOUND)
        .await
        .unwrap();
    let err = v.verify(&forged, BOUND).await.unwrap_err();
    assert!(matches!(err, StsError::Refused(_)), "{err}");
    assert_eq!(err.status(), 401);
    assert!(err.to_string().contains("SignatureDoesNotMatch"), "{err}");

    // A signed header altered after signing (the date, still within the window).
    let mut altered = good.clone();
    for (name, value) in &mut altered.headers {
        if name == "x-amz-date" {
            // 20261123T112959Z: move the seconds' last digit.
            let digit = if value.as_bytes()[14] == b'0' {
                "1"
            } else {
                "0"
            };
            value.replace_range(14..15, digit);
        }
    }
    let err = v.verify(&altered, BOUND).await.unwrap_err();
    assert!(err.to_string().contains("SignatureDoesNotMatch"), "{err}");
}
