//! Integration tests, one binary per area: whole break-glass sessions against the lab, and killing them.
//! Fixtures shared by every area live in `tests/common/`.

#[path = "../common/mod.rs"]
mod common;

mod kill;
mod lab;
