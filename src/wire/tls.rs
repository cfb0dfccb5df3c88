//! TLS configuration both sides build on: the client side trusting a PEM CA file, or the
//! webpki roots when none is given; the crypto provider (aws-lc-rs, the one the AWS SDK and
//! the data channel already use) and PEM reading the server side shares.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
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
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_err(path, &format!("cannot read certificates ({e})")))
}

pub(crate) fn pem_err(path: &Path, message: &str) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}
