//! Signed audit checkpoints, kept outside the store.
//!
//! After every commit that moved the audit chain, the broker signs the chain head (`seq`,
//! `hash`, signing time) with its own Ed25519 key, `<keys dir>/audit.ed25519` (0600, never in
//! the store), and appends it as one JSON line to `<keys dir>/audit.checkpoints` (0600). Someone
//! who can write the store but not the keys dir can then neither cut the chain's tail (the
//! newest checkpoint names a later seq) nor rewrite it and recompute every hash (the signed
//! hashes no longer match): [`check`] says which. What it cannot stop is someone who can also
//! write the keys dir: see README, "What the audit log proves".

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier, VerifyingKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::audit::{ChainBreak, Event, GENESIS};
use crate::private_fs::{self, PrivateError};

/// The signing key's file in the keys dir.
pub const KEY_FILE: &str = "audit.ed25519";
/// The checkpoint file beside it.
pub const CHECKPOINT_FILE: &str = "audit.checkpoints";
/// Domain separation for checkpoint signatures.
const DOMAIN: &[u8] = b"pink-sombrero audit checkpoint v1\0";
/// Longest checkpoint line read back (a real one is about 300 bytes).
const MAX_LINE: usize = 4096;

/// One signed chain head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last event's seq (0: the chain was empty).
    pub seq: u64,
    /// Its hash, hex ([`GENESIS`] for an empty chain).
    pub hash: String,
    /// When it was signed, RFC 3339 UTC.
    pub at: String,
    /// The signer's public key, hex.
    pub key: String,
    /// Ed25519 over [`message`], hex.
    pub sig: String,
}

/// The bytes a checkpoint's signature covers (length-prefixed fields).
pub fn message(c: &Checkpoint) -> Vec<u8> {
    let mut m = DOMAIN.to_vec();
    for field in [c.seq.to_string().as_str(), &c.hash, &c.at, &c.key] {
        m.extend_from_slice(&(field.len() as u64).to_be_bytes());
        m.extend_from_slice(field.as_bytes());
    }
    m
}

/// Problems with the key or the checkpoint file.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// Reading or writing failed.
    #[error("audit checkpoints {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The key file does not hold a key.
    #[error("audit key {0} is damaged; restore it from a backup")]
    Damaged(PathBuf),
    /// The key or file is not private.
    #[error(transparent)]
    Private(#[from] PrivateError),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The broker's checkpoint signer.
pub struct CheckpointSigner {
    key: SigningKey,
    file: PathBuf,
    /// The newest seq this process signed, so a commit that did not move the chain signs
    /// nothing.
    last: Mutex<Option<u64>>,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointSigner({})", self.file.display())
    }
}

fn read_key(path: &Path) -> Result<Option<SigningKey>, CheckpointError> {
    private_fs::secure_file(path)?;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| CheckpointError::Damaged(path.to_path_buf()))?;
    Ok(Some(SigningKey::from_bytes(&bytes)))
}

impl CheckpointSigner {
    /// Loads the key from `keys_dir` (forcing it, the directory and the checkpoint file
    /// private), creating it on first use; `head` gives the chain head to sign when the key is
    /// new, so a chain that existed before the key is anchored from then on.
    pub fn open(
        keys_dir: &Path,
        head: impl FnOnce() -> Option<(u64, String)>,
    ) -> Result<Self, CheckpointError> {
        private_fs::ensure_dir(keys_dir)?;
        let key_path = keys_dir.join(KEY_FILE);
        let file = keys_dir.join(CHECKPOINT_FILE);
        private_fs::secure_file(&file)?;
        let (key, created) = match read_key(&key_path)? {
            Some(k) => (k, false),
            None => {
                let mut secret = [0u8; 32];
                rand::rng().fill_bytes(&mut secret);
                // Whole or not at all: a process racing us on first run reads a complete key.
                match private_fs::create_whole(&key_path, hex::encode(secret).as_bytes()) {
                    Ok(true) => (SigningKey::from_bytes(&secret), true),
                    // Another process made it first: use theirs.
                    Ok(false) => (
                        read_key(&key_path)?
                            .ok_or_else(|| CheckpointError::Damaged(key_path.clone()))?,
                        false,
                    ),
                    Err(e) => return Err(io(&key_path)(e)),
                }
            }
        };
        let signer = CheckpointSigner {
            key,
            file,
            last: Mutex::new(None),
        };
        if created {
            let (seq, hash) = head().unwrap_or((0, GENESIS.to_string()));
            tracing::warn!(
                seq,
                "created the audit checkpoint key; the chain is anchored from here"
            );
            signer.sign(seq, &hash)?;
        }
        Ok(signer)
    }

    /// The public key.
    pub fn public(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs `(seq, hash)` and appends it, unless this process signed that seq already.
    pub fn sign(&self, seq: u64, hash: &str) -> Result<(), CheckpointError> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if *last == Some(seq) {
            return Ok(());
        }
        let mut c = Checkpoint {
            seq,
            hash: hash.to_string(),
            at: Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
            key: hex::encode(self.public().as_bytes()),
            sig: String::new(),
        };
        c.sig = hex::encode(self.key.sign(&message(&c)).to_bytes());
        let mut line = serde_json::to_vec(&c).map_err(|e| io(&self.file)(e.into()))?;
        line.push(b'\n');
        // O_APPEND and one write: lines from several processes do not interleave.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(private_fs::FILE_MODE)
            .open(&self.file)
            .map_err(io(&self.file))?;
        f.write_all(&line).map_err(io(&self.file))?;
        *last = Some(seq);
        Ok(())
    }
}

/// Reads and checks every checkpoint in `keys_dir` against the key there. `Ok(None)`: no key
/// (nothing was ever signed here).
pub fn read(
    keys_dir: &Path,
) -> Result<Option<Result<Vec<Checkpoint>, ChainBreak>>, CheckpointError> {
    let Some(key) = read_key(&keys_dir.join(KEY_FILE))? else {
        return Ok(None);
    };
    let public = key.verifying_key();
    let file = keys_dir.join(CHECKPOINT_FILE);
    let text = match std::fs::read(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(&file)(e)),
    };
    Ok(Some(parse(&text, &public, &file)))
}

fn parse(text: &[u8], public: &VerifyingKey, file: &Path) -> Result<Vec<Checkpoint>, ChainBreak> {
    let bad = |line: usize, why: &str| ChainBreak::Checkpoint {
        reason: format!("{} line {line}: {why}", file.display()),
    };
    let ours = hex::encode(public.as_bytes());
    let mut out = Vec::new();
    let mut lines = text.split_inclusive(|b| *b == b'\n').enumerate().peekable();
    while let Some((i, raw)) = lines.next() {
        let n = i + 1;
        if !raw.ends_with(b"\n") && lines.peek().is_none() {
            // A line cut by a crash mid-write can only be the last one; it was never whole.
            break;
        }
        if raw.len() > MAX_LINE {
            return Err(bad(n, "longer than any checkpoint"));
        }
        let c: Checkpoint =
            serde_json::from_slice(raw).map_err(|_| bad(n, "not a checkpoint (edited?)"))?;
        if c.key != ours {
            return Err(bad(n, "signed by another key than this broker's audit key"));
        }
        let sig = hex::decode(&c.sig)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b));
        if sig.is_none_or(|s| public.verify(&message(&c), &s).is_err()) {
            return Err(bad(n, "bad signature (the line was forged or edited)"));
        }
        out.push(c);
    }
    if out.is_empty() {
        return Err(ChainBreak::Checkpoint {
            reason: format!(
                "{} holds no signed checkpoint although the audit key exists (emptied or deleted?)",
                file.display()
            ),
        });
    }
    Ok(out)
}

/// The newest (highest seq) checkpoint.
pub fn newest(all: &[Checkpoint]) -> Option<&Checkpoint> {
    all.iter().max_by_key(|c| c.seq)
}

/// Checks a chain that holds by itself (see [`crate::audit::verify`]) against the signed
/// checkpoints: it must reach the newest, and every signed hash must still be there.
pub fn check(events: &[Event], all: &[Checkpoint]) -> Result<(), ChainBreak> {
    let last = events.last().map_or(0, |e| e.seq);
    if let Some(n) = newest(all)
        && n.seq > last
    {
        return Err(ChainBreak::Cut {
            last,
            signed: n.seq,
        });
    }
    let hash_at = |seq: u64| -> &str {
        if seq == 0 {
            return GENESIS;
        }
        // The chain holds, so event `seq` sits at index seq - 1.
        events
            .get(seq as usize - 1)
            .map_or("", |e: &Event| e.hash.as_str())
    };
    let mut sorted: Vec<&Checkpoint> = all.iter().collect();
    sorted.sort_by_key(|c| c.seq);
    let mut good = 0;
    for c in sorted {
        if hash_at(c.seq) != c.hash {
            return Err(ChainBreak::Forged {
                first: good + 1,
                last: c.seq,
            });
        }
        good = c.seq;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{EventKind, NewEvent};

    fn chain(n: u64) -> Vec<Event> {
        let mut out: Vec<Event> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|e| (e.seq, e.hash.as_str()));
            let new = NewEvent::new("a", EventKind::Tainted, None, serde_json::json!({"i": i}));
            out.push(Event::chain(prev, new, Utc::now()));
        }
        out
    }

    #[test]
    fn signs_on_creation_and_per_head_and_checks_cut_and_rechain() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let c = chain(5);
        let s = CheckpointSigner::open(&dir, || Some((2, c[1].hash.clone()))).unwrap();
        s.sign(4, &c[3].hash).unwrap();
        s.sign(4, &c[3].hash).unwrap();
        let all = read(&dir).unwrap().unwrap().unwrap();
        assert_eq!(all.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![2, 4]);
        check(&c, &all).unwrap();
        assert_eq!(
            check(&c[..3], &all),
            Err(ChainBreak::Cut { last: 3, signed: 4 })
        );
        let mut forged = chain(5);
        forged[0] = c[0].clone();
        forged[1] = c[1].clone();
        assert_eq!(
            check(&forged, &all),
            Err(ChainBreak::Forged { first: 3, last: 4 })
        );
        // An edited line fails its signature.
        let path = dir.join(CHECKPOINT_FILE);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"seq\":4", "\"seq\":3");
        std::fs::write(&path, text).unwrap();
        assert!(matches!(
            read(&dir).unwrap().unwrap(),
            Err(ChainBreak::Checkpoint { .. })
        ));
    }
}
