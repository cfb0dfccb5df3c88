//! Connections to `sombrero serve` are kept alive and reused, and cost the daemon little when
//! abused: N calls on one `RemoteBroker` open one connection (one peer-credential read on the
//! Unix socket; one TLS handshake and one STS verification over TCP); a client that stalls
//! mid-request or mid-handshake is cut off; a connection that keeps presenting refused proofs
//! is closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::tls::{BAD_KEY, CountingSts, connect, daemon, pki, signer};
use aws_credential_types::Credentials;
use futures_util::future::BoxFuture;
use pink_sombrero::api::BrokerApi;
use pink_sombrero::remote::{BoxIo, Connector, RemoteBroker, TlsConnector, UnixConnector};
use pink_sombrero::serve::tcp::MAX_FAILED_PROOFS;
use pink_sombrero::wire::tls::client_config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How many calls each test makes on one client.
const N: usize = 20;
/// Far longer than any limit under test: a read still blocked after this means no limit.
const PATIENCE: Duration = Duration::from_secs(90);

/// A connector that counts the connections it opens.
struct Counting<C> {
    inner: C,
    opened: AtomicUsize,
}

impl<C: Connector> Connector for Counting<C> {
    fn connect(&self) -> BoxFuture<'static, std::io::Result<BoxIo>> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        self.inner.connect()
    }
    fn host(&self) -> String {
        self.inner.host()
    }
    fn binding(&self, io: &BoxIo) -> Result<Option<String>, String> {
        self.inner.binding(io)
    }
    fn authorization<'a>(
        &'a self,
        binding: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        self.inner.authorization(binding)
    }
}

fn counting<C>(inner: C) -> Arc<Counting<C>> {
    Arc::new(Counting {
        inner,
        opened: AtomicUsize::new(0),
    })
}

/// A daemon on a Unix socket; the test's own user is enrolled.
fn daemon_on_socket() -> crate::common::daemon::Daemon {
    crate::common::daemon::Daemon::started_for_me("requesters = [\"*\"]\napprovers = [\"*\"]\n")
}

#[test]
fn calls_on_one_client_reuse_one_unix_connection() {
    let me = crate::common::daemon::own_user();
    let mut d = daemon_on_socket();
    let conn = counting(UnixConnector::new(d.socket()));
    let client = RemoteBroker::with_connector(d.url(), conn.clone()).unwrap();
    for _ in 0..N {
        client.revision().unwrap();
    }
    assert_eq!(client.whoami().unwrap().user, me);
    assert!(client.list(None).unwrap().is_empty());
    // One connection, so the daemon read the peer's credentials once.
    assert_eq!(conn.opened.load(Ordering::SeqCst), 1);

    // The daemon restarts: the kept connection is dead, and the next call opens a new one.
    d.kill9();
    d.start();
    client.revision().unwrap();
    assert_eq!(conn.opened.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_on_one_client_over_tls_verify_one_proof() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let arn = "arn:aws:iam::123456789012:user/alice";
    let sts = CountingSts::start(arn).await;
    let d = daemon(&pki, &sts.endpoint, &format!("{arn:?} = \"alice\""), &[]);
    let keys = Credentials::new("AKIDALICE", "secret", None, None, "test");
    let tls = TlsConnector::with_signer(
        &format!("localhost:{}", d.port),
        Some(&pki.ca),
        signer(&sts.endpoint, keys),
    )
    .unwrap();
    let conn = counting(tls);
    let endpoint = format!("tcp://localhost:{}", d.port);
    let client = RemoteBroker::with_connector(endpoint, conn.clone()).unwrap();
    let user = tokio::task::spawn_blocking(move || {
        for _ in 0..N {
            client.revision().unwrap();
        }
        client.whoami().unwrap().user
    })
    .await
    .unwrap();
    assert_eq!(user, "alice");
    assert_eq!(conn.opened.load(Ordering::SeqCst), 1, "TLS connections");
    assert_eq!(sts.calls(), 1, "STS verifications");
}

/// Reads until the peer closes (`true`) or [`PATIENCE`] passes (`false`).
async fn closed_by_peer(io: &mut (impl AsyncReadExt + Unpin)) -> bool {
    let drain = async {
        let mut buf = [0u8; 1024];
        // EOF or a reset: closed either way (a 408 before it is fine too).
        while let Ok(n) = io.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(PATIENCE, drain).await.is_ok()
}

const HALF_A_REQUEST: &[u8] = b"GET /v1/revis";

#[tokio::test]
async fn a_client_stalling_mid_request_on_the_socket_is_cut_off() {
    let d = daemon_on_socket();
    let mut s = tokio::net::UnixStream::connect(d.socket()).await.unwrap();
    s.write_all(HALF_A_REQUEST).await.unwrap();
    assert!(
        closed_by_peer(&mut s).await,
        "the stalled connection stayed open"
    );
}

#[tokio::test]
async fn a_client_stalling_mid_handshake_or_mid_request_over_tls_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let d = daemon(&pki, "http://127.0.0.1:9", "", &[]);

    // Connected, never says a word.
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", d.port))
        .await
        .unwrap();
    // Handshake done, half a request line.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", d.port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(client_config(Some(&pki.ca)).unwrap())
        .connect(name, tcp)
        .await
        .unwrap();
    tls.write_all(HALF_A_REQUEST).await.unwrap();
    tls.flush().await.unwrap();

    let (silent, stalled) = tokio::join!(closed_by_peer(&mut silent), closed_by_peer(&mut tls));
    assert!(silent, "a connection without a handshake stayed open");
    assert!(stalled, "a connection stalled mid-request stayed open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_presenting_refused_proofs_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let sts = CountingSts::start("arn:aws:iam::123456789012:user/mallory").await;
    let d = daemon(&pki, &sts.endpoint, "", &[]);
    let bad = Credentials::new(BAD_KEY, "secret", None, None, "test");
    let mut c = connect(&pki.ca, "localhost", d.port).await;
    let proof = signer(&sts.endpoint, bad)
        .sign("localhost", &c.binding)
        .await
        .unwrap()
        .to_header();
    for i in 1..=MAX_FAILED_PROOFS {
        let (status, body, _) = c
            .get("localhost", "/v1/whoami", Some(&proof))
            .await
            .unwrap_or_else(|| panic!("closed before proof {i}"));
        assert_eq!(status, 401, "proof {i}");
        assert!(body.to_string().contains("SignatureDoesNotMatch"), "{body}");
    }
    // The last refusal closed the connection: nothing more reaches STS through it.
    assert!(
        c.sender.ready().await.is_err(),
        "the connection is still open"
    );
    tokio::time::timeout(PATIENCE, c.closed)
        .await
        .expect("the connection did not end")
        .unwrap()
        .unwrap();
    assert_eq!(sts.calls(), MAX_FAILED_PROOFS as usize);
}
