//! `sombrero serve`: the broker as a daemon.

pub mod hub;
pub mod session_wire;
