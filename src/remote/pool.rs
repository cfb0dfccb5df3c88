//! Kept-alive connections to the daemon: calls reuse an idle HTTP/1.1 connection instead of
//! opening one each (over TLS a new one costs a handshake and an STS round trip on the broker).
//!
//! A pooled connection may have died while idle (the daemon closes idle connections after its
//! header-read timeout, or restarted). A request hyper hands back unsent is sent again on a fresh
//! connection whatever its method; one that broke after it was written is sent again only when
//! it is a GET. Anything else may or may not have been applied, and the caller is told so.
//!
//! Over TLS each request carries an identity proof bound to the connection it is sent on, so
//! the pool adds the `Authorization` header itself, per connection ([`Connector::binding`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;

use super::Connector;

/// The most idle connections kept per client.
pub const MAX_IDLE: usize = 4;
/// An idle connection is reused only this long: well under the daemon's header-read timeout
/// ([`crate::serve::conn::HEADER_READ_TIMEOUT`]), after which the daemon closes it.
pub const REUSE_FOR: Duration = Duration::from_secs(10);

type Sender = SendRequest<Full<Bytes>>;

/// One kept connection: its sender and its channel binding (None on a Unix socket).
struct Conn {
    sender: Sender,
    binding: Option<String>,
}

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened (nothing was sent).
    Connect(String),
    /// The connection broke after the request was written: it may have been applied.
    Unknown(String),
    /// No identity proof could be made for the connection (nothing was sent).
    Identity(String),
}

/// Idle connections to one daemon.
pub struct Pool {
    connector: Arc<dyn Connector>,
    idle: Mutex<Vec<(Conn, Instant)>>,
}

/// A connection with a request in flight; give it back with [`Pool::put`] once the response
/// body has been read.
pub struct Lease(Conn);

impl Pool {
    /// An empty pool opening connections with `connector`.
    pub fn new(connector: Arc<dyn Connector>) -> Pool {
        Pool {
            connector,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends `req` on an idle connection if one is alive, else on a new one (see the module
    /// docs for when it is sent twice).
    pub async fn send(
        &self,
        req: &Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        let get = req.method() == Method::GET;
        while let Some(mut conn) = self.take_idle() {
            // An error here means the connection closed before anything was written.
            if conn.sender.ready().await.is_err() {
                continue;
            }
            let req = self.authorized(req, &conn).await?;
            match conn.sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, Lease(conn))),
                // Handed back unsent: try the next connection.
                Err(e) if e.message().is_some() => continue,
                Err(e) if get => {
                    tracing::debug!(error = %e.error(), "a kept-alive connection broke; retrying the GET on a new one");
                    break;
                }
                Err(e) => return Err(SendError::Unknown(e.error().to_string())),
            }
        }
        let mut conn = self.open().await?;
        let req = self.authorized(req, &conn).await?;
        match conn.sender.try_send_request(req).await {
            Ok(resp) => Ok((resp, Lease(conn))),
            Err(e) if e.message().is_some() || get => {
                Err(SendError::Connect(e.error().to_string()))
            }
            Err(e) => Err(SendError::Unknown(e.error().to_string())),
        }
    }

    /// A copy of `req` carrying the identity proof for `conn`, when the transport needs one.
    async fn authorized(
        &self,
        req: &Request<Full<Bytes>>,
        conn: &Conn,
    ) -> Result<Request<Full<Bytes>>, SendError> {
        let mut req = req.clone();
        let proof = self
            .connector
            .authorization(conn.binding.as_deref())
            .await
            .map_err(SendError::Identity)?;
        if let Some(proof) = proof {
            let value = proof.parse().map_err(|_| {
                SendError::Identity("the identity proof is not a valid header".into())
            })?;
            req.headers_mut()
                .insert(hyper::header::AUTHORIZATION, value);
        }
        Ok(req)
    }

    /// Returns a connection whose response has been read in full.
    pub fn put(&self, lease: Lease) {
        if lease.0.sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((lease.0, Instant::now()));
        }
    }

    /// The most recently used idle connection still worth trying.
    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((conn, since)) = idle.pop() {
            if !conn.sender.is_closed() && since.elapsed() < REUSE_FOR {
                return Some(conn);
            }
        }
        None
    }

    async fn open(&self) -> Result<Conn, SendError> {
        let io = self
            .connector
            .connect()
            .await
            .map_err(|e| SendError::Connect(e.to_string()))?;
        let binding = self.connector.binding(&io).map_err(SendError::Identity)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| SendError::Connect(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "broker connection ended with an error");
            }
        });
        Ok(Conn { sender, binding })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::UnixConnector;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";

    /// Reads one request head (these requests have empty bodies).
    async fn read_head(s: &mut tokio::net::UnixStream) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).await.unwrap(), 1, "the client hung up");
            head.push(byte[0]);
        }
    }

    /// A peer whose first connection answers one request, then reads a second and hangs up
    /// without answering (a daemon dying mid-request); later connections answer everything.
    /// Returns the socket path and the count of connections accepted.
    fn flaky_peer(dir: &std::path::Path) -> (std::path::PathBuf, Arc<AtomicUsize>) {
        let path = dir.join("flaky.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let first = count.fetch_add(1, Ordering::SeqCst) == 0;
                tokio::spawn(async move {
                    read_head(&mut s).await;
                    s.write_all(OK).await.unwrap();
                    read_head(&mut s).await;
                    if !first {
                        s.write_all(OK).await.unwrap();
                    }
                });
            }
        });
        (path, accepted)
    }

    fn request(method: Method) -> Request<Full<Bytes>> {
        Request::builder()
            .method(method)
            .uri("/v1/x")
            .header("host", "x")
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    async fn call(pool: &Pool, method: Method) -> Result<(), SendError> {
        use http_body_util::BodyExt;
        let (resp, lease) = pool.send(&request(method)).await?;
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap();
        pool.put(lease);
        Ok(())
    }

    #[tokio::test]
    async fn a_get_broken_after_sending_is_retried_once_on_a_new_connection() {
        let dir = tempfile::tempdir().unwrap();
        let (path, accepted) = flaky_peer(dir.path());
        let pool = Pool::new(Arc::new(UnixConnector::new(path)));
        call(&pool, Method::GET).await.unwrap();
        call(&pool, Method::GET).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_post_broken_after_sending_is_not_sent_again() {
        let dir = tempfile::tempdir().unwrap();
        let (path, accepted) = flaky_peer(dir.path());
        let pool = Pool::new(Arc::new(UnixConnector::new(path)));
        call(&pool, Method::GET).await.unwrap();
        let e = call(&pool, Method::POST).await.unwrap_err();
        assert!(matches!(e, SendError::Unknown(_)), "{e:?}");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "the POST was sent again"
        );
    }
}
