//! Shared fixture for the daemon tests: a real `sombrero serve` process on a real socket over a
//! real SQLite data dir, and client processes that hold no secrets (the test computes their
//! TOTP codes, as their authenticator apps would). Builds on the foundation fixture.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::BIN;
use super::cli::{Env, Run};

/// The test process's own OS user name (the identity its connections carry).
pub fn own_user() -> String {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    pink_sombrero::serve::identity::user_name(uid).unwrap()
}

/// True when client processes can run under other uids (distinct peers on one host). Outside
/// CI a developer without root gets a printed skip; in CI a skip would hide a gap, so it fails.
pub fn can_switch_uid() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() == 0 };
    assert!(
        root || std::env::var_os("CI").is_none(),
        "CI must run these tests as root: distinct peers need client processes under other uids"
    );
    root
}

/// The arguments of a `sombrero request` with `code`, without `--as`.
pub fn request_args(code: &str) -> Vec<&str> {
    vec![
        "request",
        "--target",
        "i-0abc1234",
        "--reason",
        "database disk is full",
        "--duration",
        "20m",
        "--code",
        code,
    ]
}

/// A data dir (enrolled through the real `user add` on the broker host), its daemon, and a
/// directory for the socket that the clients' group may enter.
pub struct Daemon {
    pub env: Env,
    pub sock_dir: tempfile::TempDir,
    pub child: Option<Child>,
}

impl Daemon {
    /// A data dir with `policy` and `users` (name, role) enrolled; the daemon is not started.
    pub fn new(policy: &str, users: &[(&str, &str)]) -> Daemon {
        Daemon::on(Env::enrolled(policy, users))
    }

    /// A started daemon with `policy` and only the test's own user enrolled, as both roles.
    pub fn started_for_me(policy: &str) -> Daemon {
        let mut d = Daemon::new(policy, &[(&own_user(), "both")]);
        d.start();
        d
    }

    /// A daemon over `env` (its data dir, and its `--store` if set); not started.
    pub fn on(env: Env) -> Daemon {
        let sock_dir = tempfile::tempdir().unwrap();
        // Group (root: the clients' gid below) may enter; the socket itself is 0660.
        std::fs::set_permissions(sock_dir.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
        Daemon {
            env,
            sock_dir,
            child: None,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.env.path().join("logs/sombrero.log")).unwrap()
    }

    pub fn socket(&self) -> PathBuf {
        self.sock_dir.path().join("sombrero.sock")
    }

    pub fn url(&self) -> String {
        format!("unix:{}", self.socket().display())
    }

    /// `sombrero serve --listen URL` on the data dir, not started.
    pub fn serve_command(&self, listen: &str) -> Command {
        let mut c = self.env.command(&["serve", "--listen", listen]);
        c.env_remove("SOMBRERO_BROKER");
        c
    }

    /// Starts `sombrero serve` and waits for its "listening on" line.
    pub fn start(&mut self) {
        self.start_with(|_| {});
    }

    /// Like [`Daemon::start`], with `setup` adding to the command first (a fleet's options).
    pub fn start_with(&mut self, setup: impl FnOnce(&mut Command)) {
        let mut serve = self.serve_command(&self.url());
        setup(&mut serve);
        let (child, line) = super::spawn_listening(serve.stdout(Stdio::null()));
        assert!(line.contains(&self.url()), "{line}");
        self.child = Some(child);
    }

    /// SIGKILL: no cleanup at all (the socket file stays behind).
    pub fn kill9(&mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// SIGTERM and the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().unwrap()
    }

    /// A client process against the daemon, as `uid` (gid 0: the socket's group) or as the
    /// test's own user. Its data dir is empty and elsewhere: no store, no secrets.
    pub fn client(&self, uid: Option<u32>, args: &[&str]) -> Run {
        let mut c = Command::new(BIN);
        c.arg("--data-dir")
            .arg(self.sock_dir.path().join("client"))
            .arg("--broker")
            .arg(self.url())
            .args(args)
            .env_remove("SOMBRERO_DATA_DIR")
            .env_remove("SOMBRERO_POLICY")
            .env_remove("SOMBRERO_BROKER")
            .stdin(Stdio::null());
        if let Some(uid) = uid {
            c.uid(uid).gid(0);
        }
        Run::from(c.output().unwrap())
    }

    /// One raw HTTP/1.1 request on the socket, as the test's own user: (status, body).
    pub fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = std::os::unix::net::UnixStream::connect(self.socket()).unwrap();
        // One write: the daemon may answer (and close) before reading a body it refuses.
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out.split_once("\r\n\r\n").unwrap().1.to_string();
        (status, body)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a prepared command to completion.
pub fn run_command(c: &mut Command) -> Run {
    Run::from(c.output().unwrap())
}

pub fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}
