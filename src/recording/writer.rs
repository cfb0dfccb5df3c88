//! The recorder: one asciicast v2 file per session plus its chain, flushed at least every
//! second and on every marker, sealed at the end. Every I/O error is returned so the session
//! can be ended (fail closed); after one error the recorder refuses further writes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ed25519_dalek::Signer;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::cast::{EventKind, Header, RecordingMeta, SombreroHeader, format_event};
use super::chain::{self, Chain, ChainRecord, Seal};
use super::commands::{Command, Indexer};
use super::keys::RecorderKey;

/// Longest time buffered events may wait before reaching the file.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Longest time between chain heads handed to the audit log during a session.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(30);
/// Most lines between chain heads handed to the audit log during a session.
pub const CHECKPOINT_LINES: u64 = 1000;
/// Buffered bytes that force a write before the interval is up.
const FLUSH_BYTES: usize = 256 * 1024;

/// Why recording failed (the session must not go on).
#[derive(Debug, Error)]
pub enum RecordingError {
    /// The recordings directory or files could not be created.
    #[error("cannot create recording {path}: {source}; no session may open without a recording")]
    Create {
        /// What could not be created.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Writing the cast or its chain failed.
    #[error("cannot write recording {path}: {source}; the session must end")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A previous write failed, so the recording is incomplete.
    #[error("recording {0} already failed; the session must end")]
    Failed(PathBuf),
    /// The recording was already sealed.
    #[error("recording {0} is sealed; nothing more can be written")]
    Sealed(PathBuf),
}

/// What sealing produced (the audit log records the digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealInfo {
    /// Final chain head, hex.
    pub digest: String,
    /// Lines in the cast, header included.
    pub lines: u64,
    /// The cast file.
    pub path: PathBuf,
}

/// Turns a byte stream into valid UTF-8, carrying an incomplete trailing sequence to the next
/// chunk; bytes that can never be valid become U+FFFD.
#[derive(Debug, Default)]
struct Utf8Carry {
    pending: Vec<u8>,
}

impl Utf8Carry {
    fn decode(&mut self, bytes: &[u8]) -> String {
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(bytes);
        let mut out = String::with_capacity(buf.len());
        let mut rest = buf.as_slice();
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &bad[n..];
                        }
                        None => {
                            // Incomplete sequence at the end: wait for the next chunk.
                            self.pending = bad.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    fn finish(&mut self) -> String {
        if self.pending.is_empty() {
            String::new()
        } else {
            self.pending.clear();
            "\u{FFFD}".to_string()
        }
    }
}

/// An open recording.
#[derive(Debug)]
pub struct Recorder {
    cast_path: PathBuf,
    chain_path: PathBuf,
    cast: File,
    chain_file: File,
    key: SigningKeyRef,
    meta: RecordingMeta,
    chain: Chain,
    /// Hash of every chain-file byte written so far (signed in the seal).
    chain_bytes: Sha256,
    buf: Vec<u8>,
    first_unflushed: u64,
    fingerprints: String,
    start: Instant,
    last_time: f64,
    last_flush: Instant,
    out_utf8: Utf8Carry,
    in_utf8: Utf8Carry,
    state: State,
    /// Lines and chain head as of the last chain record written.
    flushed: (u64, String),
    /// Lines of the last checkpoint handed out, and when.
    checkpointed: (u64, Instant),
    /// The command index kept while writing, when asked for ([`Recorder::index_commands`]).
    live: Option<Indexer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Failed,
    Sealed,
}

/// The signing key, kept by value so the recorder owns what it needs to seal.
struct SigningKeyRef(ed25519_dalek::SigningKey);

impl std::fmt::Debug for SigningKeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// File name for a session: `<UTC time>_<request>_<session>.cast`, ids reduced to safe characters.
pub fn file_name(
    started: chrono::DateTime<chrono::Utc>,
    request_id: &str,
    session_id: &str,
) -> String {
    fn safe(s: &str) -> String {
        let t: String = s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .take(80)
            .collect();
        let t = t.trim_start_matches('.').to_string();
        if t.is_empty() { "unknown".into() } else { t }
    }
    format!(
        "{}_{}_{}.cast",
        started.format("%Y-%m-%dT%H%M%SZ"),
        safe(request_id),
        safe(session_id)
    )
}

/// The chain file that belongs to a cast.
pub fn chain_path_for(cast: &Path) -> PathBuf {
    let mut s = cast.as_os_str().to_os_string();
    s.push(".chain");
    PathBuf::from(s)
}

fn create_file(path: &Path) -> Result<File, RecordingError> {
    // create_new: never append to or clobber an existing recording.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| RecordingError::Create {
            path: path.to_path_buf(),
            source,
        })
}

impl Recorder {
    /// Creates `dir` (0700) if needed and a new recording in it; writes and syncs the header.
    /// Fails if anything cannot be created or written: then no session may open.
    pub fn create(
        dir: &Path,
        meta: RecordingMeta,
        key: &RecorderKey,
    ) -> Result<Self, RecordingError> {
        let started = chrono::Utc::now();
        crate::config::create_private_dir(dir).map_err(|e| RecordingError::Create {
            path: dir.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let cast_path = dir.join(file_name(started, &meta.request_id, &meta.session_id));
        let chain_path = chain_path_for(&cast_path);
        let cast = create_file(&cast_path)?;
        let chain_file = create_file(&chain_path)?;
        let mut rec = Recorder {
            cast_path,
            chain_path,
            cast,
            chain_file,
            key: SigningKeyRef(key.signing().clone()),
            meta,
            chain: Chain::default(),
            chain_bytes: Sha256::new(),
            buf: Vec::new(),
            first_unflushed: 1,
            fingerprints: String::new(),
            start: Instant::now(),
            last_time: 0.0,
            last_flush: Instant::now(),
            out_utf8: Utf8Carry::default(),
            in_utf8: Utf8Carry::default(),
            state: State::Open,
            flushed: (0, String::new()),
            checkpointed: (0, Instant::now()),
            live: None,
        };
        rec.write_chain_record(&ChainRecord::Start {
            version: chain::CHAIN_VERSION,
        })?;
        let header = rec.header(started);
        let line = serde_json::to_string(&header).map_err(|e| RecordingError::Write {
            path: rec.cast_path.clone(),
            source: std::io::Error::other(e),
        })?;
        rec.push_line(&line);
        rec.flush(true)?;
        Ok(rec)
    }

    fn header(&self, started: chrono::DateTime<chrono::Utc>) -> Header {
        let m = &self.meta;
        let mut env = BTreeMap::new();
        env.insert("TERM".to_string(), m.term.clone());
        env.insert("SHELL".to_string(), m.shell.clone());
        Header {
            version: 2,
            width: m.width,
            height: m.height,
            timestamp: Some(started.timestamp()),
            title: Some(m.title.clone()),
            env,
            pink_sombrero: Some(SombreroHeader {
                request_id: m.request_id.clone(),
                requester: m.requester.clone(),
                approvers: m.approvers.clone(),
                target: m.target.clone(),
                reason: m.reason.clone(),
                session_id: m.session_id.clone(),
                started_at: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                recorder: format!("pink-sombrero {}", env!("CARGO_PKG_VERSION")),
            }),
        }
    }

    /// The cast file.
    pub fn path(&self) -> &Path {
        &self.cast_path
    }

    /// The chain file.
    pub fn chain_path(&self) -> &Path {
        &self.chain_path
    }

    /// Records terminal output (any bytes).
    pub fn output(&mut self, bytes: &[u8]) -> Result<(), RecordingError> {
        self.check_open()?;
        let text = self.out_utf8.decode(bytes);
        self.event_text(EventKind::Output, &text)
    }

    /// Records keystrokes sent to the target.
    pub fn input(&mut self, bytes: &[u8]) -> Result<(), RecordingError> {
        self.check_open()?;
        let text = self.in_utf8.decode(bytes);
        self.event_text(EventKind::Input, &text)
    }

    /// From now on, indexes the commands typed as they are recorded (a live session's
    /// risk flags); [`Recorder::take_commands`] hands them out.
    pub fn index_commands(&mut self) {
        self.live.get_or_insert_with(Indexer::new);
    }

    /// The commands submitted since the last call (none unless indexing).
    pub fn take_commands(&mut self) -> Vec<Command> {
        self.live
            .as_mut()
            .map(Indexer::take_submitted)
            .unwrap_or_default()
    }

    /// Records a terminal resize.
    pub fn resize(&mut self, cols: u16, rows: u16) -> Result<(), RecordingError> {
        self.check_open()?;
        self.event_text(EventKind::Resize, &format!("{cols}x{rows}"))
    }

    /// Records a lifecycle marker (approved, tainted, opened, ...) and flushes to disk.
    pub fn marker(&mut self, label: &str) -> Result<(), RecordingError> {
        self.check_open()?;
        self.event_text(EventKind::Marker, label)?;
        self.flush(true)
    }

    /// Writes buffered events if the flush interval has passed; call it at least once a second.
    pub fn tick(&mut self) -> Result<(), RecordingError> {
        self.check_open()?;
        if self.last_flush.elapsed() >= FLUSH_INTERVAL {
            self.flush(true)?;
        }
        Ok(())
    }

    /// The written lines and chain head, when [`CHECKPOINT_INTERVAL`] has passed or
    /// [`CHECKPOINT_LINES`] lines were written since the last one handed out (and something
    /// was): the session puts it in the audit log, so a later cut shows.
    pub fn checkpoint_due(&mut self) -> Option<(u64, String)> {
        let (lines, head) = &self.flushed;
        let (last, at) = self.checkpointed;
        let due = at.elapsed() >= CHECKPOINT_INTERVAL || lines - last >= CHECKPOINT_LINES;
        if *lines <= last || !due {
            return None;
        }
        self.checkpointed = (*lines, Instant::now());
        Some((*lines, head.clone()))
    }

    /// Flushes everything, signs the chain head and closes the recording.
    pub fn seal(mut self) -> Result<SealInfo, RecordingError> {
        self.check_open()?;
        for (kind, rest) in [
            (EventKind::Output, self.out_utf8.finish()),
            (EventKind::Input, self.in_utf8.finish()),
        ] {
            if !rest.is_empty() {
                self.event_text(kind, &rest)?;
            }
        }
        self.flush(false)?;
        let head = hex::encode(self.chain.head());
        let chain_digest = hex::encode(self.chain_bytes.clone().finalize());
        let mut seal = Seal {
            lines: self.chain.lines(),
            head: head.clone(),
            request_id: self.meta.request_id.clone(),
            session_id: self.meta.session_id.clone(),
            chain_digest,
            key: hex::encode(self.key.0.verifying_key().as_bytes()),
            sig: String::new(),
        };
        seal.sig = hex::encode(self.key.0.sign(&chain::seal_message(&seal)).to_bytes());
        self.write_chain_record(&ChainRecord::Seal(seal))?;
        self.sync()?;
        self.state = State::Sealed;
        Ok(SealInfo {
            digest: head,
            lines: self.chain.lines(),
            path: self.cast_path.clone(),
        })
    }

    fn check_open(&self) -> Result<(), RecordingError> {
        match self.state {
            State::Open => Ok(()),
            State::Failed => Err(RecordingError::Failed(self.cast_path.clone())),
            State::Sealed => Err(RecordingError::Sealed(self.cast_path.clone())),
        }
    }

    fn event_text(&mut self, kind: EventKind, text: &str) -> Result<(), RecordingError> {
        if text.is_empty() && kind != EventKind::Marker {
            return Ok(());
        }
        // Instant is monotonic; the max() guards the float formatting from ever going back.
        let t = self.start.elapsed().as_secs_f64().max(self.last_time);
        self.last_time = t;
        let line = format_event(t, kind, text);
        self.push_line(line.trim_end_matches('\n'));
        if let Some(index) = self.live.as_mut() {
            index.push_text(self.chain.lines(), t, kind, text);
        }
        if self.buf.len() >= FLUSH_BYTES {
            self.flush(false)?;
        } else if self.last_flush.elapsed() >= FLUSH_INTERVAL {
            self.flush(true)?;
        }
        Ok(())
    }

    fn push_line(&mut self, line: &str) {
        let fp = self.chain.push(line.as_bytes());
        chain::push_fingerprint_hex(&mut self.fingerprints, fp);
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
    }

    /// Writes buffered lines, then the chain record covering them; `sync` also fsyncs both.
    fn flush(&mut self, sync: bool) -> Result<(), RecordingError> {
        self.last_flush = Instant::now();
        if !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            if let Err(source) = self.cast.write_all(&buf) {
                self.state = State::Failed;
                return Err(RecordingError::Write {
                    path: self.cast_path.clone(),
                    source,
                });
            }
            let record = ChainRecord::Lines {
                from: self.first_unflushed,
                to: self.chain.lines(),
                head: hex::encode(self.chain.head()),
                d: std::mem::take(&mut self.fingerprints),
            };
            self.first_unflushed = self.chain.lines() + 1;
            self.write_chain_record(&record)?;
            self.flushed = (self.chain.lines(), hex::encode(self.chain.head()));
        }
        if sync { self.sync() } else { Ok(()) }
    }

    fn write_chain_record(&mut self, record: &ChainRecord) -> Result<(), RecordingError> {
        let mut line = serde_json::to_vec(record).map_err(|e| RecordingError::Write {
            path: self.chain_path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        if let Err(source) = self.chain_file.write_all(&line) {
            self.state = State::Failed;
            return Err(RecordingError::Write {
                path: self.chain_path.clone(),
                source,
            });
        }
        self.chain_bytes.update(&line);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), RecordingError> {
        for (file, path) in [
            (&self.cast, &self.cast_path),
            (&self.chain_file, &self.chain_path),
        ] {
            if let Err(source) = file.sync_data() {
                self.state = State::Failed;
                return Err(RecordingError::Write {
                    path: path.clone(),
                    source,
                });
            }
        }
        Ok(())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // Not sealed (a crash path or an early return): keep what was recorded; the verifier
        // will report it as unsealed.
        if self.state == State::Open
            && let Err(e) = self.flush(true)
        {
            tracing::warn!(error = %e, "could not flush an unsealed recording");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_index_hands_out_each_submitted_command_once_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let key = RecorderKey::load_or_create(&dir.path().join("keys")).unwrap();
        let meta = RecordingMeta {
            request_id: "req-1".into(),
            requester: "alice".into(),
            approvers: vec!["bob".into(), "carol".into()],
            target: "mi-0123456789abcdef0".into(),
            reason: "disk full".into(),
            session_id: "sess-1".into(),
            width: 80,
            height: 24,
            term: "xterm".into(),
            shell: "/bin/sh".into(),
            title: "t".into(),
        };
        let mut r = Recorder::create(dir.path(), meta, &key).unwrap();
        r.input(b"ls\r").unwrap();
        assert!(r.take_commands().is_empty(), "not indexing until asked");
        r.index_commands();
        r.output(b"$ ").unwrap();
        r.input(b"sudo ").unwrap();
        r.input(b"id\r").unwrap();
        r.input(b"hist").unwrap();
        let got = r.take_commands();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].text, "sudo id");
        // Header, ls, $, "sudo ": the command starts on line 4.
        assert_eq!(got[0].line, 4);
        assert!(r.take_commands().is_empty(), "handed out once");
        r.input(b"ory -c\r").unwrap();
        assert_eq!(r.take_commands()[0].text, "history -c");
    }

    #[test]
    fn utf8_split_across_chunks_is_carried() {
        let mut c = Utf8Carry::default();
        let s = "é€😀";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(1) {
            out.push_str(&c.decode(chunk));
        }
        assert_eq!(out, s);
        assert_eq!(c.finish(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement_chars() {
        let mut c = Utf8Carry::default();
        assert_eq!(c.decode(b"a\xffb"), "a\u{FFFD}b");
        assert_eq!(c.decode(b"\xe2\x82"), "");
        assert_eq!(c.finish(), "\u{FFFD}");
    }

    #[test]
    fn file_names_are_safe() {
        let t = chrono::DateTime::from_timestamp(0, 0).unwrap();
        assert_eq!(
            file_name(t, "../req 1", "s/2"),
            "1970-01-01T000000Z_-req-1_s-2.cast"
        );
    }
}
