//! The policy as the broker last read it, kept while the file stays as it was.
//!
//! Every broker call asks for the policy, and a daemon answers many calls a second; reading
//! the file each time is the cost this saves. The key is the file's length, modification
//! time and inode. A file modified within [`SETTLE`] of being read is read again on the next
//! call (a same-length edit in the same tick of a coarse clock would otherwise keep the same
//! key), so an edit always applies by the next call.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::policy::{Policy, PolicyError};

/// How long after its last change a file must have been read before its key is trusted.
const SETTLE: Duration = Duration::from_secs(2);

/// What identifies one version of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    len: u64,
    modified: SystemTime,
    inode: u64,
}

impl Key {
    fn of(meta: &std::fs::Metadata) -> Option<Key> {
        Some(Key {
            len: meta.len(),
            modified: meta.modified().ok()?,
            inode: inode(meta),
        })
    }
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// The last policy parsed, with the key of the file it came from.
#[derive(Default)]
pub(super) struct PolicyCache(Mutex<Option<(Key, Policy)>>);

impl PolicyCache {
    /// The policy at `path`: the cached one while the file's key is unchanged and settled,
    /// otherwise read and parsed again. A read or parse error is returned (and forgets the
    /// cached policy), exactly as an uncached read would.
    pub(super) fn load(&self, path: &Path) -> Result<Policy, PolicyError> {
        let key = std::fs::metadata(path).ok().as_ref().and_then(Key::of);
        let mut cached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(key), Some((k, policy))) = (&key, cached.as_ref())
            && k == key
        {
            return Ok(policy.clone());
        }
        *cached = None;
        let read_at = SystemTime::now();
        let policy = Policy::load(path)?;
        if let Some(key) = key
            && key.modified + SETTLE < read_at
        {
            *cached = Some((key, policy.clone()));
        }
        Ok(policy)
    }
}
