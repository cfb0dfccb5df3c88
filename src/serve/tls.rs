//! TLS for the broker's TCP listener (rustls): the server side from a PEM certificate chain and
//! key, the client side trusting a PEM CA file, or the webpki roots when none is given. The
//! crypto provider is aws-lc-rs, the one the AWS SDK and the data channel already use. There
//! is no plaintext TCP mode.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use thiserror::Error;

/// Errors loading certificates or keys, or building a TLS config.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the certificate, key or CA.
    #[error("TLS configuration refused: {0}")]
    Config(#[from] rustls::Error),
}

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

/// A client config trusting the CAs in `ca` (PEM), or the webpki roots when `None`.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = read_certs(path)?;
            if certs.is_empty() {
                return Err(pem_err(
                    path,
                    "no CERTIFICATE block: give the CA certificate in PEM",
                ));
            }
            for cert in certs {
                roots.add(cert)?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // No ALPN: HTTP/1.1 is the default, and hyper-rustls sets its own.
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// aws-lc-rs, named explicitly so no process-wide default has to be installed.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_err(path, &format!("cannot read certificates ({e})")))
}

fn pem_err(path: &Path, message: &str) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}
