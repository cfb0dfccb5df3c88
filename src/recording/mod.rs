//! Session recordings: asciicast v2 files with a signed SHA-256 chain, a verifier and a player.
//!
//! - [`writer::Recorder`] writes `<dir>/<UTC time>_<request>_<session>.cast` plus its
//!   companion `.cast.chain` (see [`chain`] for the format) and seals it with the recorder key.
//! - [`verify::verify`] proves a recording intact or names the first wrong line.
//! - [`player::Player`] is the pure replay model (clock passed in, keyframes for seeking);
//!   [`view`] draws it with ratatui and tui-term, with a command pane ([`pane`]) listing the
//!   commands typed and their risk flags.

pub mod audited;
pub mod cast;
pub mod chain;
pub mod commands;
pub mod flags;
pub mod keys;
pub mod list;
pub mod live_flags;
pub mod location;
pub mod pane;
mod pane_view;
pub mod plain_output;
pub mod player;
pub mod transcript;
pub mod verify;
pub mod view;
pub mod writer;

pub use cast::{Event, EventKind, Header, RecordingMeta};
pub use keys::RecorderKey;
pub use location::recordings_dir;
pub use verify::{Integrity, VerifyReport, verify};
pub use writer::{Recorder, RecordingError, SealInfo};
