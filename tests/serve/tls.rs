//! TLS for the broker's TCP listener with a CA made at test time: the handshake succeeds for a
//! client trusting that CA and fails for any other; the certificate's names are the server ids
//! a broker answers to.

use std::sync::Arc;

use pink_sombrero::serve::tls::ServerTls;
use pink_sombrero::wire::tls::{TlsError, client_config};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A TLS echo-once server on loopback; returns its port.
async fn tls_server(tls: ServerTls) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = TlsAcceptor::from(tls.config.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut stream) = acceptor.accept(tcp).await {
                    let mut buf = [0u8; 5];
                    if stream.read_exact(&mut buf).await.is_ok() {
                        let _ = stream.write_all(&buf).await;
                        let _ = stream.shutdown().await;
                    }
                }
            });
        }
    });
    port
}

async fn exchange(
    config: Arc<rustls::ClientConfig>,
    port: u16,
    name: &str,
) -> std::io::Result<Vec<u8>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    let mut stream = TlsConnector::from(config).connect(name, tcp).await?;
    stream.write_all(b"hello").await?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await?;
    Ok(reply)
}

#[tokio::test]
async fn the_handshake_succeeds_with_the_test_ca_by_name_and_by_address() {
    let dir = tempfile::tempdir().unwrap();
    let pki = crate::common::tls::pki(dir.path());
    let port = tls_server(ServerTls::from_pem_files(&pki.cert, &pki.key).unwrap()).await;
    let client = client_config(Some(&pki.ca)).unwrap();
    assert_eq!(
        exchange(client.clone(), port, "localhost").await.unwrap(),
        b"hello"
    );
    assert_eq!(exchange(client, port, "127.0.0.1").await.unwrap(), b"hello");
}

#[tokio::test]
async fn the_handshake_fails_without_the_ca_or_for_another_name() {
    let dir = tempfile::tempdir().unwrap();
    let pki = crate::common::tls::pki(dir.path());
    let port = tls_server(ServerTls::from_pem_files(&pki.cert, &pki.key).unwrap()).await;

    let public_roots = client_config(None).unwrap();
    let err = exchange(public_roots, port, "localhost").await.unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    let other = client_config(Some(&pki.other_ca)).unwrap();
    let err = exchange(other, port, "localhost").await.unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    let right_ca = client_config(Some(&pki.ca)).unwrap();
    let err = exchange(right_ca, port, "broker.example")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");
}

#[test]
fn the_certificate_names_are_the_server_ids() {
    let dir = tempfile::tempdir().unwrap();
    let pki = crate::common::tls::pki(dir.path());
    let tls = ServerTls::from_pem_files(&pki.cert, &pki.key).unwrap();
    assert!(tls.certifies("localhost"));
    assert!(tls.certifies("127.0.0.1"));
    assert!(!tls.certifies("broker.example"));
    assert!(!tls.certifies("127.0.0.2"));
    assert!(!tls.certifies("not a name"));
}

#[test]
fn unusable_pem_files_say_which_file_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let pki = crate::common::tls::pki(dir.path());
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();

    let err = ServerTls::from_pem_files(&empty, &pki.key).unwrap_err();
    assert!(
        matches!(&err, TlsError::Pem { path, .. } if path == &empty),
        "{err}"
    );
    let err = ServerTls::from_pem_files(&pki.cert, &empty).unwrap_err();
    assert!(err.to_string().contains("private key"), "{err}");
    // A key that does not match the certificate.
    let err = ServerTls::from_pem_files(&pki.cert, &dir.path().join("ca.key")).unwrap_err();
    assert!(matches!(err, TlsError::Config(_)), "{err}");
    let err = client_config(Some(&empty)).unwrap_err();
    assert!(err.to_string().contains("CA certificate"), "{err}");
    let missing = dir.path().join("missing.pem");
    assert!(client_config(Some(&missing)).is_err());
}
