//! The fleet through `sombrero serve`: a thin client with no AWS configuration at all lists
//! the daemon's fleet (badges included) and, as an approver, runs the rogue scan there, which
//! audits each finding once in the daemon's store, and reaps there; a requester may list but
//! neither scan nor reap.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use crate::common::cli::{BIN, lab_env};
use crate::common::daemon::Daemon;
use chrono::Utc;
use pink_sombrero::audit::EventKind;
use pink_sombrero::backend::Backend;
use pink_sombrero::backend::remote::Remote;
use pink_sombrero::fleet::aws::AwsFleet;
use pink_sombrero::fleet::{Fleet, SessionReason, Taint};
use pink_sombrero::lab::Lab;
use pink_sombrero::remote::RemoteBroker;
use pink_sombrero::tui::fleet_view::listed_row;
use pink_sombrero::tui::model::Badge;
use pink_sombrero::wire::Endpoint;
use serde_json::Value;

const RITA: u32 = 2101;
const ANN: u32 = 2102;

const POLICY: &str = r#"
requesters = ["*"]
approvers = ["ann"]
approvals_required = 1
replacement = "automation:PinkSombrero-ReplaceNode"

[identities]
"uid:2101" = "rita"
"uid:2102" = "ann"
"root" = "ann"
"#;

struct World {
    daemon: Daemon,
    lab: Lab,
    fleet: AwsFleet,
    /// The clients' homes; open to the client uids.
    homes: tempfile::TempDir,
}

impl World {
    async fn new() -> World {
        let (lab, fleet) = crate::common::fleet::lab(2).await;
        let mut daemon = Daemon::new(POLICY, &[("rita", "requester"), ("ann", "approver")]);
        daemon.start_with(|c| lab_env(c, &lab.endpoint_url()));
        let homes = tempfile::tempdir().unwrap();
        std::fs::set_permissions(homes.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        World {
            daemon,
            lab,
            fleet,
            homes,
        }
    }

    /// `sombrero --broker unix:SOCK ARGS` as `uid` with an empty environment: no AWS_*
    /// variables, a fresh empty HOME, no credentials or config files of any kind.
    fn client(&self, uid: u32, args: &[&str]) -> Output {
        let home: PathBuf = self.homes.path().join(format!("home-{uid}"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
        Command::new("/usr/bin/setpriv")
            .args([
                &format!("--reuid={uid}"),
                "--regid=0",
                "--clear-groups",
                BIN,
                "--data-dir",
                home.join("data").to_str().unwrap(),
                "--broker",
                &self.daemon.url(),
            ])
            .args(args)
            .env_clear()
            .env("HOME", &home)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Taints the first lab node, as a session that never closed would have; returns the
    /// node ids, the tainted one first.
    async fn taint_first(&self) -> Vec<String> {
        let nodes: Vec<String> = self.lab.nodes().into_iter().map(|n| n.id).collect();
        let taint = Taint {
            request: "req-crashed".into(),
            by: "ann".into(),
            at: Utc::now(),
        };
        self.fleet.taint(&nodes[0], &taint).await.unwrap();
        nodes
    }

    /// The data of the daemon's audit events of `kind`.
    fn events(&self, kind: EventKind) -> Vec<Value> {
        crate::common::fleet::events(self.daemon.env.path(), kind)
    }
}

fn json(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_aws_credentials_lists_the_daemons_fleet() {
    let w = World::new().await;
    let nodes = w.taint_first().await;

    let rows = json(&w.client(RITA, &["fleet", "--json"]));
    let rows = rows.as_array().unwrap();
    let mut listed: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    listed.sort_unstable();
    let mut want: Vec<&str> = nodes.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(listed, want);
    for r in rows {
        let tainted = r["id"] == nodes[0].as_str();
        assert_eq!(r["tainted"], tainted, "{r}");
        assert_eq!(r["replacing"], false, "{r}");
        assert_eq!(r["rogue_touched"], false, "{r}");
        assert_eq!(r["old"], false, "{r}");
        assert!(r["age_seconds"].is_i64(), "{r}");
    }

    let table = w.client(RITA, &["fleet"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(table.status.code(), Some(0), "{table:?}");
    let line = text.lines().find(|l| l.starts_with(&nodes[0])).unwrap();
    assert!(line.ends_with("TAINTED"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rogue_scan_runs_on_the_daemon_for_approvers_only() {
    let w = World::new().await;
    let node = w.lab.nodes()[0].id.clone();
    // Opened around the broker: a reason that claims a request the store never opened.
    let rogue = w
        .fleet
        .start_session(&node, &SessionReason::for_request("req-forged").unwrap())
        .await
        .unwrap();

    // A requester may list but not scan.
    let refused = w.client(RITA, &["rogue", "--json"]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("approvers and reviewers"),
        "{refused:?}"
    );
    assert!(w.events(EventKind::RogueSessionFound).is_empty());

    let first = json(&w.client(ANN, &["rogue", "--json"]));
    let first = first.as_array().unwrap();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["finding"], "rogue_session");
    assert_eq!(first[0]["session"]["session_id"], rogue.session_id.as_str());
    assert_eq!(first[0]["why"]["kind"], "unknown_to_store");
    assert_eq!(first[0]["new"], true);
    let second = json(&w.client(ANN, &["rogue", "--json"]));
    assert_eq!(second[0]["new"], false, "{second}");
    // Audited once, in the daemon's store, as the approver who ran the scan.
    let found = w.events(EventKind::RogueSessionFound);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["session_id"], rogue.session_id.as_str());

    // The daemon's listing marks the node.
    let rows = json(&w.client(RITA, &["fleet", "--json"]));
    let touched: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["rogue_touched"] == true)
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(touched, [node.as_str()]);

    // A requester may not reap either.
    let refused = w.client(RITA, &["reap", "--dry-run", "--json"]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("approvers and reviewers"),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_runs_on_the_daemon_for_approvers() {
    let w = World::new().await;
    let nodes = w.taint_first().await;
    // Its agent goes away: the daemon's listing, scan and reaper are the local ones.
    assert!(w.lab.stop_agent(&nodes[0]));
    let rows = json(&w.client(RITA, &["fleet", "--json"]));
    let lost: Vec<&Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["agent_lost"].is_null())
        .collect();
    assert_eq!(lost.len(), 1, "{rows}");
    assert_eq!(lost[0]["id"], nodes[0].as_str());
    assert_eq!(lost[0]["agent_lost"], "connection_lost");
    for new in [true, false] {
        let found = json(&w.client(ANN, &["rogue", "--json"]));
        assert_eq!(found[0]["finding"], "agent_lost_while_tainted", "{found}");
        assert_eq!(found[0]["new"], new, "{found}");
    }
    assert_eq!(w.events(EventKind::AgentLostWhileTainted).len(), 1);

    let dry = json(&w.client(ANN, &["reap", "--dry-run", "--json"]));
    let dry = dry.as_array().unwrap();
    assert_eq!(dry.len(), 1, "{dry:?}");
    assert_eq!(dry[0]["target"], nodes[0].as_str());
    assert_eq!(dry[0]["outcome"], "would-replace");
    assert!(w.events(EventKind::ReplacementRequested).is_empty());

    let done = json(&w.client(ANN, &["reap", "--json"]));
    assert_eq!(done[0]["target"], nodes[0].as_str(), "{done}");
    assert_eq!(done[0]["outcome"], "completed", "{done}");
    assert!(!w.lab.nodes().into_iter().any(|n| n.id == nodes[0]));
    // Audited in the daemon's store before it started.
    let asked = w.events(EventKind::ReplacementRequested);
    assert_eq!(asked.len(), 1, "{asked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tuis_fleet_view_lists_through_the_daemon() {
    let w = World::new().await;
    let nodes = w.taint_first().await;
    let endpoint: Endpoint = w.daemon.url().parse().unwrap();
    let remote = Arc::new(RemoteBroker::connect(&endpoint).unwrap());
    let listed = Remote::new(Arc::clone(&remote)).fleet().await.unwrap();
    let rows: Vec<_> = listed.iter().map(listed_row).collect();
    assert_eq!(rows.len(), nodes.len(), "{rows:?}");
    let first = rows.iter().find(|r| r.id == nodes[0]).unwrap();
    assert_eq!(first.badges, [Badge::Tainted]);
    assert!(
        rows.iter()
            .filter(|r| r.id != nodes[0])
            .all(|r| r.badges.is_empty())
    );
    // The client runtime is not dropped on an async thread.
    tokio::task::spawn_blocking(move || drop(remote))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_without_a_fleet_says_why() {
    let mut daemon = Daemon::new(POLICY, &[("ann", "approver")]);
    // No region anywhere: the daemon serves, without a fleet.
    daemon.start_with(|c| {
        c.env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("AWS_PROFILE")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    });
    let out = Command::new(BIN)
        .args(["--broker", &daemon.url(), "fleet"])
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert!(err.contains("no fleet"), "{err}");
    assert!(err.contains("region"), "{err}");
}
