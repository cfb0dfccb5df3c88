//! Between the fleet and the UI: nodes as rows.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::fleet::{AgentLost, Node};
use crate::text::escaped;
use crate::workflows::scan::NodeRow;

use super::model::{Badge, FleetRow};

/// The row for one node at `now`; `max_age` is the policy's `max_instance_age` (`None`: off).
pub fn fleet_row(node: &Node, now: DateTime<Utc>, max_age: Option<Duration>) -> FleetRow {
    let mut badges = Vec::new();
    if node.tainted() {
        badges.push(taint_badge(node.agent_lost()));
    }
    if node.replacing() {
        badges.push(Badge::Replacing);
    }
    if node.old(now, max_age) {
        badges.push(Badge::Old);
    }
    FleetRow {
        id: node.id.clone(),
        // AWS strings: ratatui drops control characters but not bidi overrides.
        name: escaped(node.name.as_deref().unwrap_or_default()),
        // SSM has no ping for a node it does not list: EC2's state says more.
        ping: match (&node.ec2_state, node.not_in_ssm) {
            (Some(state), true) => escaped(&format!("EC2 {state}")),
            _ => escaped(&node.ping),
        },
        platform: escaped(&node.platform),
        since: node.launched.or(node.registered),
        badges,
    }
}

/// The taint badge, saying why a tainted node is out of SSM's reach if it is.
fn taint_badge(lost: Option<AgentLost>) -> Badge {
    match lost {
        None => Badge::Tainted,
        Some(AgentLost::NotInSsm) => Badge::TaintedNotInSsm,
        Some(AgentLost::ConnectionLost) => Badge::TaintedAgentLost,
    }
}

/// The row for one node as a broker daemon listed it (its marks made there).
pub fn listed_row(row: &NodeRow) -> FleetRow {
    let badges = [
        (row.tainted, taint_badge(row.agent_lost)),
        (row.replacing, Badge::Replacing),
        (row.rogue_touched, Badge::Rogue),
        (row.old, Badge::Old),
    ]
    .into_iter()
    .filter_map(|(on, badge)| on.then_some(badge))
    .collect();
    FleetRow {
        badges,
        ..fleet_row(&row.node, Utc::now(), None)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fleet::tag;

    #[test]
    fn rows_carry_badges_and_the_age_base() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let launched = now - chrono::Duration::days(20);
        let node = Node {
            name: Some("web-1".into()),
            registered: Some(now - chrono::Duration::days(1)),
            launched: Some(launched),
            tags: BTreeMap::from([(tag::TAINTED.to_owned(), "true".to_owned())]),
            ..Node::online("i-0123456789abcdef0")
        };
        let fortnight = Some(Duration::from_secs(14 * 86_400));
        let row = fleet_row(&node, now, fortnight);
        assert_eq!(row.since, Some(launched));
        assert_eq!(row.badges, vec![Badge::Tainted, Badge::Old]);
        assert_eq!(fleet_row(&node, now, None).badges, vec![Badge::Tainted]);
        let month = Some(Duration::from_secs(30 * 86_400));
        assert_eq!(fleet_row(&node, now, month).badges, vec![Badge::Tainted]);
        // Out of SSM's reach: the badge says why, the ping column shows EC2's state.
        let unlisted = Node {
            not_in_ssm: true,
            ec2_state: Some("stopped".into()),
            ..node.clone()
        };
        let row = fleet_row(&unlisted, now, None);
        assert_eq!(row.badges, vec![Badge::TaintedNotInSsm]);
        assert_eq!(row.badges[0].label(), "TAINTED · NOT IN SSM");
        assert_eq!(row.ping, "EC2 stopped");
        let lost = Node {
            ping: "ConnectionLost".into(),
            ..node
        };
        assert_eq!(
            fleet_row(&lost, now, None).badges,
            vec![Badge::TaintedAgentLost]
        );
        // Through a daemon: the row's own mark decides.
        let listed =
            crate::workflows::scan::node_rows(vec![unlisted], &Default::default(), None, now);
        assert_eq!(listed_row(&listed[0]).badges, vec![Badge::TaintedNotInSsm]);
    }
}
