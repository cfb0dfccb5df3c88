//! Integration tests, one binary per area: the fleet adapter against the lab and moto, and the reaper.
//! Fixtures shared by every area live in `tests/common/`.

#[path = "../common/mod.rs"]
mod common;

mod lab;
mod moto;
mod reap;
