//! What the client ([`crate::remote`]) and the daemon ([`crate::serve`]) share, and nothing
//! else: the kinds of error, the broker's address, the API's JSON bodies, the session
//! websocket's frames, the identity a connection acts as, the IAM identity proof and the TLS
//! client config. Both sides import this module; it imports neither.

pub mod body;
pub mod endpoint;
pub mod error;
pub mod identity;
pub mod proof;
pub mod session;
pub mod tls;

pub use endpoint::Endpoint;
pub use error::ErrorKind;
