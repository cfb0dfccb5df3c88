//! Connections, any transport: the accept loop every listener runs, HTTP/1.1 (with upgrades,
//! for websockets) on each connection as a known peer, and the drain at shutdown.

use std::future::Future;
use std::time::Duration;

use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::identity::Peer;
use super::stopped;

/// How long open connections get to finish their request at shutdown.
pub const DRAIN: Duration = Duration::from_secs(5);
/// How long a client has to send a request's headers, counted from when the connection is
/// ready for one: a client that stalls mid-request (or keeps a connection idle) longer is cut
/// off, so slow clients cannot hold connections open. Clients reuse idle connections for less
/// ([`crate::remote::pool::REUSE_FOR`]).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(15);

/// Serves `app` on one connection as `peer`: the peer goes into every request's extensions,
/// where the identity check finds it. Any transport (a TLS stream too) can be served this way.
/// When `stopping` turns true the connection finishes its request in flight and closes.
pub fn serve_connection<I>(
    io: I,
    peer: Peer,
    app: Router,
    stopping: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_http(io, app.layer(Extension(peer)), stopping)
}

/// Serves `app` as HTTP/1.1 (kept alive, with upgrades, headers due within
/// [`HEADER_READ_TIMEOUT`]) on one connection until it closes or `stopping` turns true; `app` must itself put a [`Peer`] on each request (see [`serve_connection`];
/// the TCP listener's proof check does it per request).
pub fn serve_http<I>(
    io: I,
    app: Router,
    mut stopping: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    async move {
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(true)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            () = stopped(&mut stopping) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }
}

/// Accepts connections until `stopping` turns true, each served by the task `handle` makes
/// for it (`None`: dropped); returns the connections still open, for [`drain`].
pub async fn accept_until_stopped<C, A, T>(
    mut accept: impl FnMut() -> A,
    mut handle: impl FnMut(C) -> Option<T>,
    mut stopping: watch::Receiver<bool>,
) -> JoinSet<()>
where
    A: Future<Output = std::io::Result<C>>,
    T: Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = accept() => match accepted {
                Ok(conn) => {
                    if let Some(task) = handle(conn) {
                        conns.spawn(task);
                    }
                }
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            // Reap finished connections so the set does not grow.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            () = stopped(&mut stopping) => return conns,
        }
    }
}

/// Lets open connections finish their request (at most [`DRAIN`]), then closes the rest.
pub async fn drain(mut conns: JoinSet<()>) {
    let finished = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN, finished).await.is_err() {
        tracing::warn!("connections still open after the drain period; closing them");
        conns.abort_all();
    }
}
