//! Integration tests, one binary per area: the terminal UI: views (insta snapshots), update flow, the driver and a real pty.
//! Fixtures shared by every area live in `tests/common/`.

#[path = "../common/mod.rs"]
mod common;

mod broker;
mod driver;
mod flow;
mod pty;
mod views;
