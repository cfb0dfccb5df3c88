//! Transports to the daemon: anything that yields a byte stream per connection.

use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OnceCell;

use crate::config::AwsOptions;
use crate::wire::proof::{ClientProofs, ProofSigner, channel_binding};
use crate::wire::tls::client_config;

/// A byte stream to the daemon.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + std::any::Any {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A TLS connection to the daemon, as [`TlsConnector`] opens it.
type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A boxed byte stream.
pub type BoxIo = Box<dyn Io>;

/// Opens connections to the daemon (kept alive and reused: see [`super::pool`]). The daemon learns who the caller is from
/// the connection itself: peer credentials on a Unix socket, the IAM proof over TLS.
pub trait Connector: Send + Sync {
    /// Opens one connection.
    fn connect(&self) -> BoxFuture<'static, std::io::Result<BoxIo>>;
    /// The `Host` header for requests on it.
    fn host(&self) -> String;
    /// The channel binding of `io` (a connection this connector opened), when the transport
    /// binds identity proofs to connections (TLS); `Err` when it should and cannot.
    fn binding(&self, io: &BoxIo) -> Result<Option<String>, String> {
        let _ = io;
        Ok(None)
    }
    /// The `Authorization` header for requests on the connection whose [`Connector::binding`]
    /// is `binding`, when the transport needs one (the IAM identity proof over TLS); `Err`
    /// says why none could be made.
    fn authorization<'a>(
        &'a self,
        binding: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        let _ = binding;
        Box::pin(async { Ok(None) })
    }
}

/// A Unix socket.
#[derive(Debug, Clone)]
pub struct UnixConnector {
    path: PathBuf,
}

impl UnixConnector {
    /// The socket at `path`.
    pub fn new(path: PathBuf) -> UnixConnector {
        UnixConnector { path }
    }
}

impl Connector for UnixConnector {
    fn connect(&self) -> BoxFuture<'static, std::io::Result<BoxIo>> {
        let path = self.path.clone();
        Box::pin(async move {
            let s = tokio::net::UnixStream::connect(&path).await?;
            Ok(Box::new(s) as BoxIo)
        })
    }

    fn host(&self) -> String {
        "sombrero.sock".to_string()
    }
}

/// TLS over TCP to `HOST:PORT`, trusting the `--ca` file (else the webpki roots), each
/// request carrying an identity proof signed with the client's own AWS credentials and bound
/// to HOST, the name the certificate was checked against, and to the TLS connection itself.
pub struct TlsConnector {
    addr: String,
    name: ServerName<'static>,
    tls: tokio_rustls::TlsConnector,
    aws: AwsOptions,
    proofs: OnceCell<ClientProofs>,
}

impl TlsConnector {
    /// A connector to `addr` (`HOST:PORT`); `g` gives `--ca`, `--profile` and `--region`.
    pub fn new(addr: &str, g: &AwsOptions) -> Result<TlsConnector, String> {
        let host = addr
            .rsplit_once(':')
            .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
            .ok_or_else(|| format!("{addr} is not HOST:PORT"))?;
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host} is not a host name or address: {e}"))?;
        let tls = client_config(g.ca.as_deref()).map_err(|e| e.to_string())?;
        Ok(TlsConnector {
            addr: addr.to_string(),
            name,
            tls: tokio_rustls::TlsConnector::from(tls),
            aws: g.clone(),
            proofs: OnceCell::new(),
        })
    }

    /// A connector to `addr` trusting `ca` whose proofs `signer` makes (instead of the AWS
    /// credentials `--profile` selects).
    pub fn with_signer(
        addr: &str,
        ca: Option<&Path>,
        signer: ProofSigner,
    ) -> Result<TlsConnector, String> {
        let g = AwsOptions {
            ca: ca.map(Path::to_path_buf),
            ..AwsOptions::default()
        };
        let c = TlsConnector::new(addr, &g)?;
        let proofs = ClientProofs::new(signer, &c.server_id());
        c.proofs
            .set(proofs)
            .map_err(|_| "the proof signer is already set".to_string())?;
        Ok(c)
    }

    /// The name proofs are bound to: the host the certificate was checked against.
    fn server_id(&self) -> String {
        self.name.to_str().into_owned()
    }
}

impl Connector for TlsConnector {
    fn connect(&self) -> BoxFuture<'static, std::io::Result<BoxIo>> {
        let (addr, name, tls) = (self.addr.clone(), self.name.clone(), self.tls.clone());
        Box::pin(async move {
            let tcp = tokio::net::TcpStream::connect(&addr).await?;
            let _ = tcp.set_nodelay(true);
            Ok(Box::new(tls.connect(name, tcp).await?) as BoxIo)
        })
    }

    fn host(&self) -> String {
        self.addr.clone()
    }

    fn binding(&self, io: &BoxIo) -> Result<Option<String>, String> {
        let tls = (&**io as &dyn std::any::Any)
            .downcast_ref::<TlsStream>()
            .ok_or("the connection is not a TLS connection this connector opened")?;
        channel_binding(&**tls.get_ref().1)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    fn authorization<'a>(
        &'a self,
        binding: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            let binding = binding.ok_or("no channel binding for this TLS connection")?;
            // Credentials load on first use, inside the client's runtime.
            let proofs = self
                .proofs
                .get_or_try_init(|| async {
                    let sdk = self.aws.aws_config().await;
                    let signer = ProofSigner::from_sdk(&sdk).map_err(|e| e.to_string())?;
                    Ok::<_, String>(ClientProofs::new(signer, &self.server_id()))
                })
                .await?;
            proofs
                .header(binding)
                .await
                .map(Some)
                .map_err(|e| e.to_string())
        })
    }
}
