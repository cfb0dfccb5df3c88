//! The Session Manager data channel: a pure codec, a pure session core, and the websocket client.
//!
//! - [`codec`]: bytes <-> `ClientMessage` frames (golden vectors in its tests).
//! - [`payload`]: the JSON payloads inside frames.
//! - [`session`]: sequencing, acks, resends, reordering, handshake and session end as a pure
//!   state machine (`now` passed in, effects returned as data); every constant in [`limits`].
//! - [`client`]: the websocket task that drives a session, signs the upgrade and reconnects
//!   through ResumeSession.
//! - [`terminal`]: bridges a session to the local terminal for `sombrero open`.
//! - [`grant`]: terminates a session when its grant window closes.
//!
//! Opening a session after StartSession (the fleet supplies `ClientOptions` with signing and
//! resume, e.g. `AwsFleet::channel_options`):
//!
//! ```no_run
//! # use pink_sombrero::channel::{client, terminal, grant};
//! # async fn demo(stream_url: String, token: String, session_id: String,
//! #     options: client::ClientOptions, grant_end: tokio::time::Instant)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! let options = client::ClientOptions { initial_size: terminal::local_size(), ..options };
//! let target = client::SessionTarget { stream_url, token, session_id };
//! let (handle, events) = client::connect(target, options).await?;
//! tokio::spawn(grant::enforce_grant(handle.clone(), grant_end, |left| {
//!     eprint!("\r\n[sombrero] the grant ends in {}s\r\n", left.as_secs());
//! }));
//! let end = terminal::bridge_stdio(handle, events, |_out| {}, |_in| {}).await?;
//! // end.exit_code: the remote shell's status when the agent reported it.
//! # Ok(()) }
//! ```

pub mod client;
pub mod codec;
pub mod grant;
pub mod limits;
pub mod payload;
pub mod pump;
pub mod session;
pub mod terminal;
