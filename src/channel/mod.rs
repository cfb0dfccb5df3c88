//! The Session Manager data channel: a pure codec and the websocket client.

pub mod codec;
pub mod payload;
