//! Shared by the fleet tests that run against the lab.
#![allow(dead_code)]

use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use pink_sombrero::fleet::aws::AwsFleet;
use pink_sombrero::lab::{Lab, LabConfig};

/// A lab with `nodes` nodes and an `AwsFleet` pointed at it (dummy credentials: the lab
/// wants a SigV4 header, not a valid signature).
pub async fn lab(nodes: usize) -> (Lab, AwsFleet) {
    let lab = pink_sombrero::lab::start(LabConfig {
        nodes,
        automation_delay: Duration::from_millis(50),
        ..LabConfig::default()
    })
    .await
    .unwrap();
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
