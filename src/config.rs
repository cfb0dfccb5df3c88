//! Where things live on disk (XDG data dir unless `--data-dir`), the AWS selection, the
//! config file's keys and the log file.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// A config file key could not be read.
#[derive(Debug, Error)]
#[error("config file {path}: {message}")]
pub struct ConfigFileError {
    /// The config file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

/// The string value of `key` in the config file (`config`: `--config`, else `config.toml` in
/// the data dir) with the file's path, or `None` when the file or the key is absent.
pub fn config_string(
    config: Option<&Path>,
    paths: &Paths,
    key: &str,
) -> Result<Option<(String, PathBuf)>, ConfigFileError> {
    let file = config.map_or_else(|| paths.config(), Path::to_path_buf);
    let err = |message: String| ConfigFileError {
        path: file.clone(),
        message,
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    let table: toml::Table = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::String(v)) => Ok(Some((v.clone(), file))),
        Some(_) => Err(err(format!("{key}: must be a string"))),
    }
}

/// Which AWS account, region and endpoints this process uses, and the CA a TLS broker's
/// certificate is checked against: resolved once from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsOptions {
    /// The named profile (else the default chain).
    pub profile: Option<String>,
    /// The region (else the default chain's).
    pub region: Option<String>,
    /// The SSM endpoint (a lab or an emulator).
    pub endpoint_url: Option<String>,
    /// The CA certificate (PEM) that signed a TCP broker's certificate.
    pub ca: Option<PathBuf>,
}

impl AwsOptions {
    /// The AWS SDK config: the default chain with the profile and region applied.
    pub async fn aws_config(&self) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(p) = &self.profile {
            loader = loader.profile_name(p);
        }
        if let Some(r) = &self.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        loader.load().await
    }
}

/// Sends tracing to `logs/sombrero.log` in the data dir (never to the terminal, which is the
/// UI). Filter with `SOMBRERO_LOG` (default `info`). Safe to call more than once.
pub fn init_logging(paths: &Paths) -> Result<(), ConfigError> {
    use tracing_subscriber::EnvFilter;
    paths.ensure()?;
    create_private_dir(&paths.logs())?;
    // Rotated by size with a retention count: refusals a client causes cannot fill the disk.
    let file = crate::logfile::RotatingLog::new(
        &paths.logs(),
        "sombrero.log",
        crate::logfile::MAX_LOG_BYTES,
        crate::logfile::KEEP_LOGS,
    );
    let filter = EnvFilter::try_from_env("SOMBRERO_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Err only means a subscriber is already installed (a second call): keep that one.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(file)
        .try_init();
    Ok(())
}

/// Errors finding or creating the data directory.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// No home or XDG directory could be determined.
    #[error("cannot determine a data directory: set --data-dir or SOMBRERO_DATA_DIR")]
    NoDataDir,
    /// The directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The directory exists but is not private and cannot be made so.
    #[error(transparent)]
    Private(#[from] crate::private_fs::PrivateError),
}

/// Paths inside the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The data directory itself.
    pub data_dir: PathBuf,
}

impl Paths {
    /// Resolves the data directory: `dir` (`--data-dir`, `SOMBRERO_DATA_DIR`) when given, else
    /// the XDG data dir.
    pub fn resolve(dir: Option<&Path>) -> Result<Self, ConfigError> {
        let data_dir = match dir {
            Some(d) => d.to_path_buf(),
            None => directories::ProjectDirs::from("", "", "pink-sombrero")
                .map(|p| p.data_dir().to_path_buf())
                .ok_or(ConfigError::NoDataDir)?,
        };
        Ok(Paths { data_dir })
    }

    /// Paths rooted at an explicit directory.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Paths {
            data_dir: dir.into(),
        }
    }

    /// Creates the data directory (owner-only: it holds TOTP secrets in embedded mode).
    pub fn ensure(&self) -> Result<(), ConfigError> {
        create_private_dir(&self.data_dir)
    }

    /// The SQLite store.
    pub fn db(&self) -> PathBuf {
        self.data_dir.join("sombrero.db")
    }

    /// The policy file.
    pub fn policy(&self) -> PathBuf {
        self.data_dir.join("policy.toml")
    }

    /// Default config file.
    pub fn config(&self) -> PathBuf {
        self.data_dir.join("config.toml")
    }

    /// Default recordings directory.
    pub fn recordings(&self) -> PathBuf {
        self.data_dir.join("recordings")
    }

    /// Key material (recorder signing key).
    pub fn keys(&self) -> PathBuf {
        self.data_dir.join("keys")
    }

    /// Log directory (tracing goes here, never to the terminal).
    pub fn logs(&self) -> PathBuf {
        self.data_dir.join("logs")
    }
}

/// Creates `path` and its parents (0700), then forces the leaf to 0700 and checks that this
/// user owns it (see [`crate::private_fs`]).
pub fn create_private_dir(path: &Path) -> Result<(), ConfigError> {
    use crate::private_fs::PrivateError;
    crate::private_fs::ensure_dir(path).map_err(|e| match e {
        PrivateError::Io { path, source } => ConfigError::CreateDir { path, source },
        other => ConfigError::Private(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_data_dir_wins() {
        let p = Paths::resolve(Some(Path::new("/tmp/x"))).expect("resolves");
        assert_eq!(p.db(), PathBuf::from("/tmp/x/sombrero.db"));
        assert_eq!(p.policy(), PathBuf::from("/tmp/x/policy.toml"));
    }

    #[test]
    fn ensure_creates_private_dir() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = Paths::at(tmp.path().join("a/b"));
        p.ensure().expect("creates");
        let mode = std::fs::metadata(&p.data_dir)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
