//! Waiting for a stop: the daemon's listeners and workers end when their watch turns true.

use tokio::sync::watch;

/// Returns once `stopping` turns true (or its sender is gone).
pub async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}
