//! Integration tests, one binary per area: the Session Manager data channel: client, bridge, terminal, against a scripted peer and the lab.
//! Fixtures shared by every area live in `tests/common/`.

#[path = "../common/mod.rs"]
mod common;

mod bridge;
mod client;
mod lab;
mod tty;
