//! The git commit a checkout is at, shared by build.rs (which stamps it into `--version`) and
//! tests/deploy/ship.rs (which checks the stamp), so both mean the same by "dirty".

use std::path::Path;
use std::process::Command;

/// What the binary is built from: a change here, uncommitted, makes a build "dirty".
pub const SOURCES: [&str; 6] = [
    "build.rs",
    "build",
    "Cargo.toml",
    "Cargo.lock",
    "src",
    "themes",
];

/// Runs git in `dir`; None when git is missing or fails.
pub fn git(dir: &Path, args: &[&str]) -> Option<String> {
    // No optional locks: `git status` would otherwise refresh the index, a watched file, and
    // so make the next build rerun this script.
    let out = Command::new("git")
        .arg("--no-optional-locks")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `commit abcdef123456` (`, dirty` added) for the checkout whose top is `manifest`; None
/// outside one, or inside a repository around it (a package unpacked under `target/package/`
/// sits inside the checkout it came from).
pub fn describe_checkout(manifest: &Path) -> Option<String> {
    let top = git(manifest, &["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != manifest.canonicalize().ok()? {
        return None;
    }
    let commit = git(manifest, &["rev-parse", "--short=12", "HEAD"])?;
    let mut status = vec!["status", "--porcelain", "--untracked-files=no", "--"];
    status.extend(SOURCES);
    let dirty = git(manifest, &status).is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("commit {commit}, dirty")
    } else {
        format!("commit {commit}")
    })
}
