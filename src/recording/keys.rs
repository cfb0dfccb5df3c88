//! The recorder's Ed25519 signing key, kept in `<data dir>/keys/recorder.ed25519` (mode 0600).

use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::RngCore;
use thiserror::Error;

/// File name of the secret key inside the keys directory.
pub const KEY_FILE: &str = "recorder.ed25519";

/// Problems loading or creating the key.
#[derive(Debug, Error)]
pub enum KeyError {
    /// Reading, writing or creating failed.
    #[error("recorder key {path}: {source}")]
    Io {
        /// The key file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file exists but does not hold a key.
    #[error(
        "recorder key {path} is damaged ({reason}); restore it from backup (recordings it sealed cannot be verified without its public key)"
    )]
    Damaged {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key or its directory is not private and cannot be made so.
    #[error("recorder key: {0}")]
    Private(Box<crate::private_fs::PrivateError>),
    /// No key has been created yet.
    #[error("no recorder key in {0}: it is created when the first session is recorded")]
    Missing(PathBuf),
}

/// The recorder's signing key.
pub struct RecorderKey {
    signing: SigningKey,
}

impl std::fmt::Debug for RecorderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecorderKey({})", self.public_hex())
    }
}

impl RecorderKey {
    /// Loads the key from `keys_dir`, creating the directory (0700) and key (0600) on first use.
    pub fn load_or_create(keys_dir: &Path) -> Result<Self, KeyError> {
        let path = keys_dir.join(KEY_FILE);
        match Self::load(keys_dir) {
            Err(KeyError::Missing(_)) => {}
            other => return other,
        }
        crate::config::create_private_dir(keys_dir).map_err(|e| KeyError::Io {
            path: keys_dir.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let signing = SigningKey::from_bytes(&secret);
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        // Whole or not at all, and never over another process's key: racing on first run,
        // the loser uses the winner's.
        if !crate::private_fs::create_whole(&path, hex::encode(secret).as_bytes()).map_err(io)? {
            return Self::load(keys_dir);
        }
        tracing::info!(path = %path.display(), "created recorder key");
        Ok(RecorderKey { signing })
    }

    /// Loads an existing key; [`KeyError::Missing`] if there is none.
    pub fn load(keys_dir: &Path) -> Result<Self, KeyError> {
        let path = keys_dir.join(KEY_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::Missing(keys_dir.to_path_buf()));
            }
            Err(source) => return Err(KeyError::Io { path, source }),
        };
        // Forced private on every open (a copy someone already took is beyond repair; the
        // warning in the log says it happened).
        crate::private_fs::secure_dir(keys_dir)
            .and_then(|()| crate::private_fs::secure_file(&path))
            .map_err(|e| KeyError::Private(Box::new(e)))?;
        let damaged = |reason: &str| KeyError::Damaged {
            path: path.clone(),
            reason: reason.to_string(),
        };
        let bytes = hex::decode(text.trim()).map_err(|_| damaged("not hex"))?;
        let secret: [u8; 32] = bytes.try_into().map_err(|_| damaged("not 32 bytes"))?;
        Ok(RecorderKey {
            signing: SigningKey::from_bytes(&secret),
        })
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public key as 64 hex digits (what `sombrero keys show` prints).
    pub fn public_hex(&self) -> String {
        hex::encode(self.verifying_key().as_bytes())
    }

    /// The signing key (for sealing).
    pub(crate) fn signing(&self) -> &SigningKey {
        &self.signing
    }
}

/// Parses a public key from 64 hex digits.
pub fn parse_public_hex(text: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(text.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_with_private_mode_and_reloaded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        assert!(matches!(RecorderKey::load(&dir), Err(KeyError::Missing(_))));
        let k1 = RecorderKey::load_or_create(&dir).unwrap();
        let k2 = RecorderKey::load_or_create(&dir).unwrap();
        assert_eq!(k1.public_hex(), k2.public_hex());
        let mode = std::fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            parse_public_hex(&k1.public_hex()).unwrap(),
            k1.verifying_key()
        );
    }

    #[test]
    fn makes_a_world_readable_key_private_and_refuses_a_damaged_one() {
        let tmp = tempfile::tempdir().unwrap();
        RecorderKey::load_or_create(tmp.path()).unwrap();
        let path = tmp.path().join(KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        RecorderKey::load(tmp.path()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "zz").unwrap();
        assert!(matches!(
            RecorderKey::load(tmp.path()),
            Err(KeyError::Damaged { .. })
        ));
    }
}
