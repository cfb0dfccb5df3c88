//! Owner-only files and directories: the data dir, keys dir and recordings dir are forced to
//! 0700 and the database (with its `-wal`/`-shm`), keys and checkpoint files to 0600 every time
//! they are opened, whatever the umask or a pre-existing `mkdir -m 755` made them. Anything
//! owned by another user is refused: its owner could read or swap the secrets, and chmod
//! cannot fix that. Recordings are read through [`open_regular`]: regular files only.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Mode of private directories.
pub const DIR_MODE: u32 = 0o700;
/// Mode of private files.
pub const FILE_MODE: u32 = 0o600;

/// A path that cannot be made private.
#[derive(Debug, Error)]
pub enum PrivateError {
    /// Another user owns it.
    #[error(
        "{path} is owned by uid {owner}, not by this user (uid {me}): its owner could read or replace the secrets in it; run `chown {me} {path}` as root (or `chown -R` for a directory), or use another --data-dir"
    )]
    NotOwned {
        /// The path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        me: u32,
    },
    /// Its mode lets others in and cannot be changed.
    #[error(
        "{path} has mode {mode:o}, open to other users, and cannot be changed ({source}); run `chmod {want:o} {path}`"
    )]
    Mode {
        /// The path.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
        /// The mode it needs.
        want: u32,
        /// Why chmod failed.
        source: std::io::Error,
    },
    /// It is not what it should be (a file where a directory belongs, or the reverse).
    #[error("{path} should be a {want}; move it away")]
    WrongType {
        /// The path.
        path: PathBuf,
        /// `directory` or `regular file`.
        want: &'static str,
    },
    /// It could not be inspected.
    #[error("cannot inspect {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Forces an existing `path` to `want` after checking its owner and type; `Ok(false)` when it
/// does not exist.
fn force(path: &Path, want: u32, dir: bool) -> Result<bool, PrivateError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(PrivateError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if meta.is_dir() != dir || !(dir || meta.is_file()) {
        return Err(PrivateError::WrongType {
            path: path.to_path_buf(),
            want: if dir { "directory" } else { "regular file" },
        });
    }
    let me = effective_uid();
    if meta.uid() != me {
        return Err(PrivateError::NotOwned {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode != want {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(want)).map_err(
            |source| PrivateError::Mode {
                path: path.to_path_buf(),
                mode,
                want,
                source,
            },
        )?;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "was open to other users; now private");
        }
    }
    Ok(true)
}

/// Checks and forces an existing directory to 0700 (nothing when it does not exist).
pub fn secure_dir(path: &Path) -> Result<(), PrivateError> {
    force(path, DIR_MODE, true).map(|_| ())
}

/// Checks and forces an existing file to 0600 (nothing when it does not exist).
pub fn secure_file(path: &Path) -> Result<(), PrivateError> {
    force(path, FILE_MODE, false).map(|_| ())
}

/// Creates `path` (and parents, 0700) if needed, then checks and forces it to 0700.
pub fn ensure_dir(path: &Path) -> Result<(), PrivateError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(|source| PrivateError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    secure_dir(path)
}

/// The SQLite database and the `-wal`/`-shm` files beside it.
pub fn database_files(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut s = db.as_os_str().to_os_string();
        s.push(suffix);
        PathBuf::from(s)
    };
    [db.to_path_buf(), with("-wal"), with("-shm")]
}

/// Forces the database and its `-wal`/`-shm` (those that exist) to 0600.
pub fn secure_database(db: &Path) -> Result<(), PrivateError> {
    database_files(db).iter().try_for_each(|p| secure_file(p))
}

/// Creates `path` (mode 0600) holding `contents`, whole or not at all: written and synced
/// under a temporary name in the same directory, then linked into place. `Ok(false)` when
/// `path` already exists (another process made it first: use theirs, never overwrite it);
/// a reader never sees it half written.
pub fn create_whole(path: &Path, contents: &[u8]) -> std::io::Result<bool> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.{}.{:x}.tmp",
        name.unwrap_or_default(),
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&tmp)
        .and_then(|mut f| f.write_all(contents).and_then(|()| f.sync_all()));
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Opens `path` for reading only if it is a regular file: opened without following a
/// symlink and without blocking (a FIFO or device planted under a recording's name would
/// otherwise hang the reader), then checked on the open descriptor, so a file swapped in
/// between a check and the open is refused too.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)?;
    if !f.metadata()?.file_type().is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_whole_once_by_racing_threads_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let winners: Vec<bool> = std::thread::scope(|s| {
            let racers: Vec<_> = (0..16)
                .map(|i| {
                    let path = &path;
                    s.spawn(move || create_whole(path, format!("key-{i:02}").as_bytes()).unwrap())
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert_eq!(winners.iter().filter(|w| **w).count(), 1, "{winners:?}");
        let kept = std::fs::read_to_string(&path).unwrap();
        assert!(kept.starts_with("key-") && kept.len() == 6, "{kept:?}");
        assert_eq!(mode(&path), FILE_MODE);
        assert!(!create_whole(&path, b"other").unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), kept);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "temporary files left behind");
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn open_dirs_and_files_are_made_private() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("d");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_dir(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        let f = d.join("sombrero.db");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        secure_database(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        assert!(matches!(
            secure_dir(&f),
            Err(PrivateError::WrongType { .. })
        ));
        ensure_dir(&d.join("a/b")).unwrap();
        assert_eq!(mode(&d.join("a")), 0o700);
    }

    #[test]
    fn another_owner_is_refused() {
        if effective_uid() != 0 {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("k");
        std::fs::write(&f, "x").unwrap();
        std::os::unix::fs::chown(&f, Some(12345), None).unwrap();
        let e = secure_file(&f).unwrap_err();
        assert!(e.to_string().contains("owned by uid 12345"), "{e}");
    }
}
