//! A legitimate client of `sombrero serve` while hostile connections are open: p50/p99 of
//! `list` (GET /v1/requests) and `approve` (POST .../approve with a fresh TOTP code) over the
//! Unix socket with 0, 500 and 1,100 hostile connections held open, and the daemon's resident
//! memory and descriptors at each step.
//!
//! Run as root, after `cargo build` (it starts `target/<profile>/sombrero serve`):
//!   cargo run --example serve_hostile -- [LISTS_PER_STEP] [APPROVES_PER_STEP]
//!
//! Method. Hostile connections come from 50 uids mapped to one user (each under the per-uid
//! cap, so the daemon holds them all): each sends the headers of a POST with a 1,000-byte body and one
//! byte of it, then stalls (the body deadline closes them after 10 s, so each step is measured
//! right after its connections are opened). Every list is a fresh connection as root (mapped to
//! `lister`); every approve is a fresh connection as its own approver's uid (a code is
//! accepted once per user and 30 s step, so each approve is a different approver on a different
//! request created before the daemon started). Connections are made as another uid by a
//! thread that switches only its own effective uid (raw setresuid) for the `connect`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pink_sombrero::broker::Broker;
use pink_sombrero::config::Paths;
use pink_sombrero::mfa;
use pink_sombrero::policy::Role;
use pink_sombrero::request::NewRequest;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Approver `ai` is `uid:(APPROVER_UID+i)`, requester `ri` is `uid:(REQUESTER_UID+i)`.
const APPROVER_UID: u32 = 63_000;
const REQUESTER_UID: u32 = 63_500;
/// Hostile uids: 50 of them, all mapped to one enrolled user, `eve` (an unmapped peer is
/// refused on its headers and closed at once, so it would hold nothing).
const HOSTILE_UID: u32 = 64_000;
const HOSTILE_UIDS: u32 = 50;

/// Connects to `path` from a thread whose effective uid alone is `uid`.
fn connect_as(path: &Path, uid: u32) -> Res<UnixStream> {
    let path = path.to_path_buf();
    std::thread::spawn(move || -> std::io::Result<UnixStream> {
        // SAFETY: the raw syscall changes only this short-lived thread's credentials.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, -1i32, uid as i32, -1i32) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        UnixStream::connect(path)
    })
    .join()
    .map_err(|_| "connect thread panicked")?
    .map_err(Into::into)
}

/// One request on a fresh connection; the status.
fn call(s: &mut UnixStream, method: &str, path: &str, body: &str) -> Res<u16> {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.get(9..12).ok_or("no status")?.parse()?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn proc_figures(pid: u32) -> (u64, usize) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss / 1024, fds)
}

fn code(user: &str, secret: &str) -> Res<String> {
    Ok(mfa::code_at(user, secret, chrono::Utc::now())?)
}

/// Enrols `name` and confirms the enrolment with the previous step's code (unconfirmed users
/// cannot act; the current step stays free for the bench). Returns the secret.
fn enrol(broker: &Broker, name: &str, roles: std::collections::BTreeSet<Role>) -> Res<String> {
    let secret = broker.enrol_user(name, roles)?.secret_base32;
    let before = chrono::Utc::now() - chrono::Duration::seconds(30);
    broker.confirm_enrolment(name, &mfa::code_at(name, &secret, before)?)?;
    Ok(secret)
}

fn main() -> Res<()> {
    let nums: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let lists = nums.first().copied().unwrap_or(200);
    let approves = nums.get(1).copied().unwrap_or(20);
    let steps = [0usize, 500, 1100];
    let n = approves * steps.len();

    let data = tempfile::tempdir()?;
    let paths = Paths::at(data.path());
    paths.ensure()?;
    let mut policy = String::from(
        "requesters = [\"*\"]\napprovers = [\"*\"]\napprovals_required = 1\nrequest_ttl = \"1h\"\nreason_min_length = 5\n[identities]\n\"root\" = \"lister\"\n",
    );
    for h in 0..HOSTILE_UIDS {
        policy.push_str(&format!("\"uid:{}\" = \"eve\"\n", HOSTILE_UID + h));
    }
    for i in 0..n {
        policy.push_str(&format!("\"uid:{}\" = \"a{i}\"\n", APPROVER_UID + i as u32));
        policy.push_str(&format!(
            "\"uid:{}\" = \"r{i}\"\n",
            REQUESTER_UID + i as u32
        ));
    }
    std::fs::write(paths.policy(), &policy)?;
    let broker = Broker::open(&paths, Default::default())?;
    let both = Role::parse_set("both").ok_or("role")?;
    enrol(&broker, "lister", both.clone())?;
    enrol(&broker, "eve", both.clone())?;
    let mut approvers = Vec::new();
    let mut ids = Vec::new();
    for i in 0..n {
        approvers.push(enrol(&broker, &format!("a{i}"), both.clone())?);
        let r = format!("r{i}");
        let secret = enrol(&broker, &r, both.clone())?;
        let new = NewRequest {
            requester: r.clone(),
            target: "i-0abc1234".into(),
            reason: "bench request".into(),
            incident: None,
            duration: Duration::from_secs(600),
            command: None,
        };
        ids.push(broker.create_request(new, &code(&r, &secret)?)?.id);
    }
    drop(broker);

    let sock_dir = tempfile::tempdir()?;
    // Approvers connect under their own uids: they must reach the socket.
    std::fs::set_permissions(
        sock_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )?;
    let socket = sock_dir.path().join("sombrero.sock");
    let bin: PathBuf = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .ok_or("no target dir")?
        .join("sombrero");
    let mut daemon = Command::new(bin)
        .arg("--data-dir")
        .arg(data.path())
        .args(["serve", "--listen", &format!("unix:{}", socket.display())])
        .env_remove("SOMBRERO_BROKER")
        .env("SOMBRERO_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut err = daemon.stderr.take().ok_or("no stderr")?;
    let mut said = Vec::new();
    let mut buf = [0u8; 512];
    while !String::from_utf8_lossy(&said).contains("listening on") {
        let k = err.read(&mut buf)?;
        if k == 0 {
            return Err("the daemon did not start".into());
        }
        said.extend_from_slice(&buf[..k]);
    }
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let pid = daemon.id();

    println!("hostile  list p50/p99 (ms)   approve p50/p99 (ms)   daemon RSS MiB  fds");
    for (k, &hostile) in steps.iter().enumerate() {
        let mut held = Vec::with_capacity(hostile);
        for h in 0..hostile {
            let mut s = connect_as(&socket, HOSTILE_UID + (h as u32 % HOSTILE_UIDS))?;
            let _ = s.write_all(
                b"POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
            );
            held.push(s);
        }
        // Let the daemon accept and start reading them all.
        std::thread::sleep(Duration::from_secs(1));
        let (rss, fds) = proc_figures(pid);
        let mut list_t = Vec::with_capacity(lists);
        for _ in 0..lists {
            let t = Instant::now();
            let status = call(
                &mut UnixStream::connect(&socket)?,
                "GET",
                "/v1/requests",
                "",
            )?;
            list_t.push(t.elapsed());
            if status != 200 {
                return Err(format!("list answered {status}").into());
            }
        }
        let mut approve_t = Vec::with_capacity(approves);
        for j in k * approves..(k + 1) * approves {
            let name = format!("a{j}");
            let body = format!(
                r#"{{"code":"{}","comment":null}}"#,
                code(&name, &approvers[j])?
            );
            let mut s = connect_as(&socket, APPROVER_UID + j as u32)?;
            let t = Instant::now();
            let status = call(
                &mut s,
                "POST",
                &format!("/v1/requests/{}/approve", ids[j]),
                &body,
            )?;
            approve_t.push(t.elapsed());
            if status != 200 {
                return Err(format!("approve answered {status}").into());
            }
        }
        list_t.sort();
        approve_t.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{hostile:>7}  {:>8.2} / {:<8.2}     {:>8.2} / {:<8.2}      {rss:>8}  {fds:>5}",
            ms(percentile(&list_t, 0.5)),
            ms(percentile(&list_t, 0.99)),
            ms(percentile(&approve_t, 0.5)),
            ms(percentile(&approve_t, 0.99)),
        );
        drop(held);
        std::thread::sleep(Duration::from_millis(300));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    daemon.wait()?;
    Ok(())
}
