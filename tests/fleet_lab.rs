//! The `mi-` path and sessions through `AwsFleet` against the lab (moto has no Session
//! Manager): listing, taint, sessions, rogue classification, automation replacement.

mod fleet_support;

use std::time::Duration;

use chrono::Utc;
use fleet_support::{lab, node_ids};
use pink_sombrero::fleet::rogue::reap_candidates;
use pink_sombrero::fleet::{
    Fleet, FleetError, ReplaceFailure, ReplaceOptions, ReplaceProgress, ReplaceStrategy,
    ReplacementOutcome, RogueReason, SessionReason, SessionState, Taint, classify_sessions, tag,
};

fn taint(request: &str) -> Taint {
    Taint {
        request: request.into(),
        by: "alice".into(),
        at: Utc::now(),
    }
}

fn quick() -> ReplaceOptions {
    ReplaceOptions {
        timeout: Duration::from_secs(20),
        poll: Duration::from_millis(50),
    }
}

#[tokio::test]
async fn lists_lab_nodes_with_taint_badges() {
    let (lab, fleet) = lab(3).await;
    let nodes = fleet.list_nodes().await.unwrap();
    assert_eq!(nodes.len(), 3);
    for n in &nodes {
        assert!(n.id.starts_with("mi-"), "{}", n.id);
        assert_eq!(n.ping, "Online");
        assert!(!n.tainted());
    }
    fleet.taint(&nodes[1].id, &taint("req-1")).await.unwrap();
    let after = fleet.list_nodes().await.unwrap();
    let tainted: Vec<&str> = after
        .iter()
        .filter(|n| n.tainted())
        .map(|n| n.id.as_str())
        .collect();
    assert_eq!(tainted, vec![nodes[1].id.as_str()]);
    let t = &after.iter().find(|n| n.id == nodes[1].id).unwrap().tags;
    assert_eq!(t.get(tag::REQUEST).map(String::as_str), Some("req-1"));
    assert_eq!(t.get(tag::BY).map(String::as_str), Some("alice"));
    lab.shutdown().await;
}

#[tokio::test]
async fn refused_tagging_of_a_managed_node_fails_closed() {
    let (lab, fleet) = lab(1).await;
    let node = fleet.list_nodes().await.unwrap()[0].id.clone();
    lab.hooks().fail_operation("AddTagsToResource", 1);
    let err = fleet.taint(&node, &taint("req-2")).await.unwrap_err();
    let FleetError::TaintFailed { target, why } = &err else {
        panic!("expected TaintFailed, got {err:?}")
    };
    assert_eq!(target, &node);
    assert!(why.contains("AccessDenied"), "{why}");
    assert!(!fleet.list_nodes().await.unwrap()[0].tainted());
    lab.shutdown().await;
}

#[tokio::test]
async fn sessions_start_list_classify_and_terminate() {
    let (lab, fleet) = lab(2).await;
    let nodes = fleet.list_nodes().await.unwrap();
    let ours = fleet
        .start_session(&nodes[0].id, &SessionReason::for_request("req-3").unwrap())
        .await
        .unwrap();
    assert!(!ours.token.is_empty());
    assert!(ours.stream_url.starts_with("ws"), "{}", ours.stream_url);
    let resumed = fleet.resume_session(&ours.session_id).await.unwrap();
    assert_eq!(resumed.session_id, ours.session_id);

    // A session opened around the tool.
    let rogue = fleet
        .start_session(&nodes[1].id, &SessionReason::for_request("x").unwrap())
        .await
        .unwrap();
    let active = fleet.describe_sessions(SessionState::Active).await.unwrap();
    let mine = active
        .iter()
        .find(|s| s.session_id == ours.session_id)
        .unwrap();
    assert_eq!(mine.target, nodes[0].id);
    assert_eq!(mine.reason.as_deref(), Some("pink sombrero req-3"));
    assert_eq!(mine.state, SessionState::Active);

    let found = classify_sessions(&active, |id| id == ours.session_id);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].session.session_id, rogue.session_id);
    assert_eq!(
        found[0].why,
        RogueReason::UnknownToStore {
            request: "x".into()
        }
    );

    fleet.terminate_session(&ours.session_id).await.unwrap();
    fleet.terminate_session(&rogue.session_id).await.unwrap();
    let history = fleet
        .describe_sessions(SessionState::History)
        .await
        .unwrap();
    let ended = history
        .iter()
        .find(|s| s.session_id == ours.session_id)
        .unwrap();
    assert_eq!(ended.state, SessionState::History);
    assert!(
        !fleet
            .describe_sessions(SessionState::Active)
            .await
            .unwrap()
            .iter()
            .any(|s| s.session_id == ours.session_id)
    );
    lab.shutdown().await;
}

#[tokio::test]
async fn automation_replaces_a_lab_node_with_a_new_id() {
    let (lab, fleet) = lab(2).await;
    let old = fleet.list_nodes().await.unwrap()[0].id.clone();
    fleet.taint(&old, &taint("req-4")).await.unwrap();
    assert_eq!(
        reap_candidates(&fleet, None)
            .await
            .unwrap()
            .iter()
            .map(|n| n.id.as_str())
            .collect::<Vec<_>>(),
        vec![old.as_str()]
    );

    let mut seen = Vec::new();
    let outcome = fleet
        .replace(
            &old,
            &"automation:PinkSombrero-ReplaceNode".parse().unwrap(),
            &quick(),
            |p| seen.push(p),
        )
        .await;
    let ReplacementOutcome::Completed { old: o, new } = outcome else {
        panic!("expected Completed, got {outcome:?}")
    };
    assert_eq!(o, old);
    assert!(new.starts_with("mi-") && new != old, "{new}");
    let ids = node_ids(&fleet).await;
    assert!(ids.contains(&new) && !ids.contains(&old), "{ids:?}");
    assert!(
        seen.iter().any(
            |p| matches!(p, ReplaceProgress::Automation { status, .. } if status == "Success")
        )
    );
    // Nothing tainted is left to reap.
    assert!(reap_candidates(&fleet, None).await.unwrap().is_empty());
    lab.shutdown().await;
}

#[tokio::test]
async fn failed_automation_is_a_failed_outcome_the_reaper_retries() {
    let (lab, fleet) = lab(1).await;
    let node = fleet.list_nodes().await.unwrap()[0].id.clone();
    fleet.taint(&node, &taint("req-5")).await.unwrap();
    lab.hooks().fail_next_automation();
    let outcome = fleet
        .replace(
            &node,
            &"automation:PinkSombrero-ReplaceNode".parse().unwrap(),
            &quick(),
            |_| {},
        )
        .await;
    let ReplacementOutcome::Failed { why } = outcome else {
        panic!("expected Failed, got {outcome:?}")
    };
    assert!(
        matches!(&why, ReplaceFailure::AutomationEnded { status, .. } if status == "Failed"),
        "{why:?}"
    );
    let candidates = reap_candidates(&fleet, None).await.unwrap();
    assert_eq!(candidates.len(), 1);
    assert_eq!(
        candidates[0].tags.get(tag::REPLACEMENT).map(String::as_str),
        Some(tag::REPLACEMENT_FAILED)
    );
    // The asg strategies refuse a managed node outright.
    let outcome = fleet
        .replace(&node, &ReplaceStrategy::Asg, &quick(), |_| {})
        .await;
    assert!(
        matches!(
            outcome,
            ReplacementOutcome::Failed {
                why: ReplaceFailure::NotAnInstance { .. }
            }
        ),
        "{outcome:?}"
    );
    lab.shutdown().await;
}
