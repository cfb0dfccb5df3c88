//! Recordings through `sombrero serve`: the daemon lists what it keeps (verified with its own
//! key), streams cast and chain by listed name only, and records review sign-offs as the
//! connection's identity; clients verify downloads themselves with the daemon's public key, so
//! a recording altered on the daemon's disk is reported tampered by the client.
//!
//! Recordings are written into the daemon's recordings directory by the library's Recorder with
//! the daemon's own key, as its relay does for live sessions (tests/serve/session.rs covers
//! recording a relayed session). Client processes run under other uids, mapped in the policy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::common::daemon::{Daemon, can_switch_uid, own_user};
use crate::common::recording::{audit_recording, lines, meta, write_lines};
use pink_sombrero::api::BrokerApi;
use pink_sombrero::backend::remote::Remote;
use pink_sombrero::recording::{Recorder, RecorderKey, RecordingMeta};
use pink_sombrero::remote::{RemoteBroker, UnixConnector};
use pink_sombrero::tui::model::Integrity;
use pink_sombrero::tui::model::RecordingRow;
use pink_sombrero::tui::recording_rows::listed;

/// rita and ray request, ann approves, vic is enrolled as a reviewer the policy does not list;
/// the test process itself is rev, the reviewer.
const RITA: u32 = 62_001;
const RAY: u32 = 62_002;
const ANN: u32 = 62_003;
const VIC: u32 = 62_004;

fn team() -> Daemon {
    let me = own_user();
    let policy = format!(
        "requesters = [\"*\"]\napprovers = [\"ann\"]\nreviewers = [\"rev\"]\n[identities]\n\"uid:{RITA}\" = \"rita\"\n\"uid:{RAY}\" = \"ray\"\n\"uid:{ANN}\" = \"ann\"\n\"uid:{VIC}\" = \"vic\"\n\"{me}\" = \"rev\"\n"
    );
    Daemon::new(
        &policy,
        &[
            ("rita", "requester"),
            ("ray", "requester"),
            ("ann", "approver"),
            ("vic", "reviewer"),
            ("rev", "reviewer"),
        ],
    )
}

fn recordings_dir(d: &Daemon) -> PathBuf {
    d.env.path().join("recordings")
}

/// A sealed recording of a session `requester` asked for, made with the daemon's key in its
/// recordings directory; returns its name.
fn record(d: &Daemon, requester: &str, session: &str) -> String {
    let key = RecorderKey::load_or_create(&d.env.path().join("keys")).unwrap();
    let meta = RecordingMeta {
        requester: requester.into(),
        session_id: session.into(),
        ..meta()
    };
    let mut r = Recorder::create(&recordings_dir(d), meta, &key).unwrap();
    r.output(b"$ df -h /var\r\n/dev/xvda1  100%\r\n").unwrap();
    r.marker("closed").unwrap();
    let name = r.path().file_name().unwrap().to_str().unwrap().to_string();
    let info = r.seal().unwrap();
    audit_recording(d.env.path(), "req-1", &info.path, Some(&info));
    name
}

fn listed_names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect()
}

/// A client of the daemon in this process, as the test's own user (rev).
/// The TUI's Recordings rows through the daemon.
fn tui_rows(remote: Arc<RemoteBroker>) -> Vec<RecordingRow> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(listed(&Remote::new(remote)))
}

fn in_process(d: &Daemon) -> Arc<RemoteBroker> {
    let c = Arc::new(UnixConnector::new(d.socket()));
    Arc::new(RemoteBroker::with_connector(d.url(), c).unwrap())
}

#[test]
fn a_reviewer_lists_verifies_and_downloads_through_the_daemon() {
    if !can_switch_uid() {
        return;
    }
    let mut d = team();
    let name = record(&d, "rita", "sess-1");
    d.start();

    let listed = d.client(None, &["recordings", "--json"]).ok().json();
    // Names, not the broker's paths.
    assert_eq!(listed_names(&listed), vec![name.clone()]);
    assert_eq!(listed[0]["integrity"]["status"], "sealed");
    assert_eq!(listed[0]["meta"]["requester"], "rita");
    let text = d.client(None, &["recordings"]).ok().stdout;
    assert!(text.contains("sealed ✓") && text.contains(&name), "{text}");

    let out = d.client(None, &["verify", &name]).ok().stdout;
    assert!(out.contains("intact and sealed"), "{out}");
    let v = d.client(None, &["verify", &name, "--json"]).ok().json();
    assert_eq!(v["path"], name.as_str());
    // The verdict is the client's own: another key does not verify the broker's seal.
    let other = RecorderKey::load_or_create(&d.sock_dir.path().join("other-keys")).unwrap();
    let out = d.client(None, &["verify", &name, "--key", &other.public_hex()]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stdout.contains("seal"), "{}", out.stdout);
    // --key with the broker's own key (as `sombrero keys show` prints it there) agrees.
    let theirs = d.env.run(&["keys", "show"]).ok().stdout;
    let hex = theirs.trim().trim_start_matches("ed25519 ");
    d.client(None, &["verify", &name, "--key", hex]).ok();
    // `keys show` through the daemon prints the broker's key, not one made on the client.
    let through = d.client(None, &["keys", "show"]).ok().stdout;
    assert_eq!(through.trim(), theirs.trim());

    // What the TUI and `replay` use: the daemon's public key, a private download, the listing.
    let remote = in_process(&d);
    assert_eq!(remote.recorder_key().unwrap().as_bytes().to_vec(), {
        let k = RecorderKey::load(&d.env.path().join("keys")).unwrap();
        k.verifying_key().as_bytes().to_vec()
    });
    let fetched = remote.fetch(&name).unwrap();
    let dir = fetched.cast.parent().unwrap().to_path_buf();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the download directory is private");
    assert_eq!(
        std::fs::read(&fetched.cast).unwrap(),
        std::fs::read(recordings_dir(&d).join(&name)).unwrap()
    );
    drop(fetched);
    assert!(!dir.exists(), "the download is removed after use");
    let rows = tui_rows(remote.clone());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].path, Path::new(&name));
    assert_eq!(rows[0].integrity, Integrity::Sealed);
    assert_eq!(rows[0].user, "rita");
    // Counted by the daemon under its rules: nothing was typed, so nothing is flagged.
    assert_eq!(rows[0].flags.as_ref().map(|f| f.text.as_str()), Some("-"));
    // Replay needs a terminal; without one it says so before downloading anything.
    d.client(None, &["replay", &name])
        .usage("replay needs a terminal");
}

#[test]
fn a_recording_tampered_on_the_daemons_disk_is_reported_by_the_clients_verify() {
    if !can_switch_uid() {
        return;
    }
    let mut d = team();
    let name = record(&d, "rita", "sess-1");
    d.start();
    d.client(None, &["verify", &name]).ok();
    let cast = recordings_dir(&d).join(&name);
    let mut l = lines(&cast);
    l[1] = l[1].replace("100%", " 10%");
    write_lines(&cast, &l);
    let out = d.client(None, &["verify", &name]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stdout.contains("line 2 edited"), "{}", out.stdout);
    let v = d.client(None, &["verify", &name, "--json"]).json();
    assert_eq!(v["status"], "tampered");
    assert_eq!(v["line"], 2);
    // The daemon's own listing says so too (its cache notices the change).
    let listed = d.client(None, &["recordings", "--json"]).ok().json();
    assert_eq!(listed[0]["integrity"]["status"], "tampered");
    // And a sign-off cannot bind to it.
    let code = d.env.code("rev");
    d.client(
        None,
        &["review", &name, "--code", &code, "--note", "looked fine"],
    )
    .refused("TAMPERED: line 2 edited");
}

#[test]
fn names_that_are_not_listed_recordings_are_refused() {
    if !can_switch_uid() {
        return;
    }
    let mut d = team();
    let name = record(&d, "rita", "sess-1");
    let dir = recordings_dir(&d);
    std::fs::write(dir.join("notes.txt"), "not a recording").unwrap();
    std::os::unix::fs::symlink(d.env.path().join("sombrero.db"), dir.join("planted.cast")).unwrap();
    d.start();
    let key_hex = std::fs::read_to_string(d.env.path().join("keys/recorder.ed25519")).unwrap();
    for path in [
        "/v1/recordings/..%2Fkeys%2Frecorder.ed25519",
        "/v1/recordings/..%2Fkeys%2Frecorder.ed25519/chain",
        "/v1/recordings/%2Fetc%2Fpasswd",
        "/v1/recordings/..%2Fsombrero.db",
        "/v1/recordings/notes.txt",
        "/v1/recordings/planted.cast",
        &format!("/v1/recordings/{name}.chain"),
        "/v1/recordings/missing.cast",
        "/v1/recordings/missing.cast/chain",
    ] {
        let (status, body) = d.http("GET", path, "");
        assert_eq!(status, 400, "{path}: {body}");
        assert!(!body.contains(key_hex.trim()), "{path} leaked the key");
        assert!(body.contains("no recording"), "{path}: {body}");
    }
    // Paths with more segments match no route at all.
    let (status, _) = d.http("GET", "/v1/recordings/../keys/recorder.ed25519", "");
    assert_eq!(status, 404);
    // The listing shows only the real recording (the planted symlink is not a regular file).
    let (status, body) = d.http("GET", &format!("/v1/recordings/{name}"), "");
    assert_eq!(status, 200, "{body}");
    // The client refuses a path before asking.
    d.client(None, &["verify", "../keys/recorder.ed25519"])
        .usage("not a recording name");
    d.client(None, &["verify", &dir.join(&name).display().to_string()])
        .usage("not a recording name");
}

#[test]
fn only_reviewers_approvers_and_the_sessions_requester_see_recordings() {
    if !can_switch_uid() {
        return;
    }
    let mut d = team();
    let ritas = record(&d, "rita", "sess-1");
    let rays = record(&d, "ray", "sess-2");
    d.start();
    // An approver sees everything.
    let all = d.client(Some(ANN), &["recordings", "--json"]).ok().json();
    assert_eq!(listed_names(&all).len(), 2);
    d.client(Some(ANN), &["verify", &rays]).ok();
    // A requester sees and downloads only their own session's recording.
    let own = d.client(Some(RITA), &["recordings", "--json"]).ok().json();
    assert_eq!(listed_names(&own), vec![ritas.clone()]);
    d.client(Some(RITA), &["verify", &ritas]).ok();
    d.client(Some(RITA), &["verify", &rays])
        .refused("not a recording of a session rita requested");
    // Same answer for a name that does not exist: no probing for others' recordings.
    d.client(Some(RITA), &["verify", "20990101T000000Z_x_y.cast"])
        .refused("not a recording of a session rita requested");
    // Enrolled, but in none of the policy's lists that may see recordings: 403.
    d.client(Some(VIC), &["recordings"])
        .refused("vic may not see recordings");
    d.client(Some(VIC), &["verify", &ritas])
        .refused("vic may not see recordings");
    let code = d.env.code("vic");
    d.client(
        Some(VIC),
        &["review", &ritas, "--code", &code, "--note", "fine"],
    )
    .refused("vic may not see recordings");
    // On the wire the refusals are 403.
    let rays_url = format!("/v1/recordings/{rays}");
    assert_eq!(status_as(&d, RITA, &rays_url), 403);
    assert_eq!(status_as(&d, RITA, &format!("{rays_url}/chain")), 403);
    assert_eq!(status_as(&d, VIC, "/v1/recordings"), 403);
    assert_eq!(status_as(&d, RITA, &format!("/v1/recordings/{ritas}")), 200);
    assert_eq!(status_as(&d, ANN, &rays_url), 200);
}

/// The HTTP status of a GET on the daemon's socket from a process under `uid` (curl, a real
/// HTTP client outside this crate).
fn status_as(d: &Daemon, uid: u32, path: &str) -> u16 {
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--unix-socket",
        ])
        .arg(d.socket())
        .arg(format!("http://sombrero{path}"))
        .uid(uid)
        .gid(0)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().parse().unwrap()
}

#[test]
fn review_through_the_daemon_is_the_connections_identity() {
    if !can_switch_uid() {
        return;
    }
    let mut d = team();
    let name = record(&d, "rita", "sess-1");
    let revs_own = record(&d, "rev", "sess-2");
    d.start();
    // --as is refused: the daemon knows who is asking.
    let code = d.env.code("rev");
    d.client(
        None,
        &[
            "review", &name, "--as", "ann", "--code", &code, "--note", "ok",
        ],
    )
    .usage("--as ann cannot be used with a broker daemon");
    // An approver is not a reviewer.
    let code = d.env.code("ann");
    d.client(
        Some(ANN),
        &["review", &name, "--code", &code, "--note", "ok"],
    )
    .refused("ann may not review recordings");
    // Nobody signs off their own session.
    let code = d.env.code("rev");
    d.client(
        None,
        &["review", &revs_own, "--code", &code, "--note", "ok"],
    )
    .refused("another reviewer must sign it off");
    // A wrong code is refused.
    let wrong = d.env.wrong_code("rev");
    d.client(None, &["review", &name, "--code", &wrong, "--note", "ok"])
        .refused("");
    let code = d.env.code("rev");
    let signed = d
        .client(
            None,
            &[
                "review",
                &name,
                "--code",
                &code,
                "--note",
                "df only, nothing changed",
                "--json",
            ],
        )
        .ok();
    // The flagged-command summary comes first, from the downloaded recording.
    assert!(
        signed
            .stderr
            .contains("no flagged commands among 0 in this recording"),
        "{}",
        signed.stderr
    );
    let event = signed.json();
    assert_eq!(event["kind"], "reviewed");
    assert_eq!(event["actor"], "rev");
    assert_eq!(event["request_id"], "req-1");
    assert_eq!(event["data"]["recording"], name.as_str());
    let digest = event["data"]["digest"].as_str().unwrap().to_string();

    // Visible in the listing (for rita too) and in the audit log, whose chain holds.
    let listed = d.client(Some(RITA), &["recordings", "--json"]).ok().json();
    let r = &listed[0];
    assert_eq!(r["integrity"]["digest"], digest.as_str());
    assert_eq!(r["reviews"][0]["reviewer"], "rev");
    assert_eq!(r["reviews"][0]["note"], "df only, nothing changed");
    assert_eq!(
        r["flags"],
        serde_json::json!({"high": 0, "medium": 0, "low": 0})
    );
    let remote = in_process(&d);
    let events = remote.audit_events(0, 1000).unwrap();
    let reviewed: Vec<_> = events
        .iter()
        .filter(|e| e.kind == pink_sombrero::audit::EventKind::Reviewed)
        .collect();
    assert_eq!(reviewed.len(), 1);
    assert_eq!(reviewed[0].actor, "rev");
    assert_eq!(reviewed[0].data["digest"], digest.as_str());
    d.client(None, &["audit", "verify"]).ok();
}

/// `sombrero --broker URL replay NAME` in a real pseudo-terminal until `needle` shows, then `q`;
/// the exit status.
fn replay_in_pty(d: &Daemon, name: &str, needles: &[&str]) -> u32 {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 20,
            cols: 100,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new(crate::common::cli::BIN);
    cmd.arg("--data-dir");
    cmd.arg(d.sock_dir.path().join("client"));
    cmd.args(["--broker", &d.url(), "replay", name]);
    cmd.env("TERM", "xterm-256color");
    cmd.env_remove("SOMBRERO_BROKER");
    let mut child = pty.slave.spawn_command(cmd).unwrap();
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for needle in needles {
        while !String::from_utf8_lossy(&seen).contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(chunk) => seen.extend(chunk),
                Err(_) => panic!(
                    "{needle:?} never appeared: {:?}",
                    String::from_utf8_lossy(&seen)
                ),
            }
        }
    }
    let mut keys = pty.master.take_writer().unwrap();
    keys.write_all(b"q").unwrap();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.exit_code();
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("replay ignored q");
        }
        // Draining keeps the child from blocking on a full pty.
        while rx.try_recv().is_ok() {}
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn replay_through_the_daemon_shows_the_clients_own_verdict() {
    if !can_switch_uid() {
        return;
    }
    let mut d = team();
    let name = record(&d, "rita", "sess-1");
    d.start();
    assert_eq!(replay_in_pty(&d, &name, &["sealed ✓", "/dev/xvda1"]), 0);
    let cast = recordings_dir(&d).join(&name);
    let mut l = lines(&cast);
    l[1] = l[1].replace("100%", " 10%");
    write_lines(&cast, &l);
    assert_eq!(
        replay_in_pty(&d, &name, &["TAMPERED at line 2", "/dev/xvda1"]),
        0
    );
}

#[test]
fn a_cut_or_deleted_recording_is_reported_through_the_daemon_and_cannot_be_signed_off() {
    if !can_switch_uid() {
        return;
    }
    let mut d = team();
    // Eight lines, each its own chain record, sealed and audited as the relay does.
    let key = RecorderKey::load_or_create(&d.env.path().join("keys")).unwrap();
    let meta = RecordingMeta {
        requester: "rita".into(),
        ..meta()
    };
    let mut r = Recorder::create(&recordings_dir(&d), meta, &key).unwrap();
    for i in 1..=7 {
        r.marker(&format!("step {i}")).unwrap();
    }
    let info = r.seal().unwrap();
    audit_recording(d.env.path(), "req-1", &info.path, Some(&info));
    let name = info.path.file_name().unwrap().to_str().unwrap().to_string();
    let gone = record(&d, "rita", "sess-2");
    d.start();
    d.client(None, &["verify", &name]).ok();

    // Cast lines 1-4 and chain records 1-5 kept: on its own an unsealed recording of 4 lines.
    let l = lines(&info.path);
    write_lines(&info.path, &l[..4]);
    let chain = pink_sombrero::recording::writer::chain_path_for(&info.path);
    let c = lines(&chain);
    write_lines(&chain, &c[..5]);
    // The client verifies its own download against the daemon's audit facts.
    let out = d.client(None, &["verify", &name]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout.contains("TAMPERED: truncated after line 4 of 8"),
        "{}",
        out.stdout
    );
    let code = d.env.code("rev");
    d.client(None, &["review", &name, "--code", &code, "--note", "ok"])
        .refused("truncated after line 4 of 8");

    // A recording the audit log names but the daemon's disk lacks is listed MISSING.
    std::fs::remove_file(recordings_dir(&d).join(&gone)).unwrap();
    let listed = d.client(None, &["recordings", "--json"]).ok().json();
    let status = |n: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["path"] == n)
            .map(|r| r["integrity"]["status"].clone())
    };
    assert_eq!(status(&name), Some("audit_tampered".into()), "{listed}");
    assert_eq!(status(&gone), Some("missing".into()), "{listed}");
    let text = d.client(None, &["recordings"]).ok().stdout;
    assert!(text.contains("MISSING") && text.contains(&gone), "{text}");
    // The TUI's listing through the daemon says so too.
    let rows = tui_rows(in_process(&d));
    assert!(rows.iter().any(|r| r.path == Path::new(&gone)
        && matches!(&r.integrity, Integrity::Broken(why) if why.contains("MISSING"))));
}

#[test]
fn a_fifo_or_symlink_named_like_a_recording_neither_hangs_the_listing_nor_the_shutdown() {
    let mut d = team();
    let name = record(&d, "rita", "sess-1");
    let dir = recordings_dir(&d);
    let fifo = std::ffi::CString::new(dir.join("x.cast").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a path we own.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    std::os::unix::fs::symlink(dir.join("x.cast"), dir.join("y.cast")).unwrap();
    std::os::unix::fs::symlink(dir.join(&name), dir.join("z.cast")).unwrap();
    d.start();

    let started = std::time::Instant::now();
    let (status, body) = d.http("GET", "/v1/recordings", "");
    assert_eq!(status, 200, "{body}");
    let listed = listed_names(&serde_json::from_str(&body).unwrap());
    assert_eq!(
        listed,
        vec![name.clone()],
        "only the regular file is listed"
    );
    for planted in ["x.cast", "y.cast", "z.cast"] {
        let (status, body) = d.http("GET", &format!("/v1/recordings/{planted}"), "");
        assert_eq!(status, 400, "{planted}: {body}");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let stopping = std::time::Instant::now();
    assert!(d.terminate().success());
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        stopping.elapsed()
    );
}
