//! The Unix socket listener: the peer's OS user (SO_PEERCRED) is the identity.
//!
//! The socket is created mode 0660: its group is who may talk to the broker (put the
//! engineers' group on the socket's directory with setgid, or `chgrp` it). It is bound under
//! a temporary name, given its mode, then renamed into place, so no client ever reaches it
//! with looser permissions.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use thiserror::Error;
use tokio::net::UnixListener;
use tokio::sync::watch;

use super::conn::{accept_until_stopped, drain, serve_connection};
use super::gate::{Gate, PeerKey, refusal_bytes};
use super::identity::{self, Via};

/// Mode of the socket file.
pub const SOCKET_MODE: u32 = 0o660;

/// Problems setting up the socket.
#[derive(Debug, Error)]
pub enum ListenError {
    /// Another process answers on the socket.
    #[error("another broker is listening on {0}: stop it first, or pick another --listen path")]
    InUse(PathBuf),
    /// Something that is not a socket is in the way.
    #[error("{0} exists and is not a socket: move it away or pick another --listen path")]
    NotASocket(PathBuf),
    /// The OS refused.
    #[error("cannot listen on {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A bound socket that removes its file when dropped.
pub struct UnixSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl UnixSocket {
    /// Binds `path` with mode 0660. A socket file left by a broker that died is replaced;
    /// one a live broker answers on is not.
    pub async fn bind(path: &Path) -> Result<UnixSocket, ListenError> {
        let io = |source| ListenError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if !m.file_type().is_socket() => {
                return Err(ListenError::NotASocket(path.to_path_buf()));
            }
            Ok(_) => match tokio::net::UnixStream::connect(path).await {
                Ok(_) => return Err(ListenError::InUse(path.to_path_buf())),
                Err(_) => {
                    tracing::info!(path = %path.display(), "removing a stale socket");
                    std::fs::remove_file(path).map_err(io)?;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let tmp = path.with_file_name(format!(
            ".{}.{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp).map_err(io)?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(SOCKET_MODE))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        Ok(UnixSocket {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Serves `app` until `stopping` turns true, then lets open requests finish (at most
    /// [`super::conn::DRAIN`]) and removes the socket file.
    /// Each connection is counted in `gate` against its uid; one over a cap is answered
    /// 503 at once and closed.
    pub async fn serve(self, app: Router, gate: Arc<Gate>, stopping: watch::Receiver<bool>) {
        let conns = accept_until_stopped(
            || self.listener.accept(),
            |(stream, _)| match identity::unix_peer(&stream) {
                Ok(peer) => {
                    let Via::Unix { uid } = peer.via else {
                        return None;
                    };
                    let permit = match gate.admit(PeerKey::Uid(uid)) {
                        Ok(p) => p,
                        Err(full) => {
                            tracing::debug!(uid, error = %full, "connection refused");
                            let _ = stream.try_write(&refusal_bytes(&full));
                            return None;
                        }
                    };
                    let serve = serve_connection(stream, peer, app.clone(), stopping.clone());
                    Some(async move {
                        serve.await;
                        drop(permit);
                    })
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no peer credentials; connection dropped");
                    None
                }
            },
            stopping.clone(),
        )
        .await;
        // Nobody new can connect once the file is gone.
        drop(self);
        drain(conns).await;
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove the socket");
        }
    }
}
