//! The TCP listener: TLS only (a plaintext client never gets an HTTP answer), then on every
//! request an AWS IAM identity proof ([`super::sts`]) in the `Authorization` header. The ARN
//! STS returns becomes the request's [`Peer`]; the policy's `[identities]` table then maps it
//! to a sombrero user like any other peer. A proof is bound to the TLS connection it is sent
//! on ([`channel_binding`]), checked with STS once and reused only on that connection, only
//! while it is fresh. Every refused proof counts toward closing the connection, and proof
//! checks are rate-limited per source address ([`ProofRate`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::conn::{accept_until_stopped, drain, serve_http};
use super::error::ApiError;
use super::gate::{Full, Gate, PeerKey, Permit};
use super::identity::{Peer, Via};
use super::proof_rate::ProofRate;
use super::sts::{ConnectionIdentity, Verifier};
use super::tls::ServerTls;
use crate::wire::ErrorKind;
use crate::wire::body::ErrorBody;
use crate::wire::proof::{AUTH_SCHEME, StsError, channel_binding};

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many refused proofs one connection may present (any refusal: bad shape, STS said no,
/// STS unavailable or busy, over the source's rate); the last refusal closes it, so one
/// connection cannot have the broker call STS without end.
pub const MAX_FAILED_PROOFS: u32 = 3;

/// The TCP socket could not be bound.
#[derive(Debug, Error)]
#[error("cannot listen on tcp://{addr}: {source}")]
pub struct BindError {
    /// The address asked for.
    pub addr: String,
    /// The OS error.
    pub source: std::io::Error,
}

/// A bound TCP socket with its TLS configuration and proof verifier.
pub struct TlsSocket {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    verifier: Arc<Verifier>,
    rate: Arc<ProofRate>,
}

impl TlsSocket {
    /// Binds `addr` (`HOST:PORT`).
    pub async fn bind(addr: &str, tls: &ServerTls, verifier: Verifier) -> Result<Self, BindError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| BindError {
            addr: addr.to_string(),
            source,
        })?;
        Ok(TlsSocket {
            listener,
            acceptor: TlsAcceptor::from(tls.config.clone()),
            verifier: Arc::new(verifier),
            rate: Arc::new(ProofRate::default()),
        })
    }

    /// The bound address (the port, when 0 was asked for).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `app` until `stopping` turns true, then lets open requests finish.
    /// Each connection is counted in `gate` against its source address (and, once proved,
    /// its identity); one over a cap is closed at once, before any TLS.
    pub async fn serve(self, app: Router, gate: Arc<Gate>, stopping: watch::Receiver<bool>) {
        let conns = accept_until_stopped(
            || self.listener.accept(),
            |(tcp, addr)| {
                let permit = match gate.admit(PeerKey::Addr(addr.ip())) {
                    Ok(p) => p,
                    Err(full) => {
                        tracing::debug!(%addr, error = %full, "connection refused");
                        return None;
                    }
                };
                let shared = Shared {
                    acceptor: self.acceptor.clone(),
                    verifier: Arc::clone(&self.verifier),
                    rate: Arc::clone(&self.rate),
                    gate: Arc::clone(&gate),
                };
                let serve = connection(tcp, addr, shared, app.clone(), stopping.clone());
                Some(async move {
                    serve.await;
                    drop(permit);
                })
            },
            stopping.clone(),
        )
        .await;
        drop(self);
        drain(conns).await;
    }
}

/// What every connection of one listener shares.
struct Shared {
    acceptor: TlsAcceptor,
    verifier: Arc<Verifier>,
    rate: Arc<ProofRate>,
    gate: Arc<Gate>,
}

/// One connection: the TLS handshake (in its own task, so a slow client stalls nobody else),
/// then HTTP with the proof check in front of `app`.
async fn connection(
    tcp: TcpStream,
    addr: SocketAddr,
    shared: Shared,
    app: Router,
    stopping: watch::Receiver<bool>,
) {
    let Shared {
        acceptor,
        verifier,
        rate,
        gate,
    } = shared;
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%addr, "TLS handshake timed out");
            return;
        }
    };
    let binding = match channel_binding(&**tls.get_ref().1) {
        Ok(binding) => binding,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "no channel binding; connection closed");
            return;
        }
    };
    let proof = ProofCheck {
        verifier,
        rate,
        connection: Arc::new(ConnectionIdentity::new(binding)),
        failures: Arc::new(AtomicU32::new(0)),
        addr,
        gate,
        counted: Arc::default(),
    };
    let app = app.layer(axum::middleware::from_fn_with_state(proof, require_proof));
    serve_http(tls, app, stopping).await;
}

/// One connection's proof state.
#[derive(Clone)]
struct ProofCheck {
    verifier: Arc<Verifier>,
    rate: Arc<ProofRate>,
    connection: Arc<ConnectionIdentity>,
    /// Proofs refused on this connection so far.
    failures: Arc<AtomicU32>,
    addr: SocketAddr,
    gate: Arc<Gate>,
    /// This connection's place under its proved identity's cap, once it has one.
    counted: Arc<Mutex<Option<Permit>>>,
}

impl ProofCheck {
    /// Counts this connection under `arn` (once); false when that identity holds its cap.
    fn count_as(&self, arn: &str) -> Result<(), Full> {
        let mut counted = self.counted.lock().unwrap_or_else(|p| p.into_inner());
        if counted.is_none() {
            *counted = Some(self.gate.also(PeerKey::Iam(arn.to_string()))?);
        }
        Ok(())
    }
}

/// Middleware: the request's proof must name an identity STS confirms; that identity becomes
/// the request's [`Peer`]. The proof itself is not passed on.
async fn require_proof(State(check): State<ProofCheck>, mut req: Request, next: Next) -> Response {
    let header = req.headers_mut().remove(header::AUTHORIZATION);
    let header = match header.as_ref().map(HeaderValue::to_str) {
        None => None,
        Some(Ok(h)) => Some(h),
        Some(Err(_)) => {
            return refusal(StsError::Rejected(
                "the Authorization header is not text".into(),
            ));
        }
    };
    // A proof this connection already proved costs nothing; any other is a check to pay for,
    // and takes one of its source's few places while STS answers.
    let mut place = None;
    let limited = !check.connection.is_cached(header).await && {
        place = check.rate.begin(check.addr.ip());
        place.is_none()
    };
    let resolved = if limited {
        Err(StsError::Limited(check.addr.ip().to_string()))
    } else {
        check.connection.resolve(header, &check.verifier).await
    };
    drop(place);
    match resolved {
        Ok(caller) => {
            if let Err(full) = check.count_as(&caller.arn) {
                tracing::warn!(addr = %check.addr, arn = caller.arn, error = %full, "connection refused");
                let mut response =
                    ApiError::new(ErrorKind::Unavailable, full.to_string()).into_response();
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return response;
            }
            tracing::debug!(addr = %check.addr, arn = caller.arn, "IAM identity");
            req.extensions_mut().insert(Peer {
                external: caller.arn,
                via: Via::Iam,
            });
            next.run(req).await
        }
        Err(e) => {
            if limited {
                tracing::debug!(addr = %check.addr, "proof check over the source's rate");
            } else {
                tracing::warn!(addr = %check.addr, error = %e, "identity proof refused");
            }
            // Every refusal counts, STS being unavailable too: a client whose proofs make
            // STS busy or fail is the one that pays for it.
            let mut response = refusal(e);
            if check.failures.fetch_add(1, Ordering::Relaxed) + 1 >= MAX_FAILED_PROOFS {
                tracing::warn!(addr = %check.addr, "too many refused proofs; closing the connection");
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    }
}

/// 503 when STS is unavailable (try again later), 429 over the rate; otherwise 401, asking
/// for a proof.
fn refusal(e: StsError) -> Response {
    if e.status() == 503 {
        return ApiError::new(ErrorKind::Unavailable, e.to_string()).into_response();
    }
    if e.status() == 429 {
        let body = ErrorBody::new(ErrorKind::Unavailable, e.to_string());
        return (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    }
    let body = ErrorBody::new(ErrorKind::Identity, e.to_string());
    let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(AUTH_SCHEME),
    );
    response
}
