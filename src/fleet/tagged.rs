//! The taint's home is the instance's tags: EC2 instances carrying `pink-sombrero:tainted=true`,
//! found through the Resource Groups Tagging API whether or not Systems Manager lists them.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_resourcegroupstagging::types::TagFilter;

use super::aws::AwsFleet;
use super::ec2_query::Ec2Instance;
use super::error::api;
use super::{FleetError, Node, TargetKind, tag};

/// The resource type GetResources is asked for.
const EC2_INSTANCE: &str = "ec2:instance";

impl AwsFleet {
    /// Every EC2 instance tagged `pink-sombrero:tainted=true`, with all its tags, by id
    /// (GetResources with a tag filter, every page).
    pub(crate) async fn tainted_instances(
        &self,
    ) -> Result<HashMap<String, BTreeMap<String, String>>, FleetError> {
        let filter = TagFilter::builder()
            .key(tag::TAINTED)
            .values("true")
            .build();
        let mappings: Vec<_> = self
            .tagging
            .get_resources()
            .tag_filters(filter)
            .resource_type_filters(EC2_INSTANCE)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<_, _>>()
            .await
            .map_err(|e| api("GetResources", e))?;
        Ok(mappings
            .iter()
            .filter_map(|m| {
                let id = instance_id_of(m.resource_arn()?)?;
                let tags: BTreeMap<String, String> = m
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().to_owned()))
                    .collect();
                // The filter is the service's; the tag is checked here too.
                (tags.get(tag::TAINTED).map(String::as_str) == Some("true")).then_some((id, tags))
            })
            .collect())
    }
}

/// The instance id in an EC2 instance ARN, if it is a well-formed `i-` id.
pub(crate) fn instance_id_of(arn: &str) -> Option<String> {
    let (_, id) = arn.rsplit_once(":instance/")?;
    (TargetKind::of(id).ok() == Some(TargetKind::Instance)).then(|| id.to_owned())
}

/// The node for a tainted instance Systems Manager does not list: its tags, and what EC2 says
/// of it (`None`: EC2 does not know it, or could not be asked).
pub(crate) fn unlisted_node(
    id: String,
    tags: BTreeMap<String, String>,
    ec2: Option<&Ec2Instance>,
) -> Node {
    Node {
        name: tags.get("Name").filter(|n| !n.is_empty()).cloned(),
        platform: "unknown".to_owned(),
        ping: "-".to_owned(),
        agent_version: None,
        ip: None,
        registered: None,
        launched: ec2.and_then(|i| i.launched),
        tags,
        not_in_ssm: true,
        ec2_state: ec2.and_then(|i| i.state.clone()),
        id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_come_from_instance_arns_only() {
        assert_eq!(
            instance_id_of("arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0")
                .as_deref(),
            Some("i-0123456789abcdef0")
        );
        for bad in [
            "arn:aws:ec2:us-east-1:123456789012:volume/vol-0123456789abcdef0",
            "arn:aws:ec2:us-east-1:123456789012:instance/../etc",
            "arn:aws:ec2:us-east-1:123456789012:instance/mi-0123456789abcdef0",
            "i-0123456789abcdef0",
        ] {
            assert_eq!(instance_id_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_unlisted_instance_says_what_ec2_knows() {
        let tags = BTreeMap::from([
            (tag::TAINTED.to_owned(), "true".to_owned()),
            ("Name".to_owned(), "web-1".to_owned()),
        ]);
        let ec2 = Ec2Instance {
            id: "i-00000001".into(),
            launched: None,
            state: Some("stopped".into()),
        };
        let n = unlisted_node("i-00000001".into(), tags.clone(), Some(&ec2));
        assert!(n.not_in_ssm && n.tainted() && !n.terminated());
        assert_eq!(n.name.as_deref(), Some("web-1"));
        assert_eq!(n.agent_lost(), Some(super::super::AgentLost::NotInSsm));
        let gone = Ec2Instance {
            state: Some("terminated".into()),
            ..ec2
        };
        assert!(unlisted_node("i-00000001".into(), tags.clone(), Some(&gone)).terminated());
        assert_eq!(
            unlisted_node("i-00000001".into(), tags, None).ec2_state,
            None
        );
    }
}
