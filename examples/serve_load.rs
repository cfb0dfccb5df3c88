//! Load on `sombrero serve` daemons over their Unix sockets: concurrent clients creating and
//! approving requests through the real client (`RemoteBroker`, hyper over the socket). One
//! daemon on SQLite by default; `--store dynamodb:TABLE --daemons N` runs N daemons (separate
//! data dirs, the same policy) on one DynamoDB table (created if missing), users spread across
//! them. Reports throughput, p50/p99 latency, and checks through every daemon that no
//! transition was lost or duplicated (final states and event counts, then `audit verify`).
//!
//! Run as root, after `cargo build` (it starts `target/<profile>/sombrero serve`):
//!   cargo run --example serve_load -- [CLIENTS] [USERS_PER_CLIENT] [ROUNDS]
//!   eval "$(scripts/moto-up)"; cargo run --example serve_load -- --store dynamodb:load --daemons 2 50 3 1
//!
//! On moto the figures are moto's: scripts/moto-up serves one call at a time, and moto's
//! TransactWriteItems deep-copies the table it writes, so every write gets slower as the table
//! grows (50 3 1 takes about half a minute; 50 6 1 about two; restart moto between runs).
//!
//! Method. The daemon names every connection by its peer uid, and TOTP accepts each user's
//! code once per 30 s step, so each user acts once per round and each round uses a fresh step.
//! Users `u0..` are enrolled with known secrets straight into the data dir before the daemon
//! starts, and the policy maps `uid:(BASE+i)` to `ui`. Each client thread connects as the uid
//! of the user it acts for: the connector switches only its own thread's effective uid (raw
//! setresuid, which on Linux is per thread) for the `connect` call, so SO_PEERCRED carries
//! that uid. A round: every client creates USERS_PER_CLIENT/3 requests at once; then every
//! client approves the requests of its two neighbours (one approval each, so every request
//! gets two approvals from two different clients racing on it). User `ui` talks to daemon
//! `i % N`, so a request is mostly created on one daemon and approved through others.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::TimeZone;
use futures_util::future::BoxFuture;
use pink_sombrero::api::BrokerApi;
use pink_sombrero::broker::{AuditCheck, Broker};
use pink_sombrero::config::Paths;
use pink_sombrero::mfa;
use pink_sombrero::policy::Role;
use pink_sombrero::remote::{BoxIo, ClientRuntime, Connector, RemoteBroker};
use pink_sombrero::request::{NewRequest, State};
use pink_sombrero::store::any::StoreSpec;
use pink_sombrero::store::dynamo::DynamoStore;

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

/// The code of `u` for the round's `step`, or for the oldest step the broker still accepts
/// if the round has run past it (a slow store); `used` keeps the latest step any code used.
fn round_code(u: &User, step: u64, used: &AtomicU64) -> Res<String> {
    let step = step.max(step_now().saturating_sub(1));
    used.fetch_max(step, Ordering::SeqCst);
    code(&u.name, &u.secret, step)
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

/// What one daemon reports once the rounds are over.
struct Seen {
    listed: usize,
    approved: usize,
    /// Requests whose approvals are not two different people other than the requester.
    bad: usize,
    created_events: usize,
    approval_events: usize,
    approved_events: usize,
    chain: AuditCheck,
}

impl Seen {
    fn through(api: &RemoteBroker) -> Res<Seen> {
        let listed = api.list(None)?;
        let bad = listed
            .iter()
            .filter(|r| {
                r.approvals.len() != 2
                    || r.approvals[0].by == r.approvals[1].by
                    || r.approvals.iter().any(|a| a.by == r.requester)
            })
            .count();
        let events = api.audit_events(0, usize::MAX)?;
        let count = |k: &str| events.iter().filter(|e| e.kind.as_str() == k).count();
        Ok(Seen {
            listed: listed.len(),
            approved: listed.iter().filter(|r| r.state == State::Approved).count(),
            bad,
            created_events: count("request_created"),
            approval_events: count("approval_given"),
            approved_events: count("request_approved"),
            chain: api.verify_audit()?,
        })
    }

    fn holds(&self, expected: usize) -> bool {
        self.listed == expected
            && self.approved == expected
            && self.bad == 0
            && self.created_events == expected
            && self.approval_events == 2 * expected
            && self.approved_events == expected
            && self.chain.broken.is_none()
    }

    fn report(&self) -> String {
        format!(
            "{} listed, {} approved, {} with a wrong approval set; events: request_created {}, approval_given {}, request_approved {}; audit chain {} ({} events)",
            self.listed,
            self.approved,
            self.bad,
            self.created_events,
            self.approval_events,
            self.approved_events,
            if self.chain.broken.is_none() {
                "holds"
            } else {
                "BROKEN"
            },
            self.chain.events
        )
    }
}

fn start_daemon(bin: &PathBuf, data: &PathBuf, store: &StoreSpec, url: &str) -> Res<Child> {
    use std::io::BufRead;
    let mut child = Command::new(bin)
        .arg("--data-dir")
        .arg(data)
        .args(["--store", &store.to_string(), "serve", "--listen", url])
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

/// `--store SPEC`, `--daemons N`, then the numbers.
struct Args {
    store: StoreSpec,
    daemons: usize,
    numbers: Vec<usize>,
}

fn parse_args() -> Res<Args> {
    let mut out = Args {
        store: StoreSpec::Sqlite,
        daemons: 1,
        numbers: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--store" => out.store = args.next().ok_or("--store needs a value")?.parse()?,
            "--daemons" => out.daemons = args.next().ok_or("--daemons needs a value")?.parse()?,
            n => out.numbers.push(n.parse()?),
        }
    }
    if out.daemons == 0 || (out.daemons > 1 && out.store == StoreSpec::Sqlite) {
        return Err("several daemons need a shared store: --store dynamodb:TABLE".into());
    }
    Ok(out)
}

fn main() -> Res<()> {
    let Args {
        store,
        daemons: n_daemons,
        numbers,
    } = parse_args()?;
    let mut args = numbers.into_iter();
    let clients = args.next().unwrap_or(50);
    let per_client = args.next().unwrap_or(12) / 3 * 3;
    let rounds = args.next().unwrap_or(2);
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
    let data: Vec<PathBuf> = (0..n_daemons)
        .map(|k| tmp.path().join(format!("data{k}")))
        .collect();
    let socks: Vec<PathBuf> = (0..n_daemons)
        .map(|k| tmp.path().join(format!("sombrero{k}.sock")))
        .collect();
    let urls: Vec<String> = socks
        .iter()
        .map(|s| format!("unix:{}", s.display()))
        .collect();
    let n_users = clients * per_client;
    if let StoreSpec::Dynamo { table, .. } = &store {
        // A fresh table: the checks count everything on it.
        if !DynamoStore::open(table)?
            .init(&mut |m| eprintln!("{m}"))?
            .created
        {
            return Err(format!("table {table} exists already: name a fresh one").into());
        }
    }

    // Enrol everyone on the broker host, before the daemon runs.
    let t = Instant::now();
    let paths = Paths::at(&data[0]);
    paths.ensure()?;
    let mut policy = String::from(
        "requesters = [\"*\"]\napprovers = [\"*\"]\napprovals_required = 2\nrequest_ttl = \"1h\"\nreason_min_length = 5\n[identities]\n",
    );
    for i in 0..n_users {
        policy.push_str(&format!("\"uid:{}\" = \"u{i}\"\n", BASE_UID + i as u32));
    }
    for d in &data {
        let p = Paths::at(d);
        p.ensure()?;
        std::fs::write(p.policy(), &policy)?;
    }
    let broker = Broker::open_store(&paths, Default::default(), &store)?;
    let mut secrets = Vec::with_capacity(n_users);
    for i in 0..n_users {
        let name = format!("u{i}");
        let e = broker.enrol_user(&name, Role::parse_set("both").ok_or("role")?)?;
        // Confirmed with the previous step's code: the rounds use the current and later ones.
        broker.confirm_enrolment(&name, &code(&name, &e.secret_base32, step_now() - 1)?)?;
        secrets.push(e.secret_base32);
    }
    drop(broker);
    eprintln!(
        "enrolled {n_users} users in {:.1}s; starting {n_daemons} daemon(s) on {store}",
        t.elapsed().as_secs_f64()
    );
    let mut running = Vec::new();
    for (d, url) in data.iter().zip(&urls) {
        running.push(start_daemon(&bin, d, &store, url)?);
    }

    // Clients, each with a runtime shared by its users' connections.
    let mut all = Vec::with_capacity(clients);
    let third = per_client / 3;
    for c in 0..clients {
        let rt = ClientRuntime::new()?;
        let user = |k: usize| -> Res<User> {
            let i = c * per_client + k;
            let api = RemoteBroker::on_runtime(
                urls[i % n_daemons].clone(),
                Arc::new(AsUid {
                    path: socks[i % n_daemons].clone(),
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

    let used = Arc::new(AtomicU64::new(step_now().saturating_sub(1)));
    let created: Arc<Mutex<Vec<Vec<String>>>> = Arc::new(Mutex::new(vec![Vec::new(); clients]));
    let create_lat = Arc::new(Mutex::new(Vec::new()));
    let approve_lat = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut busy = Duration::ZERO;
    let mut total_ids = Vec::new();
    for round in 0..rounds {
        // Each round uses a step nobody used; the ±1 skew lets it start one step early.
        let step = used.load(Ordering::SeqCst) + 1;
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
            let used = used.clone();
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
                        command: None,
                    };
                    let t = Instant::now();
                    match u.api.create_request(new, &round_code(u, step, &used)?) {
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
                        let code = round_code(u, step, &used)?;
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

    // Check through every daemon: every request approved once, by two different people.
    let expected = clients * third * rounds;
    let mut seen = Vec::new();
    for k in 0..n_daemons {
        // User `uk` talks to daemon k.
        let api = RemoteBroker::on_runtime(
            urls[k].clone(),
            Arc::new(AsUid {
                path: socks[k].clone(),
                uid: BASE_UID + k as u32,
            }),
            ClientRuntime::new()?,
        );
        seen.push(Seen::through(&api)?);
    }
    let failures = failures.lock().map_err(|_| "poisoned")?.clone();

    let mut c = create_lat.lock().map_err(|_| "poisoned")?.clone();
    let mut a = approve_lat.lock().map_err(|_| "poisoned")?.clone();
    c.sort();
    a.sort();
    let mut both: Vec<Duration> = c.iter().chain(a.iter()).copied().collect();
    both.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "serve_load: {clients} clients, {n_users} users, {rounds} rounds, {n_daemons} daemon(s) on {store}, {} build",
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
    println!("  requests: {} created", total_ids.len());
    for (k, v) in seen.iter().enumerate() {
        println!("  through daemon {k}: {}", v.report());
    }
    println!("  failed calls: {}", failures.len());
    for f in failures.iter().take(5) {
        println!("    {f}");
    }
    let ok = failures.is_empty()
        && total_ids.len() == expected
        && seen.iter().all(|v| v.holds(expected));
    println!(
        "  lost or duplicated transitions: {}",
        if ok { "none" } else { "SEE ABOVE" }
    );
    for mut daemon in running {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
        daemon.wait()?;
    }
    if ok {
        Ok(())
    } else {
        Err("checks failed".into())
    }
}
