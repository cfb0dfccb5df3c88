//! Shared by the fleet tests that run against the lab.

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use pink_sombrero::fleet::aws::AwsFleet;
use pink_sombrero::lab::Lab;

/// A lab with `nodes` nodes and an `AwsFleet` pointed at it (dummy credentials: the lab
/// wants a SigV4 header, not a valid signature).
pub async fn lab(nodes: usize) -> (Lab, AwsFleet) {
    let lab = super::lab::lab(nodes).await;
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("lab", "lab-secret", None, None, "test"))
        .load()
        .await;
    // The tagging API at the lab too: an emulator another test shares (moto) must not lend
    // this fleet its tainted instances.
    let fleet = AwsFleet::from_config(&sdk, Some(&lab.endpoint_url()))
        .unwrap()
        .with_tagging_endpoint(&lab.endpoint_url());
    (lab, fleet)
}

/// The ids of the nodes the fleet lists now.
pub async fn node_ids(fleet: &AwsFleet) -> Vec<String> {
    use pink_sombrero::fleet::Fleet;
    fleet
        .list_nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect()
}

/// The data of the audit events of `kind` in a data dir.
pub fn events(
    dir: &std::path::Path,
    kind: pink_sombrero::audit::EventKind,
) -> Vec<serde_json::Value> {
    use pink_sombrero::broker::{Broker, BrokerOptions};
    let b = Broker::open(
        &pink_sombrero::config::Paths::at(dir),
        BrokerOptions::default(),
    )
    .unwrap();
    b.audit_events(0, 10_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.data)
        .collect()
}

/// Runs `sombrero <args> --json …` (`cmd` carries the rest), without the caller's profile,
/// policy or config; returns (exit code, stdout as JSON).
pub async fn sombrero_json(
    mut cmd: tokio::process::Command,
    args: &[&str],
) -> (i32, serde_json::Value) {
    let out = cmd
        .env_remove("AWS_ENDPOINT_URL_SSM")
        .env_remove("AWS_PROFILE")
        .env_remove("SOMBRERO_POLICY")
        .env_remove("SOMBRERO_CONFIG")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}
