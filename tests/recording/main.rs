//! Integration tests, one binary per area: session recordings: writer, verifier, player, viewer, review and their failure modes.
//! Fixtures shared by every area live in `tests/common/`.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod failures;
mod integrity;
mod player;
mod replay_pty;
mod review;
mod view;
