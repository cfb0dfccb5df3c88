//! Clients of a remote broker (`--broker URL`).

pub mod session;
