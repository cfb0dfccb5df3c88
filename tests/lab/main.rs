//! Integration tests, one binary per area: the SSM lab: its API model, its CLI, the SDK client against it and its data channel.
//! Fixtures shared by every area live in `tests/common/`.

#[path = "../common/mod.rs"]
mod common;

mod api;
mod cli;
mod client;
mod datachannel;
mod model;
