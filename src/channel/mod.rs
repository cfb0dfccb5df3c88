//! The Session Manager data channel: a pure codec, a pure session core, and the websocket client.

pub mod client;
pub mod codec;
pub mod grant;
pub mod limits;
pub mod payload;
pub mod session;
pub mod terminal;
