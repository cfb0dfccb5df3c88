//! Every timer, buffer size and retry bound of the data channel client, in one place.
//!
//! Values follow the official plugin (P `src/config/config.go`) unless a comment says why not.

use std::time::Duration;

/// Smoothed round-trip time before the first measurement.
pub const INITIAL_SRTT: Duration = Duration::from_millis(100);
/// Round-trip variation before the first measurement.
pub const INITIAL_RTTVAR: Duration = Duration::ZERO;
/// Retransmission timeout before the first measurement.
pub const INITIAL_RTO: Duration = Duration::from_millis(200);
/// Upper bound of the retransmission timeout.
pub const MAX_RTO: Duration = Duration::from_secs(1);
/// Lower bound of the variation term `max(MIN_RTO_VAR_TERM, 4 * RTTVAR)`.
pub const MIN_RTO_VAR_TERM: Duration = Duration::from_millis(10);
/// How often unacked input is checked for resending.
pub const RESEND_TICK: Duration = Duration::from_millis(100);
/// Most frames resent on one tick, so a stalled peer does not get a burst of thousands
/// (the service kills sockets above roughly 1000 frames per second).
pub const MAX_RESENDS_PER_TICK: usize = 64;
/// Input unacked for this long means the agent is gone (the plugin gives up after 3000
/// resends at 100 ms, about five minutes).
pub const RESEND_GIVE_UP: Duration = Duration::from_secs(300);
/// Unacked input frames kept; beyond this the client stops reading input (back-pressure)
/// instead of discarding the oldest frame as the plugin does.
pub const MAX_UNACKED: usize = 10_000;
/// Out-of-order output frames buffered; more are dropped unacked so the agent resends them.
pub const MAX_BUFFERED: usize = 10_000;
/// Consecutive frames that fail to decode after which the session is declared unusable.
pub const MAX_CONSECUTIVE_MALFORMED: u32 = 100;
/// Largest input payload per frame.
pub const INPUT_CHUNK: usize = 1024;
/// Most socket messages handled before their acks are flushed in one write.
pub const READ_BATCH: usize = 64;
/// Websocket ping interval after the first `keepalive` ping.
pub const PING_INTERVAL: Duration = Duration::from_secs(300);
/// Payload of every websocket ping.
pub const PING_PAYLOAD: &[u8] = b"keepalive";
/// Websocket dial (TCP + TLS + upgrade) timeout.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(45);
/// Input waiting for an ack while nothing at all arrives from the server for this long means
/// the connection is black-holed (no socket error will ever come): reconnect.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the agent may take to complete the handshake (it gives up itself after 15 s).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Reconnect attempts after a socket loss.
pub const RECONNECT_ATTEMPTS: u32 = 5;
/// First reconnect delay is uniform in `[RECONNECT_BASE, 2 * RECONNECT_BASE)`, then doubles.
pub const RECONNECT_BASE: Duration = Duration::from_millis(100);
/// How long `terminate` waits for the agent to ack the TerminateSession flag before closing.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(2);
/// How long the client keeps reading after `channel_closed` while an exit code may still come
/// or frames wait for a gap to fill (a peer may send its last frames just after closing).
pub const CLOSE_LINGER: Duration = Duration::from_millis(250);
/// Warning given before a grant window closes and its session is terminated.
pub const GRANT_WARNING: Duration = Duration::from_secs(60);
/// Terminal size sent when the caller knows none (the plugin's default without a tty).
pub const DEFAULT_COLS: u32 = 300;
/// Terminal rows sent when the caller knows none.
pub const DEFAULT_ROWS: u32 = 100;
/// Client version reported in the open frame and the handshake response.
pub const CLIENT_VERSION: &str = "1.2.0.0";
/// How long the stdin reader waits for input before checking whether it should stop.
pub const STDIN_POLL: Duration = Duration::from_millis(100);
/// Capacity of the bounded channels that carry terminal bytes.
pub const BYTE_CHANNEL_CAPACITY: usize = 256;
