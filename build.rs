//! Stamps the version `sombrero --version` prints with the git commit it was built from.
//!
//! In a git checkout: `git rev-parse` and `git status`, "dirty" when what the binary is built
//! from (`vcs::SOURCES`) differs from the commit; an edited README does not count. In a crate
//! package (no `.git`): the commit `cargo package` recorded in `.cargo_vcs_info.json`.
//! Neither: "commit unknown". Never fails the build.
//!
//! Cargo reruns this script only when a watched path changes: HEAD, the branch's ref, the
//! packed refs and the index (a commit, checkout or `git add`), and the sources (an edit can
//! make the tree dirty), so an unchanged tree is not re-stamped on every build.

#[path = "build/vcs.rs"]
mod vcs;

use std::path::{Path, PathBuf};

use vcs::{SOURCES, git};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = from_git(&manifest)
        .or_else(|| from_vcs_info(&manifest))
        .unwrap_or_else(|| "commit unknown".to_string());
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    println!("cargo:rustc-env=SOMBRERO_VERSION={version} ({commit})");
    for watched in SOURCES.iter().chain(&[".cargo_vcs_info.json"]) {
        watch(&manifest.join(watched));
    }
}

/// Cargo reruns a script on every build while a watched path is missing: watch only what is
/// there.
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// The checkout's commit, watching what moves it: HEAD, the branch's ref, the packed refs and
/// the index (a commit, checkout or `git add`).
fn from_git(manifest: &Path) -> Option<String> {
    let described = vcs::describe_checkout(manifest)?;
    for path in ["HEAD", "index", "packed-refs"] {
        watch_git_path(manifest, path);
    }
    if let Some(branch) = git(manifest, &["symbolic-ref", "-q", "HEAD"]) {
        watch_git_path(manifest, &branch);
    }
    Some(described)
}

/// Watches a file inside the git directory (a worktree's HEAD and index live apart from the
/// shared refs; `git rev-parse --git-path` knows which is where).
fn watch_git_path(manifest: &Path, path: &str) {
    if let Some(p) = git(manifest, &["rev-parse", "--git-path", path]) {
        let p = Path::new(&p);
        if p.is_absolute() {
            watch(p);
        } else {
            watch(&manifest.join(p));
        }
    }
}

/// `cargo package` writes `{"git": {"sha1": "...", "dirty": true}, ...}` into the package.
fn from_vcs_info(manifest: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifest.join(".cargo_vcs_info.json")).ok()?;
    let sha = text.split("\"sha1\"").nth(1)?.split('"').nth(1)?;
    let short: String = sha.chars().take(12).collect();
    let dirty = text.contains("\"dirty\": true") || text.contains("\"dirty\":true");
    Some(if dirty {
        format!("commit {short}, dirty")
    } else {
        format!("commit {short}")
    })
}
