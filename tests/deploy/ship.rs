//! What an operator gets besides the binary (README "Operating it"): completions, man pages,
//! a version that names its commit, the hardened systemd unit, and an installed binary that
//! runs the demo with its built-in themes from anywhere.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::CommandFactory;
use pink_sombrero::cli::Cli;
use portable_pty::{CommandBuilder, PtySize, native_pty_system};

#[path = "../../build/vcs.rs"]
mod vcs;

use crate::common::tools::{find_tool, run_ok};

const BIN: &str = env!("CARGO_BIN_EXE_sombrero");

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary and returns its stdout; a failure shows everything it printed.
fn sombrero(args: &[&str]) -> String {
    String::from_utf8(run_ok(Command::new(BIN).args(args))).unwrap()
}

#[test]
fn completions_generate_for_each_shell_and_bash_parses_its_own() {
    for (shell, marker) in [
        ("bash", "complete -F _sombrero"),
        ("zsh", "#compdef sombrero"),
        ("fish", "complete -c sombrero"),
    ] {
        let script = sombrero(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        // Subcommands and their options are in it, not just the top level.
        assert!(
            script.contains("approve") && script.contains("tls-cert"),
            "{shell}"
        );
    }
    let Some(bash) = find_tool("bash", "bash -n on the completion script") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sombrero.bash");
    std::fs::write(&file, sombrero(&["completions", "bash"])).unwrap();
    run_ok(Command::new(bash).arg("-n").arg(&file));
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

/// `sombrero-user-add` for `user add`: every visible command, as clap_mangen names its pages.
fn page_names(cmd: &clap::Command, prefix: &str, names: &mut Vec<String>) {
    let name = if prefix.is_empty() {
        cmd.get_name().to_string()
    } else {
        format!("{prefix}-{}", cmd.get_name())
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() != "help" {
            page_names(sub, &name, names);
        }
    }
    names.push(format!("{name}.1"));
}

#[test]
fn man_writes_one_page_per_subcommand_that_man_renders_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man1");
    let listed = sombrero(&["man", "--out", out_dir.to_str().unwrap()]);
    let mut expected = Vec::new();
    page_names(&Cli::command(), "", &mut expected);
    expected.sort();
    let mut written: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(written, expected);
    assert!(expected.len() > 30, "{expected:?}");
    assert_eq!(listed.lines().count(), expected.len(), "one line per page");
    for page in ["sombrero.1", "sombrero-serve.1", "sombrero-user-add.1"] {
        assert!(written.iter().any(|w| w == page), "no {page}");
    }
    // Without --out: the top-level page on stdout.
    assert!(sombrero(&["man"]).starts_with(".ie"));
    let Some(man) = find_tool("man", "man -l on a generated page") else {
        return;
    };
    for (page, shows) in [
        ("sombrero.1", "sombrero-serve(1)"),
        ("sombrero-serve.1", "--listen"),
    ] {
        let out = Command::new(&man)
            .args(["--warnings=all", "-l"])
            .arg(out_dir.join(page))
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "{page}: {stderr}"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(shows), "{page} rendered:\n{text}");
    }
}

#[test]
fn version_names_the_commit_of_a_git_checkout() {
    let version = sombrero(&["--version"]);
    let prefix = format!("sombrero {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(version.starts_with(&prefix), "{version}");
    let Some(head) = vcs::git(manifest_dir(), &["rev-parse", "HEAD"]) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI runs in a git checkout"
        );
        eprintln!("skipped: not a git checkout; the version says {version}");
        return;
    };
    assert!(
        version[prefix.len()..].starts_with(&head[..12]),
        "{version} is not {head}"
    );
    // Dirty as build.rs means it: what the binary is built from differs from HEAD.
    let described = vcs::describe_checkout(manifest_dir()).unwrap();
    let expected = format!("sombrero {} ({described})\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(version, expected);
    assert_eq!(sombrero(&["-V"]), expected);
}

#[test]
fn systemd_unit_verifies_and_scores_as_hardened() {
    let Some(analyze) = find_tool("systemd-analyze", "systemd-analyze verify on the unit") else {
        return;
    };
    let unit =
        std::fs::read_to_string(manifest_dir().join("deploy/systemd/sombrero.service")).unwrap();
    for line in [
        "User=sombrero",
        "StateDirectory=sombrero",
        "StateDirectoryMode=0700",
        "RuntimeDirectory=sombrero",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service",
        "Restart=on-failure",
        "LimitNOFILE=65536",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    // verify checks that ExecStart is executable: point it at this build, nothing else
    // changes. Its Documentation= page must exist: the generated pages are the MANPATH.
    let dir = tempfile::tempdir().unwrap();
    let installed = "/usr/local/bin/sombrero";
    assert!(unit.contains(&format!("ExecStart={installed} serve")));
    let copy = dir.path().join("sombrero.service");
    std::fs::write(&copy, unit.replace(installed, BIN)).unwrap();
    let man = dir.path().join("man");
    sombrero(&["man", "--out", man.join("man1").to_str().unwrap()]);
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&copy)
        .env("MANPATH", &man)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Exposure at most 2.0 of 10 (the threshold counts in tenths); it is 1.4 as shipped.
    let out = Command::new(&analyze)
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&copy)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let score = report
        .lines()
        .find(|l| l.contains("Overall exposure level"));
    assert!(out.status.success(), "exposure above 2.0:\n{report}");
    eprintln!("{}", score.unwrap_or("no overall exposure line"));
    // The user and group it runs as, made by the shipped sysusers.d file (in a scratch root).
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    run_ok(
        Command::new(analyze.with_file_name("systemd-sysusers"))
            .arg(format!("--root={}", root.display()))
            .arg(manifest_dir().join("deploy/systemd/sombrero.sysusers.conf")),
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    let gid = group
        .lines()
        .find_map(|l| l.strip_prefix("sombrero-engineers:x:"))
        .and_then(|rest| rest.split(':').next())
        .expect("no sombrero-engineers group");
    let user = passwd
        .lines()
        .find(|l| l.starts_with("sombrero:"))
        .expect("no sombrero user");
    assert_eq!(user.split(':').nth(3), Some(gid), "{user}");
}

/// Runs the binary in a pseudo-terminal until it has drawn `until`, presses `q`, and returns
/// everything it wrote once it has exited.
fn demo_screen(mut cmd: CommandBuilder, until: &[u8]) -> Vec<u8> {
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 40,
            cols: 140,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    cmd.env("TERM", "xterm-256color");
    let mut child = pty.slave.spawn_command(cmd).unwrap();
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().unwrap();
    let mut writer = pty.master.take_writer().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let seen = |out: &[u8], needle: &[u8]| out.windows(needle.len()).any(|w| w == needle);
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quit_sent = false;
    while Instant::now() < deadline {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(100)) {
            // Cursor-position queries get the answer a terminal would give.
            if seen(&chunk, b"\x1b[6n") {
                writer.write_all(b"\x1b[1;1R").unwrap();
            }
            out.extend_from_slice(&chunk);
        }
        if !quit_sent && seen(&out, until) {
            writer.write_all(b"q").unwrap();
            quit_sent = true;
        }
        if quit_sent && child.try_wait().unwrap().is_some() {
            return out;
        }
    }
    let _ = child.kill();
    panic!(
        "the demo did not draw {:?} and quit within 30 s:\n{}",
        String::from_utf8_lossy(until),
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn an_installed_binary_runs_the_demo_with_its_themes_from_anywhere() {
    // As `cargo install --root PREFIX` leaves it: the binary alone in PREFIX/bin, run from a
    // directory with no themes/ in it, by a user with a fresh home.
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("prefix/bin/sombrero");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(BIN, &bin).unwrap();
    let (cwd, home, tmp) = (
        root.path().join("cwd"),
        root.path().join("home"),
        root.path().join("tmp"),
    );
    for d in [&cwd, &home, &tmp] {
        std::fs::create_dir_all(d).unwrap();
    }
    let demo = || {
        let mut cmd = CommandBuilder::new(&bin);
        cmd.arg("demo");
        cmd.cwd(&cwd);
        cmd.env("HOME", &home);
        cmd.env("TMPDIR", &tmp);
        for var in [
            "XDG_CONFIG_HOME",
            "XDG_DATA_HOME",
            "SOMBRERO_DATA_DIR",
            "SOMBRERO_THEME",
            "NO_COLOR",
        ] {
            cmd.env_remove(var);
        }
        cmd
    };
    // The compiled-in default theme: the brand badge on light magenta.
    let screen = demo_screen(demo(), b"PINK SOMBRERO");
    let text = String::from_utf8_lossy(&screen);
    assert!(text.contains("DEMO"), "no DEMO panel:\n{text}");
    assert!(
        text.contains("48;5;13m"),
        "default theme not drawn:\n{text}"
    );
    // A file in the user's themes directory changes the built-in of its name.
    let themes = home.join(".config/pink-sombrero/themes");
    std::fs::create_dir_all(&themes).unwrap();
    std::fs::write(
        themes.join("default.toml"),
        "[roles]\nbadge_brand = { fg = \"#010203\", bg = \"#fa0b0c\" }\n",
    )
    .unwrap();
    let screen = demo_screen(demo(), b"PINK SOMBRERO");
    let text = String::from_utf8_lossy(&screen);
    assert!(
        text.contains("48;2;250;11;12m"),
        "override not drawn:\n{text}"
    );
}
