//! pink-sombrero: break-glass access for immutable infrastructure.
//!
//! Dependency direction: front ends (`cli`, `tui`, `remote`, `serve`) -> `workflows` ->
//! `session`, `api` -> `broker` -> adapters (`fleet`, `store`) -> rules (`policy`,
//! `recording`, `config`) -> shared types (`wire`, `request`, `channel`, ...). The whole map
//! is ARCHITECTURE.md; tests/foundation/layering.rs keeps it true.

#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod api;
pub mod audit;
pub mod backend;
pub mod broker;
pub mod channel;
pub mod checkpoint;
pub mod cli;
pub mod command_line;
pub mod config;
pub mod fleet;
pub mod lab;
pub mod logfile;
pub mod mfa;
pub mod notify;
pub mod outbox;
pub mod policy;
pub mod policy_file;
pub mod private_fs;
pub mod recording;
pub mod refusals;
pub mod remote;
pub mod request;
pub mod review;
pub mod review_queue;
pub mod serve;
pub mod session;
pub mod shutdown;
pub mod store;
pub mod text;
pub mod tui;
pub mod wire;
pub mod workflows;
