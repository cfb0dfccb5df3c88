//! Where recordings go: `$SOMBRERO_RECORDINGS`, else the `recordings` key of the config file
//! (relative to that file), else `recordings/` in the data dir.

use std::path::{Path, PathBuf};

use crate::config::{ConfigFileError, Paths, config_string};

/// Environment variable that overrides the recordings directory.
pub const RECORDINGS_ENV: &str = "SOMBRERO_RECORDINGS";

/// The config file could not tell.
pub type LocationError = ConfigFileError;

/// Resolves the recordings directory (`config`: `--config`, else `config.toml` in the data dir).
pub fn recordings_dir(config: Option<&Path>, paths: &Paths) -> Result<PathBuf, LocationError> {
    if let Some(p) = std::env::var_os(RECORDINGS_ENV) {
        return Ok(PathBuf::from(p));
    }
    Ok(match config_string(config, paths, "recordings")? {
        Some((dir, file)) => file.parent().unwrap_or(Path::new(".")).join(dir),
        None => paths.recordings(),
    })
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
