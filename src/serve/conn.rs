//! One connection, any transport: HTTP/1.1 (with upgrades, for websockets) as a known peer.

use std::future::Future;

use axum::{Extension, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::identity::Peer;
use super::stopped;

/// Serves `app` on one connection as `peer`: the peer goes into every request's extensions,
/// where the identity check finds it. Any transport (a TLS stream too) can be served this way.
/// When `stopping` turns true the connection finishes its request in flight and closes.
pub fn serve_connection<I>(
    io: I,
    peer: Peer,
    app: Router,
    mut stopping: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app.layer(Extension(peer)));
    async move {
        let conn = hyper::server::conn::http1::Builder::new()
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
