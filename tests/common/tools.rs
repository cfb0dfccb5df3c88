//! The programs some tests run besides sombrero (bash, man, systemd-analyze, cfn-lint, ...).

use std::path::{Path, PathBuf};

/// `name` from the project's `.venv/bin` (scripts/test installs cfn-lint there, with moto),
/// else from PATH. Missing: a failure under CI=true, whose machine has them all; elsewhere
/// None, after saying which check is skipped.
pub fn find_tool(name: &str, check: &str) -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(name);
    let found = if venv.is_file() {
        Some(venv)
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    };
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} is missing, so {check} cannot run (scripts/test installs Python tools into .venv/)"
        );
        eprintln!("skipped: {check}: {name} not found");
    }
    found
}

/// Runs a tool and returns its stdout; a failure shows everything it printed.
pub fn run_ok(cmd: &mut std::process::Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
