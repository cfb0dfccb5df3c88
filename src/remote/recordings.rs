//! Recordings through a broker daemon: the listing, the recorder's public key, downloads
//! (cast and chain into a private directory, to verify and play here) and review sign-offs.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use hyper::Method;

use crate::audit::Event;
use crate::broker::{BrokerError, Result};
use crate::recording::audited::Lookup;
use crate::recording::keys::parse_public_hex;
use crate::recording::list::{RecordingSummary, is_recording_name};
use crate::recording::writer::chain_path_for;
use crate::wire::ErrorKind;
use crate::wire::body::{RecorderKeyReply, ReviewBody};

use super::{NO_BODY, RemoteBroker, enc};

/// A recording downloaded into a private temporary directory, removed when dropped.
#[derive(Debug)]
pub struct Fetched {
    dir: PathBuf,
    /// The cast (its chain file sits next to it).
    pub cast: PathBuf,
}

impl Drop for Fetched {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bad_name(name: &str) -> BrokerError {
    BrokerError::Remote {
        kind: ErrorKind::Input,
        message: format!(
            "{name:?} is not a recording name: with --broker, give the name `sombrero recordings` lists (NAME.cast), not a path"
        ),
    }
}

fn local(what: &str, path: &Path, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Internal(format!("cannot {what} {}: {e}", path.display()))
}

impl RemoteBroker {
    /// The recordings this identity may see, verified by the broker with its own key, with
    /// their sign-offs; `path` is each recording's name.
    pub fn recordings(&self) -> Result<Vec<RecordingSummary>> {
        self.call(Method::GET, "/v1/recordings".into(), NO_BODY)
    }

    /// The public key the broker seals recordings with.
    pub fn recorder_key(&self) -> Result<VerifyingKey> {
        let r: RecorderKeyReply = self.call(Method::GET, "/v1/keys/recorder".into(), NO_BODY)?;
        parse_public_hex(&r.public_key)
            .filter(|_| r.algorithm == "ed25519")
            .ok_or_else(|| BrokerError::Remote {
                kind: ErrorKind::Unavailable,
                message: format!(
                    "the broker's recorder key is not an ed25519 public key ({} {:?})",
                    r.algorithm, r.public_key
                ),
            })
    }

    /// Downloads recording `name` (cast and chain) into `dir`; returns the cast's path. The
    /// chain comes first: a live recording's cast then holds at least what the chain covers,
    /// and verifies as unsealed rather than truncated.
    pub fn download(&self, name: &str, dir: &Path) -> Result<PathBuf> {
        if !is_recording_name(name) {
            return Err(bad_name(name));
        }
        let cast = dir.join(name);
        let base = format!("/v1/recordings/{}", enc(name));
        let chain = self.call_raw(format!("{base}/chain"))?;
        let bytes = self.call_raw(base)?;
        write_new(&chain_path_for(&cast), &chain)?;
        write_new(&cast, &bytes)?;
        Ok(cast)
    }

    /// Downloads recording `name` into a new private temporary directory.
    pub fn fetch(&self, name: &str) -> Result<Fetched> {
        let dir = std::env::temp_dir().join(format!("sombrero-recording-{}", uuid::Uuid::new_v4()));
        crate::config::create_private_dir(&dir).map_err(|e| local("create", &dir, e))?;
        // From here the guard removes the directory on every path.
        let mut fetched = Fetched {
            dir,
            cast: PathBuf::new(),
        };
        fetched.cast = self.download(name, &fetched.dir)?;
        Ok(fetched)
    }

    /// What the broker's audit log says about recording `name` (to cross-check a download).
    pub fn recording_audit(&self, name: &str) -> Result<Lookup> {
        if !is_recording_name(name) {
            return Err(bad_name(name));
        }
        self.call(
            Method::GET,
            format!("/v1/recordings/{}/audit", enc(name)),
            NO_BODY,
        )
    }

    /// Signs off recording `name` as the connection's identity, with its TOTP `code`.
    pub fn review(&self, name: &str, code: &str, comment: &str) -> Result<Event> {
        if !is_recording_name(name) {
            return Err(bad_name(name));
        }
        let body = ReviewBody {
            code: code.to_string(),
            comment: comment.to_string(),
        };
        let path = format!("/v1/recordings/{}/review", enc(name));
        self.call(Method::POST, path, Some(body))
    }
}

/// Writes a new file readable only by this user.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| local("create", path, e))?;
    f.write_all(bytes).map_err(|e| local("write", path, e))
}
