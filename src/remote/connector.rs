//! Transports to the daemon: anything that yields a byte stream per connection.

use std::path::PathBuf;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream to the daemon.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A boxed byte stream.
pub type BoxIo = Box<dyn Io>;

/// Opens connections to the daemon (one per call). The daemon learns who the caller is from
/// the connection itself: peer credentials on a Unix socket, the IAM proof over TLS.
pub trait Connector: Send + Sync {
    /// Opens one connection.
    fn connect(&self) -> BoxFuture<'static, std::io::Result<BoxIo>>;
    /// The `Host` header for requests on it.
    fn host(&self) -> String;
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
