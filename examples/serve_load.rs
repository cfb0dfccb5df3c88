//! Load on one `sombrero serve` daemon over its Unix socket (SQLite store): concurrent clients
//! creating and approving requests through the real client (`RemoteBroker`, hyper over the
//! socket). Reports throughput, p50/p99 latency, and checks that no transition was lost or
//! duplicated (final states and event counts, then `audit verify`).
//!
//! Run as root, after `cargo build` (it starts `target/<profile>/sombrero serve`):
//!   cargo run --example serve_load -- [CLIENTS] [USERS_PER_CLIENT] [ROUNDS]
//!
//! Method. The daemon names every connection by its peer uid, and TOTP accepts each user's
//! code once per 30 s step, so each user acts once per round and each round uses a fresh step.
//! Users `u0..` are enrolled with known secrets straight into the data dir before the daemon
//! starts, and the policy maps `uid:(BASE+i)` to `ui`. Each client thread connects as the uid
//! of the user it acts for: the connector switches only its own thread's effective uid (raw
//! setresuid, which on Linux is per thread) for the `connect` call, so SO_PEERCRED carries
//! that uid. A round: every client creates USERS_PER_CLIENT/3 requests at once; then every
//! client approves the requests of its two neighbours (one approval each, so every request
//! gets two approvals from two different clients racing on it).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::TimeZone;
use futures_util::future::BoxFuture;
use pink_sombrero::api::BrokerApi;
use pink_sombrero::broker::Broker;
use pink_sombrero::config::Paths;
use pink_sombrero::mfa;
use pink_sombrero::policy::Role;
use pink_sombrero::remote::{BoxIo, ClientRuntime, Connector, RemoteBroker};
use pink_sombrero::request::{NewRequest, State};

/// First uid of the bench users (no passwd entries needed: the policy maps `uid:N`).
const BASE_UID: u32 = 62_000;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Connects as one uid: the calling thread's effective uid is switched for the `connect` only.
struct AsUid {
    path: PathBuf,
    uid: u32,
}

fn set_thread_euid(uid: u32) -> std::io::Result<()> {
    // SAFETY: the raw syscall (unlike libc's setresuid wrapper) changes only this thread's
    // credentials; -1 leaves the real and saved uids (root) as they are, so we can switch back.
    let rc = unsafe { libc::syscall(libc::SYS_setresuid, -1i32, uid as i32, -1i32) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Connector for AsUid {
    fn connect(&self) -> BoxFuture<'static, std::io::Result<BoxIo>> {
        let (path, uid) = (self.path.clone(), self.uid);
        Box::pin(async move {
            // All on this thread, without an await in between.
            set_thread_euid(uid)?;
            let s = std::os::unix::net::UnixStream::connect(&path);
            if let Err(e) = set_thread_euid(0) {
                eprintln!("serve_load: cannot switch back to root: {e}");
                std::process::abort();
            }
            let s = s?;
            s.set_nonblocking(true)?;
            Ok(Box::new(tokio::net::UnixStream::from_std(s)?) as BoxIo)
        })
    }

    fn host(&self) -> String {
        "sombrero.sock".into()
    }
}

fn step_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 30)
        .unwrap_or(0)
}

fn code(user: &str, secret: &str, step: u64) -> Res<String> {
    let at = chrono::Utc
        .timestamp_opt((step * 30 + 1) as i64, 0)
        .single()
        .ok_or("bad time")?;
    Ok(mfa::code_at(user, secret, at)?)
}

struct User {
    name: String,
    secret: String,
    api: RemoteBroker,
}

/// One client's users: requesters, then approvers for the left and the right neighbour.
struct Client {
    requesters: Vec<User>,
    approve_left: Vec<User>,
    approve_right: Vec<User>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn start_daemon(bin: &PathBuf, data: &PathBuf, url: &str) -> Res<Child> {
    use std::io::BufRead;
    let mut child = Command::new(bin)
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--listen", url])
        .env_remove("SOMBRERO_BROKER")
        .env("SOMBRERO_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let err = child.stderr.take().ok_or("no stderr")?;
    let mut err = std::io::BufReader::new(err);
    let mut line = String::new();
    while err.read_line(&mut line)? > 0 && !line.contains("listening on") {
        line.clear();
    }
    if !line.contains("listening on") {
        return Err("the daemon did not start".into());
    }
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    Ok(child)
}

fn main() -> Res<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let clients = args.next().transpose()?.unwrap_or(50);
    let per_client = args.next().transpose()?.unwrap_or(12) / 3 * 3;
    let rounds = args.next().transpose()?.unwrap_or(2);
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 || per_client == 0 || clients < 3 {
        return Err("run as root with at least 3 clients and 3 users per client".into());
    }
    let bin = std::env::current_exe()?
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("sombrero"))
        .ok_or("cannot find the sombrero binary")?;
    let tmp = tempfile::tempdir()?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o750))?;
    let data = tmp.path().join("data");
    let sock = tmp.path().join("sombrero.sock");
    let url = format!("unix:{}", sock.display());
    let n_users = clients * per_client;

    // Enrol everyone on the broker host, before the daemon runs.
    let t = Instant::now();
    let paths = Paths::at(&data);
    paths.ensure()?;
    let mut policy = String::from(
        "requesters = [\"*\"]\napprovers = [\"*\"]\napprovals_required = 2\nrequest_ttl = \"1h\"\nreason_min_length = 5\n[identities]\n",
    );
    for i in 0..n_users {
        policy.push_str(&format!("\"uid:{}\" = \"u{i}\"\n", BASE_UID + i as u32));
    }
    std::fs::write(paths.policy(), policy)?;
    let broker = Broker::open(&paths, Default::default())?;
    let mut secrets = Vec::with_capacity(n_users);
    for i in 0..n_users {
        let e = broker.enrol_user(&format!("u{i}"), Role::parse_set("both").ok_or("role")?)?;
        secrets.push(e.secret_base32);
    }
    drop(broker);
    eprintln!(
        "enrolled {n_users} users in {:.1}s; starting the daemon",
        t.elapsed().as_secs_f64()
    );
    let mut daemon = start_daemon(&bin, &data, &url)?;

    // Clients, each with a runtime shared by its users' connections.
    let mut all = Vec::with_capacity(clients);
    let third = per_client / 3;
    for c in 0..clients {
        let rt = ClientRuntime::new()?;
        let user = |k: usize| -> Res<User> {
            let i = c * per_client + k;
            let api = RemoteBroker::on_runtime(
                url.clone(),
                Arc::new(AsUid {
                    path: sock.clone(),
                    uid: BASE_UID + i as u32,
                }),
                Arc::clone(&rt),
            );
            // Learn (and cache) the identity now, outside the timed part.
            let me = api.whoami()?;
            if me.user != format!("u{i}") {
                return Err(format!("uid {} came out as {}", BASE_UID + i as u32, me.user).into());
            }
            Ok(User {
                name: format!("u{i}"),
                secret: secrets[i].clone(),
                api,
            })
        };
        all.push(Client {
            requesters: (0..third).map(user).collect::<Res<_>>()?,
            approve_left: (third..2 * third).map(user).collect::<Res<_>>()?,
            approve_right: (2 * third..3 * third).map(user).collect::<Res<_>>()?,
        });
    }
    let all = Arc::new(all);

    let first_step = step_now();
    let created: Arc<Mutex<Vec<Vec<String>>>> = Arc::new(Mutex::new(vec![Vec::new(); clients]));
    let create_lat = Arc::new(Mutex::new(Vec::new()));
    let approve_lat = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut busy = Duration::ZERO;
    let mut total_ids = Vec::new();
    for round in 0..rounds {
        // Each round uses a step nobody used; the ±1 skew lets it start one step early.
        let step = first_step + round as u64;
        while step_now() + 1 < step {
            std::thread::sleep(Duration::from_millis(200));
        }
        for v in created.lock().map_err(|_| "poisoned")?.iter_mut() {
            v.clear();
        }
        let barrier = Arc::new(Barrier::new(clients + 1));
        let mut handles = Vec::new();
        for c in 0..clients {
            let (all, created, barrier) = (all.clone(), created.clone(), barrier.clone());
            let (cl, al, f) = (create_lat.clone(), approve_lat.clone(), failures.clone());
            handles.push(std::thread::spawn(move || -> Res<()> {
                let me = &all[c];
                barrier.wait();
                let mut mine = Vec::new();
                for u in &me.requesters {
                    let new = NewRequest {
                        requester: u.name.clone(),
                        target: format!("i-{:08x}", c),
                        reason: "load test".into(),
                        incident: None,
                        duration: Duration::from_secs(600),
                    };
                    let t = Instant::now();
                    match u.api.create_request(new, &code(&u.name, &u.secret, step)?) {
                        Ok(r) => mine.push(r.id),
                        Err(e) => f
                            .lock()
                            .map_err(|_| "poisoned")?
                            .push(format!("create: {e}")),
                    }
                    cl.lock().map_err(|_| "poisoned")?.push(t.elapsed());
                }
                created.lock().map_err(|_| "poisoned")?[c] = mine;
                barrier.wait();
                // Approve the neighbours' requests: left with one set, right with the other.
                let n = all.len();
                let ids = created.lock().map_err(|_| "poisoned")?.clone();
                let left = &ids[(c + n - 1) % n];
                let right = &ids[(c + 1) % n];
                for (users, reqs) in [(&me.approve_left, left), (&me.approve_right, right)] {
                    for (u, id) in users.iter().zip(reqs) {
                        let t = Instant::now();
                        let code = code(&u.name, &u.secret, step)?;
                        if let Err(e) = u.api.approve(id, &u.name, &code, None) {
                            f.lock()
                                .map_err(|_| "poisoned")?
                                .push(format!("approve: {e}"));
                        }
                        al.lock().map_err(|_| "poisoned")?.push(t.elapsed());
                    }
                }
                Ok(())
            }));
        }
        barrier.wait();
        let t = Instant::now();
        barrier.wait();
        for h in handles {
            h.join().map_err(|_| "client thread panicked")??;
        }
        let took = t.elapsed();
        busy += took;
        let ids: Vec<String> = created.lock().map_err(|_| "poisoned")?.concat();
        eprintln!(
            "round {round}: {} requests, {} ops in {:.2}s",
            ids.len(),
            ids.len() * 3,
            took.as_secs_f64()
        );
        total_ids.extend(ids);
    }

    // Check through the daemon: every request approved once, by two different people.
    let checker = &all[0].requesters[0].api;
    let listed = checker.list(None)?;
    let approved = listed.iter().filter(|r| r.state == State::Approved).count();
    let bad: Vec<_> = listed
        .iter()
        .filter(|r| {
            r.approvals.len() != 2
                || r.approvals[0].by == r.approvals[1].by
                || r.approvals.iter().any(|a| a.by == r.requester)
        })
        .map(|r| r.id.clone())
        .collect();
    let events = checker.audit_events(0, usize::MAX)?;
    let count = |k: &str| events.iter().filter(|e| e.kind.as_str() == k).count();
    let check = checker.verify_audit()?;
    let failures = failures.lock().map_err(|_| "poisoned")?.clone();

    let mut c = create_lat.lock().map_err(|_| "poisoned")?.clone();
    let mut a = approve_lat.lock().map_err(|_| "poisoned")?.clone();
    c.sort();
    a.sort();
    let mut both: Vec<Duration> = c.iter().chain(a.iter()).copied().collect();
    both.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "serve_load: {clients} clients, {n_users} users, {rounds} rounds, {} build",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "  throughput: {:.0} ops/s ({} ops in {:.2}s of rounds)",
        both.len() as f64 / busy.as_secs_f64(),
        both.len(),
        busy.as_secs_f64()
    );
    println!(
        "  create  p50 {:.1} ms  p99 {:.1} ms  (n={})",
        ms(percentile(&c, 0.5)),
        ms(percentile(&c, 0.99)),
        c.len()
    );
    println!(
        "  approve p50 {:.1} ms  p99 {:.1} ms  (n={})",
        ms(percentile(&a, 0.5)),
        ms(percentile(&a, 0.99)),
        a.len()
    );
    println!(
        "  all     p50 {:.1} ms  p99 {:.1} ms",
        ms(percentile(&both, 0.5)),
        ms(percentile(&both, 0.99))
    );
    println!(
        "  requests: {} created, {} listed, {approved} approved, {} with a wrong approval set",
        total_ids.len(),
        listed.len(),
        bad.len()
    );
    println!(
        "  events: request_created {}, approval_given {}, request_approved {}; audit chain {} ({} events)",
        count("request_created"),
        count("approval_given"),
        count("request_approved"),
        if check.broken.is_none() {
            "holds"
        } else {
            "BROKEN"
        },
        check.events
    );
    println!("  failed calls: {}", failures.len());
    for f in failures.iter().take(5) {
        println!("    {f}");
    }
    let expected = clients * third * rounds;
    let ok = failures.is_empty()
        && total_ids.len() == expected
        && listed.len() == expected
        && approved == expected
        && bad.is_empty()
        && count("request_created") == expected
        && count("approval_given") == 2 * expected
        && count("request_approved") == expected
        && check.broken.is_none();
    println!(
        "  lost or duplicated transitions: {}",
        if ok { "none" } else { "SEE ABOVE" }
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    daemon.wait()?;
    if ok {
        Ok(())
    } else {
        Err("checks failed".into())
    }
}
