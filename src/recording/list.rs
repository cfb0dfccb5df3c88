//! Listing the recordings in a directory with their metadata and integrity verdict.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use super::cast::{SombreroHeader, parse_event, parse_header};
use super::commands::index_reader;
use super::flags::{FlagCounts, FlagRule, apply, rules_key};
use super::verify::{Integrity, verify};
use crate::private_fs::open_regular;

/// One recording as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordingSummary {
    /// The cast file.
    pub path: PathBuf,
    /// Our header metadata (absent in casts from other tools).
    pub meta: Option<SombreroHeader>,
    /// Unix start time from the header.
    pub timestamp: Option<i64>,
    /// Seconds from the start to the last event.
    pub duration: f64,
    /// Size of the cast in bytes.
    pub size: u64,
    /// The verdict.
    pub integrity: Integrity,
    /// Sign-offs bound to this recording's digest (filled from the audit log by the caller).
    pub reviews: Vec<Review>,
    /// Its flagged commands by severity (filled by [`ListCache::attach_flags`]; absent when
    /// not counted or the file could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<FlagCounts>,
}

/// A reviewer's sign-off, as recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// Who signed off.
    pub reviewer: String,
    /// When, RFC 3339.
    pub at: String,
    /// What they concluded.
    pub note: String,
}

/// Lists `*.cast` in `dir`, oldest first; verifies each against `key` when there is one.
/// A missing directory is an empty list.
pub fn list(dir: &Path, key: Option<&VerifyingKey>) -> std::io::Result<Vec<RecordingSummary>> {
    Ok(cast_paths(dir)?
        .into_iter()
        .map(|p| summarize(&p, key))
        .collect())
}

/// Remembers summaries so a listing repeated on every change (the TUI's) re-verifies only the
/// recordings whose cast or chain file changed since the last look.
#[derive(Debug, Default)]
pub struct ListCache {
    seen: std::collections::HashMap<PathBuf, (Fingerprint, RecordingSummary)>,
    /// Flag counts by file, with the fingerprint and the rules they were counted under.
    flags: std::collections::HashMap<PathBuf, (Fingerprint, u64, FlagCounts)>,
}

/// Inode, size and inode change time of a cast and its chain file. The change time (ctime),
/// unlike mtime, cannot be set back from user space, so restoring a file's size and mtime
/// after editing it does not make the cache skip verification.
type Fingerprint = [(u64, u64, i64, i64); 2];

fn fingerprint(cast: &Path) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    let of = |p: &Path| {
        std::fs::metadata(p).map_or((0, 0, 0, 0), |m| {
            (m.ino(), m.size(), m.ctime(), m.ctime_nsec())
        })
    };
    [
        of(cast),
        of(&crate::recording::writer::chain_path_for(cast)),
    ]
}

impl ListCache {
    /// Like [`list`], verifying again only what changed (and forgetting what is gone).
    pub fn list(
        &mut self,
        dir: &Path,
        key: Option<&VerifyingKey>,
    ) -> std::io::Result<Vec<RecordingSummary>> {
        let paths = cast_paths(dir)?;
        self.seen.retain(|p, _| paths.contains(p));
        Ok(paths
            .into_iter()
            .map(|p| {
                let now = fingerprint(&p);
                match self.seen.get(&p) {
                    Some((was, summary)) if *was == now => summary.clone(),
                    _ => {
                        let summary = summarize(&p, key);
                        self.seen.insert(p, (now, summary.clone()));
                        summary
                    }
                }
            })
            .collect())
    }
}

impl ListCache {
    /// Fills each listed recording's flag counts under `rules`, indexing again only a file that
    /// changed or was counted under other rules.
    pub fn attach_flags(&mut self, all: &mut [RecordingSummary], rules: &[FlagRule]) {
        let key = rules_key(rules);
        self.flags.retain(|p, _| all.iter().any(|r| &r.path == p));
        for r in all.iter_mut() {
            let now = fingerprint(&r.path);
            r.flags = match self.flags.get(&r.path) {
                Some((was, k, counts)) if *was == now && *k == key => Some(*counts),
                _ => match count_flags(&r.path, rules) {
                    Ok(counts) => {
                        self.flags.insert(r.path.clone(), (now, key, counts));
                        Some(counts)
                    }
                    Err(e) => {
                        tracing::debug!(path = %r.path.display(), error = %e, "flags not counted");
                        None
                    }
                },
            };
        }
    }
}

/// The flagged commands of the cast at `path` (a regular file only), counted as a stream.
fn count_flags(path: &Path, rules: &[FlagRule]) -> std::io::Result<FlagCounts> {
    let f = open_regular(path)?;
    let commands = index_reader(std::io::BufReader::with_capacity(1 << 20, f))?;
    Ok(FlagCounts::of(&apply(commands, rules)))
}

/// True for a bare recording name (`NAME.cast`: no directory part, not hidden), the only
/// form a broker daemon's clients may ask for.
pub fn is_recording_name(name: &str) -> bool {
    name.len() > ".cast".len()
        && name.len() <= 255
        && name.ends_with(".cast")
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
}

/// The recording `name` in `dir`: only a name the listing knows, and only a regular file (a
/// symlink planted in the directory is not followed).
pub fn find(dir: &Path, name: &str) -> std::io::Result<Option<PathBuf>> {
    if !is_recording_name(name) {
        return Ok(None);
    }
    Ok(cast_paths(dir)?
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == name))
        .filter(|p| is_regular(p)))
}

/// True for a regular file that is not a symlink.
pub fn is_regular(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

/// The `*.cast` files in `dir`, oldest first; none when the directory does not exist.
fn cast_paths(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    // Regular files only (the entry's own type: a symlink is not followed); the readers
    // open with [`crate::private_fs::open_regular`] anyway.
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cast"))
        .collect();
    // Names start with the UTC start time, so name order is time order.
    paths.sort();
    Ok(paths)
}

/// Summarizes one recording.
pub fn summarize(path: &Path, key: Option<&VerifyingKey>) -> RecordingSummary {
    let header = first_line(path).and_then(|l| parse_header(&l).ok());
    let integrity = match key {
        Some(k) => verify(path, k).integrity,
        None => Integrity::Unverified {
            reason: "no recorder key in the data dir".into(),
        },
    };
    RecordingSummary {
        path: path.to_path_buf(),
        meta: header.as_ref().and_then(|h| h.pink_sombrero.clone()),
        timestamp: header.as_ref().and_then(|h| h.timestamp),
        duration: last_event_time(path).unwrap_or(0.0),
        size: std::fs::symlink_metadata(path).map_or(0, |m| m.len()),
        integrity,
        reviews: Vec::new(),
        flags: None,
    }
}

fn first_line(path: &Path) -> Option<String> {
    let mut buf = Vec::new();
    open_regular(path)
        .ok()?
        .take(1 << 20)
        .read_to_end(&mut buf)
        .ok()?;
    let line = buf.split(|b| *b == b'\n').next()?;
    String::from_utf8(line.to_vec()).ok()
}

/// Time of the last complete event, read from the file's tail only.
fn last_event_time(path: &Path) -> Option<f64> {
    const TAIL: u64 = 256 * 1024;
    let mut f = open_regular(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(TAIL))).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    buf.split(|b| *b == b'\n')
        .rev()
        .filter_map(|l| std::str::from_utf8(l).ok())
        .find_map(|l| parse_event(l, 0).ok())
        .map(|e| e.time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bare_cast_names_are_recording_names() {
        assert!(is_recording_name("20260101T000000Z_req-1_s.cast"));
        for bad in [
            "",
            ".cast",
            "../x.cast",
            "a/b.cast",
            "..%2Fx.cast\\",
            ".hidden.cast",
            "x.cast.chain",
            "x.txt",
            "x\0.cast",
        ] {
            assert!(!is_recording_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn find_knows_only_listed_regular_casts() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a.cast"), "{}\n").unwrap();
        std::fs::write(tmp.path().join("notes.txt"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", tmp.path().join("l.cast")).unwrap();
        assert!(find(tmp.path(), "a.cast").unwrap().is_some());
        assert!(find(tmp.path(), "l.cast").unwrap().is_none());
        assert!(find(tmp.path(), "notes.txt").unwrap().is_none());
        assert!(find(tmp.path(), "b.cast").unwrap().is_none());
    }
}
