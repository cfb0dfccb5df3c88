//! Integration tests, one binary per area: the daemon: Unix socket and TLS listeners, identity proofs, the hub, sessions, recordings and the fleet through it.
//! Fixtures shared by every area live in `tests/common/`.

#[path = "../common/mod.rs"]
mod common;

mod daemon;
mod dynamo;
mod fleet;
mod hub;
mod keepalive;
mod notify;
mod recordings;
mod session;
mod sts;
mod tcp;
mod tls;
