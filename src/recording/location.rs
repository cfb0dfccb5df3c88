//! Where recordings go: `$SOMBRERO_RECORDINGS`, else the `recordings` key of the config file
//! (relative to that file), else `recordings/` in the data dir.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::config::Paths;

/// Environment variable that overrides the recordings directory.
pub const RECORDINGS_ENV: &str = "SOMBRERO_RECORDINGS";

/// The config file could not tell.
#[derive(Debug, Error)]
#[error("config file {path}: {message}")]
pub struct LocationError {
    /// The config file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

/// Resolves the recordings directory (`config`: `--config`, else `config.toml` in the data dir).
pub fn recordings_dir(config: Option<&Path>, paths: &Paths) -> Result<PathBuf, LocationError> {
    if let Some(p) = std::env::var_os(RECORDINGS_ENV) {
        return Ok(PathBuf::from(p));
    }
    let file = config.map_or_else(|| paths.config(), Path::to_path_buf);
    let err = |message: String| LocationError {
        path: file.clone(),
        message,
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(paths.recordings()),
        Err(e) => return Err(err(e.to_string())),
    };
    let table: toml::Table = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    match table.get("recordings") {
        None => Ok(paths.recordings()),
        Some(toml::Value::String(dir)) => Ok(file.parent().unwrap_or(Path::new(".")).join(dir)),
        Some(_) => Err(err(
            "recordings: must be a string, the recordings directory".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_key_relative_to_the_file_else_data_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::at(tmp.path());
        assert_eq!(recordings_dir(None, &paths).unwrap(), paths.recordings());
        std::fs::write(paths.config(), "recordings = \"casts\"\n").unwrap();
        assert_eq!(
            recordings_dir(None, &paths).unwrap(),
            tmp.path().join("casts")
        );
        std::fs::write(paths.config(), "recordings = 3\n").unwrap();
        assert!(recordings_dir(None, &paths).is_err());
    }
}
