//! `sombrero serve`: the broker as a daemon.

pub mod sts;
pub mod tls;
pub mod tcp;
