//! Listing nodes: DescribeInstanceInformation (all pages) plus each node's tags, the tainted EC2
//! instances it does not list (see [`super::tagged`]), and the launch time and state of EC2
//! instances (DescribeInstances).

use std::collections::{BTreeMap, HashMap};

use aws_sdk_ssm::types::{InstanceInformation, ResourceTypeForTagging};

use super::aws::AwsFleet;
use super::ec2_query::Ec2Instance;
use super::error::api;
use super::tagged::unlisted_node;
use super::{FleetError, Node, TargetKind, to_utc};

/// GetResources accepts at most this many ARNs per call.
const ARNS_PER_GET_RESOURCES: usize = 100;

impl AwsFleet {
    /// Every node with its tags.
    pub(crate) async fn nodes(&self) -> Result<Vec<Node>, FleetError> {
        let infos: Vec<InstanceInformation> = self
            .ssm
            .describe_instance_information()
            .into_paginator()
            .items()
            .send()
            .collect::<Result<_, _>>()
            .await
            .map_err(|e| api("DescribeInstanceInformation", e))?;
        let mut nodes: Vec<Node> = infos.iter().filter_map(node_from_info).collect();
        // The taint lives on the instance: tagged instances SSM does not list are nodes too.
        let mut unlisted = self.tainted_instances().await?;
        unlisted.retain(|id, _| !nodes.iter().any(|n| n.id == *id));
        let instance_ids: Vec<&str> = nodes
            .iter()
            .filter(|n| TargetKind::of(&n.id).ok() == Some(TargetKind::Instance))
            .map(|n| n.id.as_str())
            .collect();
        let mut instance_tags = self.instance_tags(&instance_ids).await?;
        let mut asked = instance_ids.clone();
        asked.extend(unlisted.keys().map(String::as_str));
        // Age is a finding, not a gate: a role without ec2:DescribeInstances (or an EC2 outage)
        // must not stop the listing that reaping and tainting checks depend on. The ages stay
        // unknown and callers say so (see `Node::launched`); so do the states of unlisted
        // instances, which the reaper then treats as live.
        let mut ec2: HashMap<String, Ec2Instance> = match self.ec2.describe_known(&asked).await {
            Ok(found) => found.into_iter().map(|i| (i.id.clone(), i)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "EC2 DescribeInstances unavailable; ages of i- instances unknown");
                HashMap::new()
            }
        };
        for node in &mut nodes {
            node.launched = ec2.remove(&node.id).and_then(|i| i.launched);
            node.tags = match TargetKind::of(&node.id) {
                Ok(TargetKind::Instance) => instance_tags.remove(&node.id).unwrap_or_default(),
                Ok(TargetKind::Managed) => self.managed_tags(&node.id).await?,
                // An id of neither shape (a future node type) is listed without tags.
                Err(_) => BTreeMap::new(),
            };
            if let Some(n) = node.tags.get("Name").filter(|n| !n.is_empty()) {
                node.name = Some(n.clone());
            }
        }
        nodes.extend(unlisted.into_iter().map(|(id, tags)| {
            let found = ec2.get(&id);
            unlisted_node(id, tags, found)
        }));
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(nodes)
    }

    /// Tags of EC2 instances by id, through the tagging API (batches of ARNs).
    pub(crate) async fn instance_tags(
        &self,
        ids: &[&str],
    ) -> Result<HashMap<String, BTreeMap<String, String>>, FleetError> {
        let mut by_id = HashMap::new();
        for chunk in ids.chunks(ARNS_PER_GET_RESOURCES) {
            let mut arns = Vec::with_capacity(chunk.len());
            for id in chunk {
                arns.push(self.instance_arn(id).await?);
            }
            let mappings: Vec<_> = self
                .tagging
                .get_resources()
                .set_resource_arn_list(Some(arns))
                .into_paginator()
                .items()
                .send()
                .collect::<Result<_, _>>()
                .await
                .map_err(|e| api("GetResources", e))?;
            for m in mappings {
                let Some(id) = m
                    .resource_arn()
                    .and_then(|a| a.rsplit_once("instance/"))
                    .map(|(_, id)| id.to_owned())
                else {
                    continue;
                };
                let tags = m
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().to_owned()))
                    .collect();
                by_id.insert(id, tags);
            }
        }
        Ok(by_id)
    }

    /// Launch times of EC2 instances by id (DescribeInstances); ids EC2 does not know are left
    /// out (see [`super::ec2_query::Ec2Query::launch_times`]).
    pub async fn launch_times(
        &self,
        ids: &[&str],
    ) -> Result<HashMap<String, chrono::DateTime<chrono::Utc>>, FleetError> {
        self.ec2.launch_times(ids).await
    }

    /// Tags of a managed node, through SSM.
    pub(crate) async fn managed_tags(
        &self,
        id: &str,
    ) -> Result<BTreeMap<String, String>, FleetError> {
        let out = self
            .ssm
            .list_tags_for_resource()
            .resource_type(ResourceTypeForTagging::ManagedInstance)
            .resource_id(id)
            .send()
            .await
            .map_err(|e| api("ListTagsForResource", e))?;
        Ok(out
            .tag_list()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect())
    }
}

/// A node from one DescribeInstanceInformation entry; entries without an id are skipped.
fn node_from_info(i: &InstanceInformation) -> Option<Node> {
    let id = i.instance_id()?.to_owned();
    let platform = match (i.platform_type(), i.platform_name()) {
        (Some(t), Some(n)) if !n.is_empty() => format!("{} ({n})", t.as_str()),
        (Some(t), _) => t.as_str().to_owned(),
        (None, Some(n)) => n.to_owned(),
        (None, None) => "unknown".to_owned(),
    };
    Some(Node {
        id,
        name: i
            .name()
            .or(i.computer_name())
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        platform,
        ping: i.ping_status().map_or("Unknown", |p| p.as_str()).to_owned(),
        agent_version: i.agent_version().map(str::to_owned),
        ip: i.ip_address().map(str::to_owned),
        registered: i.registration_date().and_then(to_utc),
        launched: None,
        tags: BTreeMap::new(),
        not_in_ssm: false,
        ec2_state: None,
    })
}
