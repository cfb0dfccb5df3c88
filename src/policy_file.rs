//! The policy FILE: where it is (`$SOMBRERO_POLICY`, the config file's `policy` key, the data
//! dir), reading it, and writing the default on first run. [`crate::policy`] only parses and
//! applies the text.

use std::path::{Path, PathBuf};

use crate::policy::{DEFAULT_POLICY, Policy, PolicyError};

/// Writes [`DEFAULT_POLICY`] to `path` unless a file appears there first. The text goes to a
/// private temporary file that is then hard-linked into place, which fails if `path` exists:
/// a process starting at the same moment never reads a half-written policy.
fn write_default(path: &Path) -> Result<bool, PolicyError> {
    use std::io::Write;
    let werr = |source| PolicyError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension(format!("toml.tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(werr)?;
    f.write_all(DEFAULT_POLICY.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(werr)?;
    let linked = std::fs::hard_link(&tmp, path);
    // The temporary name is ours alone; failing to remove it leaves a stray file, not a risk.
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(werr(e)),
    }
}

/// Environment variable naming the policy file; wins over the config file.
pub const POLICY_ENV: &str = "SOMBRERO_POLICY";

/// Where the policy file is: `$SOMBRERO_POLICY`, else the `policy` key of the config file
/// (`--config`, else `config.toml` in the data dir, if it exists; relative paths are relative
/// to the config file), else `policy.toml` in the data dir. Other config keys are ignored here.
pub fn resolve_path(
    config: Option<&Path>,
    paths: &crate::config::Paths,
) -> Result<PathBuf, PolicyError> {
    if let Some(p) = std::env::var_os(POLICY_ENV) {
        return Ok(PathBuf::from(p));
    }
    let config = config.map_or_else(|| paths.config(), Path::to_path_buf);
    let text = match std::fs::read_to_string(&config) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(paths.policy()),
        Err(source) => {
            return Err(PolicyError::Read {
                path: config,
                source,
            });
        }
    };
    let table: toml::Table = toml::from_str(&text).map_err(|e| PolicyError::Syntax {
        path: config.clone(),
        message: e.to_string().trim_end().to_string(),
    })?;
    match table.get("policy") {
        None => Ok(paths.policy()),
        Some(toml::Value::String(p)) => {
            let base = config.parent().unwrap_or(Path::new("."));
            Ok(base.join(p))
        }
        Some(_) => Err(PolicyError::Syntax {
            path: config,
            message: "policy: must be a string, the path of the policy file".to_string(),
        }),
    }
}

impl Policy {
    /// Reads and parses a policy file. The file is read on every call, so edits apply at
    /// once; parsing is skipped when its text is byte-for-byte what was parsed last time
    /// (a daemon reads it on every request, and a team's `[identities]` table makes that cost).
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        use std::sync::Mutex;
        /// The last file parsed: its path, text and policy.
        static LAST: Mutex<Option<(PathBuf, String, Policy)>> = Mutex::new(None);
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if let Ok(last) = LAST.lock()
            && let Some((p, t, policy)) = last.as_ref()
            && p == path
            && *t == text
        {
            return Ok(policy.clone());
        }
        let policy = Policy::parse(&text, path)?;
        if let Ok(mut last) = LAST.lock() {
            *last = Some((path.to_path_buf(), text, policy.clone()));
        }
        Ok(policy)
    }

    /// Loads the policy, first writing [`DEFAULT_POLICY`] if no file exists.
    /// Returns the policy and whether this call created the file.
    pub fn load_or_create(path: &Path) -> Result<(Policy, bool), PolicyError> {
        let created = if path.exists() {
            false
        } else {
            write_default(path)?
        };
        Ok((Policy::load(path)?, created))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_sees_every_edit_even_of_the_same_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        let text = |n: u32| {
            format!("requesters = [\"*\"]\napprovers = [\"*\"]\napprovals_required = {n}\n")
        };
        for n in [2, 3, 2, 4] {
            std::fs::write(&path, text(n)).unwrap();
            assert_eq!(Policy::load(&path).unwrap().approvals_required, n);
            assert_eq!(Policy::load(&path).unwrap().approvals_required, n);
        }
        let other = dir.path().join("other.toml");
        std::fs::write(&other, text(5)).unwrap();
        assert_eq!(Policy::load(&other).unwrap().approvals_required, 5);
        assert_eq!(Policy::load(&path).unwrap().approvals_required, 4);
    }

    #[test]
    fn config_file_can_name_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let paths = crate::config::Paths::at(dir.path());
        // Environment overrides are tested through the binary; keep this test independent.
        if std::env::var_os(POLICY_ENV).is_some() {
            return;
        }
        assert_eq!(resolve_path(None, &paths).unwrap(), paths.policy());
        std::fs::write(
            paths.config(),
            "theme = \"dark\"\npolicy = \"team/policy.toml\"\n",
        )
        .unwrap();
        assert_eq!(
            resolve_path(None, &paths).unwrap(),
            dir.path().join("team/policy.toml")
        );
        let other = dir.path().join("other.toml");
        std::fs::write(&other, "policy = 3\n").unwrap();
        let e = resolve_path(Some(&other), &paths).unwrap_err().to_string();
        assert!(e.contains("policy: must be a string"), "{e}");
    }

    #[test]
    fn load_or_create_writes_the_default_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        let (_, created) = Policy::load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), DEFAULT_POLICY);
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1, "temporary file left behind");
        std::fs::write(&path, "requesters = []\napprovers = []\n").unwrap();
        let (p, created) = Policy::load_or_create(&path).unwrap();
        assert!(!created);
        assert!(p.requesters.is_empty());
    }
}
