//! Server-side sessions relayed to the client over a websocket (the relay part fills this).

use axum::Router;

use super::AppState;

/// The relay's routes (none yet: `sombrero open` against a daemon is not served).
pub fn routes() -> Router<AppState> {
    Router::new()
}
