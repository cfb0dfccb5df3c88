//! TLS for the broker's TCP listener (rustls): the server side from a PEM certificate chain and
//! key (the client side is [`crate::wire::tls`]). There is no plaintext TCP mode.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

pub use crate::wire::tls::TlsError;
use crate::wire::tls::{pem_err, provider, read_certs};

/// The server side: the rustls config and the leaf certificate it presents.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// What the acceptor uses.
    pub config: Arc<ServerConfig>,
    leaf: CertificateDer<'static>,
}

impl ServerTls {
    /// Loads the certificate chain (leaf first) and the private key from PEM files.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let chain = read_certs(cert)?;
        let Some(leaf) = chain.first().cloned() else {
            return Err(pem_err(
                cert,
                "no CERTIFICATE block: give the server certificate chain, leaf first",
            ));
        };
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| pem_err(key, &format!("no usable private key ({e})")))?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        // The API and its websockets are HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
            leaf,
        })
    }

    /// Whether the presented certificate carries a wildcard DNS name (`*.example.com`).
    pub fn has_wildcard_name(&self) -> bool {
        der_has_wildcard_dns_name(self.leaf.as_ref())
    }

    /// Whether the presented certificate is valid for `name` (a DNS name or an IP address):
    /// the names a client can reach this broker by, and so bind an identity proof to.
    pub fn certifies(&self, name: &str) -> bool {
        let Ok(server_name) = ServerName::try_from(name) else {
            return false;
        };
        webpki::EndEntityCert::try_from(&self.leaf)
            .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&server_name).is_ok())
    }
}

/// Whether a DER certificate names a wildcard DNS name: a subjectAltName dNSName (context tag
/// `[2]`, `0x82`) whose text starts with `*`. A scan of the DER rather than a parse: a false
/// match (those bytes inside a key or signature) can only make the broker demand
/// `--server-id`, which is the safe side.
fn der_has_wildcard_dns_name(der: &[u8]) -> bool {
    der.windows(3).enumerate().any(|(i, w)| {
        let len = usize::from(w[1]);
        w[0] == 0x82
            && w[2] == b'*'
            && (2..0x80).contains(&len)
            && der.get(i + 2..i + 2 + len).is_some_and(|name| {
                name.iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'*' | b'.' | b'-'))
            })
    })
}
