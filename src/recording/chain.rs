//! The integrity record kept next to each cast: `<name>.cast.chain`, JSON lines.
//!
//! Every cast line `L_i` (without its newline) gets a digest `d_i = SHA256(L_i)` and the chain
//! advances `h_i = SHA256(h_{i-1} || d_i)` from `h_0 = SHA256("pink-sombrero recording chain v1")`.
//! Hashing the line's digest rather than the line keeps it one pass over the data while each
//! line also gets its own fingerprint, which is what lets the verifier say *which* line was
//! edited, deleted, inserted or moved rather than only "something changed".
//!
//! Records (one per line, `type` tagged):
//! - `start`: format version.
//! - `lines`: written with every flush of the cast: the 1-based range `from..=to`, the chain
//!   head `h_to`, and `d`: the first 6 bytes of each line digest, hex, concatenated.
//! - `seal`: written once at the end: line count, final head, ids, `chain_digest` (SHA-256 of
//!   every chain byte before the seal line, so the line fingerprints are signed too), the public
//!   key and an Ed25519 signature over [`seal_message`].

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Chain format version.
pub const CHAIN_VERSION: u32 = 1;
/// Bytes of each line digest kept in `lines` records (for locating a change, not for proof).
pub const FINGERPRINT_BYTES: usize = 6;
/// Domain separation for the seal signature.
const SEAL_DOMAIN: &[u8] = b"pink-sombrero recording seal v1\0";

/// A 32-byte SHA-256 value.
pub type Hash = [u8; 32];

/// One line of the chain file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChainRecord {
    /// First line.
    Start {
        /// [`CHAIN_VERSION`].
        version: u32,
    },
    /// Lines `from..=to` of the cast.
    Lines {
        /// First line covered (1-based; line 1 is the header).
        from: u64,
        /// Last line covered.
        to: u64,
        /// Chain head after line `to`, hex.
        head: String,
        /// Fingerprints of lines `from..=to`, 12 hex digits each.
        d: String,
    },
    /// The end of the recording.
    Seal(Seal),
}

/// The signed end of a recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    /// Lines in the cast.
    pub lines: u64,
    /// Final chain head, hex: the recording's digest.
    pub head: String,
    /// The request.
    pub request_id: String,
    /// The session.
    pub session_id: String,
    /// SHA-256 of the chain file's bytes before this line, hex.
    pub chain_digest: String,
    /// The recorder's public key, hex.
    pub key: String,
    /// Ed25519 signature over [`seal_message`], hex.
    pub sig: String,
}

/// The bytes the seal signature covers.
pub fn seal_message(seal: &Seal) -> Vec<u8> {
    let mut m = SEAL_DOMAIN.to_vec();
    for field in [
        seal.lines.to_string().as_str(),
        &seal.head,
        &seal.request_id,
        &seal.session_id,
        &seal.chain_digest,
        &seal.key,
    ] {
        // Length-prefixed so no two field lists produce the same bytes.
        m.extend_from_slice(&(field.len() as u64).to_be_bytes());
        m.extend_from_slice(field.as_bytes());
    }
    m
}

/// `h_0`.
pub fn genesis() -> Hash {
    Sha256::digest(b"pink-sombrero recording chain v1").into()
}

/// The running chain over cast lines.
#[derive(Debug, Clone)]
pub struct Chain {
    head: Hash,
    lines: u64,
}

impl Default for Chain {
    fn default() -> Self {
        Chain {
            head: genesis(),
            lines: 0,
        }
    }
}

impl Chain {
    /// Adds one line (without its newline); returns the line's fingerprint.
    pub fn push(&mut self, line: &[u8]) -> u64 {
        let d: Hash = Sha256::digest(line).into();
        let mut h = Sha256::new();
        h.update(self.head);
        h.update(d);
        self.head = h.finalize().into();
        self.lines += 1;
        fingerprint(&d)
    }

    /// The head after the last line.
    pub fn head(&self) -> Hash {
        self.head
    }

    /// Lines pushed.
    pub fn lines(&self) -> u64 {
        self.lines
    }
}

/// The first [`FINGERPRINT_BYTES`] of a digest as an integer.
fn fingerprint(d: &Hash) -> u64 {
    let mut b = [0u8; 8];
    b[8 - FINGERPRINT_BYTES..].copy_from_slice(&d[..FINGERPRINT_BYTES]);
    u64::from_be_bytes(b)
}

/// Appends a fingerprint as 12 hex digits.
pub fn push_fingerprint_hex(out: &mut String, fp: u64) {
    use std::fmt::Write;
    let _ = write!(out, "{fp:012x}");
}

/// Parses a `d` field back into fingerprints.
pub fn parse_fingerprints(d: &str) -> Option<Vec<u64>> {
    let w = FINGERPRINT_BYTES * 2;
    if !d.len().is_multiple_of(w) || !d.is_ascii() {
        return None;
    }
    (0..d.len() / w)
        .map(|i| u64::from_str_radix(&d[i * w..(i + 1) * w], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_depends_on_order_and_content() {
        let mut a = Chain::default();
        a.push(b"x");
        a.push(b"y");
        let mut b = Chain::default();
        b.push(b"y");
        b.push(b"x");
        assert_ne!(a.head(), b.head());
        let mut c = Chain::default();
        c.push(b"x");
        c.push(b"y");
        assert_eq!(a.head(), c.head());
    }

    #[test]
    fn fingerprints_round_trip() {
        let mut c = Chain::default();
        let fps = [c.push(b"a"), c.push(b"b")];
        let mut s = String::new();
        for fp in fps {
            push_fingerprint_hex(&mut s, fp);
        }
        assert_eq!(parse_fingerprints(&s).unwrap(), fps);
        assert!(parse_fingerprints("abc").is_none());
    }

    #[test]
    fn seal_message_is_unambiguous() {
        let s = |a: &str, b: &str| Seal {
            lines: 1,
            head: String::new(),
            request_id: a.into(),
            session_id: b.into(),
            chain_digest: String::new(),
            key: String::new(),
            sig: String::new(),
        };
        assert_ne!(seal_message(&s("ab", "c")), seal_message(&s("a", "bc")));
    }
}
