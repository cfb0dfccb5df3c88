//! Session recordings.
