//! Broker load: concurrent clients enrol, create requests and approve them through one or
//! more brokers on one store, then the store is checked for lost or doubled transitions.
//!
//! Run: `cargo run --example broker_load -- --store sqlite --clients 50`
//! or, with moto up (`eval "$(scripts/moto-up)"`), `-- --store dynamodb:TABLE --clients 50`
//! (the table is created when missing and must be empty).
//!
//! TOTP is real: every code is computed from the enrolled secret and each user spends each
//! 30 s time step once, as the broker demands. A user may use the current and the next step
//! (the broker allows one step of skew), so each client gets enough users to do its requests
//! without waiting for the clock: `ceil(requests / 2)` requesters and twice as many approvers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use clap::Parser;
use pink_sombrero::audit::EventKind;
use pink_sombrero::broker::{Broker, BrokerOptions};
use pink_sombrero::config::Paths;
use pink_sombrero::policy::Role;
use pink_sombrero::request::{NewRequest, State};
use pink_sombrero::store::any::StoreSpec;
use pink_sombrero::store::dynamo::DynamoStore;

const POLICY: &str = r#"
requesters = ["*"]
approvers = ["*"]
approvals_required = 2
request_ttl = "30m"
grant_window = "15m"
max_session_duration = "1h"
reason_min_length = 10
"#;

#[derive(Parser)]
struct Args {
    /// `sqlite` or `dynamodb:TABLE`.
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Requests each client creates and sees approved.
    #[arg(long, default_value_t = 4)]
    requests: usize,
    /// Brokers the clients are spread over (default: 1 on SQLite, 2 on DynamoDB).
    #[arg(long)]
    brokers: Option<usize>,
}

/// One user and the last time step it spent.
struct Identity {
    name: String,
    secret: String,
    last_step: Option<u64>,
}

impl Identity {
    /// A code for a step this user has not spent: the current one or the next.
    fn code(&mut self) -> anyhow::Result<String> {
        let now = Utc::now().timestamp() as u64 / 30;
        let step = self.last_step.map_or(now, |l| (l + 1).max(now));
        if step > now + 1 {
            bail!(
                "{} has no unspent step left; give clients more users",
                self.name
            );
        }
        self.last_step = Some(step);
        let at = chrono::DateTime::from_timestamp((step * 30) as i64, 0).context("time")?;
        Ok(pink_sombrero::mfa::code_at(&self.name, &self.secret, at)?)
    }
}

type Timings = BTreeMap<&'static str, Vec<Duration>>;

fn timed<T>(
    t: &mut Timings,
    op: &'static str,
    f: impl FnOnce() -> pink_sombrero::broker::Result<T>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    let out = f().with_context(|| format!("{op} failed"))?;
    t.entry(op).or_default().push(start.elapsed());
    Ok(out)
}

/// One client: enrols its users, then creates requests and gets each approved twice.
fn client(broker: &Broker, c: usize, requests: usize) -> anyhow::Result<(Timings, Vec<String>)> {
    let mut t = Timings::new();
    let pairs = requests.div_ceil(2);
    let mut enrol = |name: String, role: Role| -> anyhow::Result<Identity> {
        let e = timed(&mut t, "enrol", || {
            broker.enrol_user(&name, [role].into_iter().collect())
        })?;
        // Confirmed with the previous step's code: the requests use the current and later ones.
        let earlier = chrono::Utc::now() - chrono::Duration::seconds(30);
        let first = pink_sombrero::mfa::code_at(&name, &e.secret_base32, earlier)?;
        timed(&mut t, "confirm", || {
            broker.confirm_enrolment(&name, &first)
        })?;
        Ok(Identity {
            name,
            secret: e.secret_base32,
            last_step: None,
        })
    };
    let mut requesters = Vec::new();
    let mut approvers = Vec::new();
    for p in 0..pairs {
        requesters.push(enrol(format!("c{c}-r{p}"), Role::Requester)?);
        approvers.push(enrol(format!("c{c}-a{p}x"), Role::Approver)?);
        approvers.push(enrol(format!("c{c}-a{p}y"), Role::Approver)?);
    }
    let mut ids = Vec::new();
    for i in 0..requests {
        let p = i / 2;
        let requester = &mut requesters[p];
        let new = NewRequest {
            requester: requester.name.clone(),
            target: "i-0abc1234".into(),
            reason: format!("load test request {i} of client {c}"),
            incident: None,
            duration: Duration::from_secs(600),
            command: None,
        };
        let code = requester.code()?;
        let r = timed(&mut t, "create", || broker.create_request(new, &code))?;
        for (k, op) in [(0, "approve (first)"), (1, "approve (final)")] {
            let ap = &mut approvers[2 * p + k];
            let code = ap.code()?;
            let name = ap.name.clone();
            let after = timed(&mut t, op, || broker.approve(&r.id, &name, &code, None))?;
            let want = if k == 0 {
                State::Pending
            } else {
                State::Approved
            };
            if after.state != want {
                bail!("{} is {:?} after {op}, not {want:?}", r.id, after.state);
            }
        }
        ids.push(r.id);
    }
    Ok((t, ids))
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let spec: StoreSpec = args.store.parse()?;
    let brokers_n = args
        .brokers
        .unwrap_or(if spec == StoreSpec::Sqlite { 1 } else { 2 });
    if let StoreSpec::Dynamo { table, .. } = &spec {
        DynamoStore::open(table)?.init(&mut |m| eprintln!("{m}"))?;
    }
    // SQLite brokers share one data dir (its file is the store); DynamoDB brokers each get
    // their own, as brokers on separate hosts would.
    let shared = tempfile::tempdir()?;
    let mut dirs = Vec::new();
    let mut brokers = Vec::new();
    for _ in 0..brokers_n {
        let dir = match spec {
            StoreSpec::Sqlite => shared.path().to_path_buf(),
            StoreSpec::Dynamo { .. } => {
                let d = tempfile::tempdir()?;
                let p = d.path().to_path_buf();
                dirs.push(d);
                p
            }
        };
        std::fs::write(dir.join("policy.toml"), POLICY)?;
        brokers.push(Arc::new(Broker::open_store(
            &Paths::at(&dir),
            BrokerOptions::default(),
            &spec,
        )?));
    }
    if !brokers[0].audit_events(0, 1)?.is_empty() {
        bail!("{spec} is not empty: give the load test a fresh table");
    }
    eprintln!(
        "{} clients x {} requests over {brokers_n} broker(s) on {spec}",
        args.clients, args.requests
    );
    let all = Arc::new(Mutex::new((Timings::new(), Vec::new(), Vec::new())));
    let start = Instant::now();
    std::thread::scope(|s| {
        for c in 0..args.clients {
            let broker = brokers[c % brokers_n].clone();
            let all = all.clone();
            let requests = args.requests;
            s.spawn(move || {
                let out = client(&broker, c, requests);
                let mut all = all.lock().unwrap_or_else(|p| p.into_inner());
                match out {
                    Ok((t, ids)) => {
                        for (op, mut d) in t {
                            all.0.entry(op).or_default().append(&mut d);
                        }
                        all.1.extend(ids);
                    }
                    Err(e) => all.2.push(format!("client {c}: {e:#}")),
                }
            });
        }
    });
    let wall = start.elapsed();
    let (timings, ids, errors) =
        std::mem::take(&mut *all.lock().unwrap_or_else(|p| p.into_inner()));

    println!(
        "store {spec}, {brokers_n} broker(s), {} clients, {} requests each (debug build: {})",
        args.clients,
        args.requests,
        cfg!(debug_assertions)
    );
    println!("wall {:.2} s, {} errors", wall.as_secs_f64(), errors.len());
    for e in errors.iter().take(5) {
        println!("  {e}");
    }
    let mut total = 0;
    println!(
        "{:<18} {:>6} {:>10} {:>10} {:>10}",
        "operation", "count", "p50", "p99", "max"
    );
    for (op, mut d) in timings {
        d.sort();
        total += d.len();
        println!(
            "{op:<18} {:>6} {:>10} {:>10} {:>10}",
            d.len(),
            ms(pct(&d, 0.5)),
            ms(pct(&d, 0.99)),
            ms(pct(&d, 1.0))
        );
    }
    println!(
        "throughput {:.1} operations/s ({} operations, each one store transaction)",
        total as f64 / wall.as_secs_f64(),
        total
    );

    // Nothing lost, nothing doubled, seen the same through every broker.
    let users = args.clients * args.requests.div_ceil(2) * 3;
    let requests = args.clients * args.requests;
    let mut ok = errors.is_empty() && ids.len() == requests;
    for (i, b) in brokers.iter().enumerate() {
        let approved = b.list(Some(State::Approved))?.len();
        let all = b.list(None)?.len();
        let check = b.verify_audit()?;
        let events = b.audit_events(0, usize::MAX)?;
        let count = |k: EventKind| events.iter().filter(|e| e.kind == k).count();
        let doubled = b
            .list(None)?
            .iter()
            .filter(|r| r.approvals.len() != 2)
            .count();
        let expected_events = users + requests * 7;
        let line_ok = approved == requests
            && all == requests
            && doubled == 0
            && check.broken.is_none()
            && count(EventKind::UserEnrolled) == users
            && count(EventKind::RequestCreated) == requests
            && count(EventKind::ApprovalGiven) == 2 * requests
            && count(EventKind::RequestApproved) == requests
            && count(EventKind::MfaAccepted) == 3 * requests
            && count(EventKind::Refused) == 0
            && events.len() == expected_events;
        println!(
            "broker {i}: {all} requests, {approved} approved, {doubled} without exactly 2 approvals; {} events (expected {expected_events}): {} created, {} approvals, {} approved transitions, {} refused; chain {}",
            events.len(),
            count(EventKind::RequestCreated),
            count(EventKind::ApprovalGiven),
            count(EventKind::RequestApproved),
            count(EventKind::Refused),
            match &check.broken {
                None => format!("holds ({} events)", check.events),
                Some(b) => format!("BROKEN: {b:?}"),
            }
        );
        ok &= line_ok;
    }
    if !ok {
        bail!("lost or doubled transitions (see above)");
    }
    println!("check: zero lost or duplicated transitions");
    Ok(())
}
