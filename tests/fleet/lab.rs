//! The `mi-` path and sessions through `AwsFleet` against the lab (moto has no Session
//! Manager): listing, taint, sessions, rogue classification, automation replacement.

use std::time::Duration;

use crate::common::fleet::{lab, node_ids};
use chrono::Utc;
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

/// `POST path` to the lab by hand (the control routes are plain HTTP); returns the status line.
async fn lab_post(lab: &pink_sombrero::lab::Lab, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = lab.local_addr();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    reply.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_stopped_agent_loses_its_session_reports_connection_lost_then_deregisters() {
    let (lab, fleet) = lab(2).await;
    let ids = node_ids(&fleet).await;
    let (node, other) = (ids[0].clone(), ids[1].clone());
    fleet.taint(&node, &taint("req-lost")).await.unwrap();
    let s = fleet
        .start_session(&node, &SessionReason::for_request("req-lost").unwrap())
        .await
        .unwrap();

    // The test hook: the session ends at once, the node answers no more.
    assert!(lab.stop_agent(&node));
    assert_eq!(
        lab.session_status(&s.session_id),
        Some(pink_sombrero::lab::SessionStatus::Terminated)
    );
    assert!(fleet.active_sessions_on(&node).await.unwrap().is_empty());
    let listed = fleet.list_nodes().await.unwrap();
    let lost = listed.iter().find(|n| n.id == node).unwrap();
    assert_eq!(lost.ping, "ConnectionLost");
    assert_eq!(
        lost.agent_lost(),
        Some(pink_sombrero::fleet::AgentLost::ConnectionLost)
    );
    assert!(lost.tainted(), "the tags stay while it is registered");
    let refused = fleet
        .start_session(&node, &SessionReason::for_request("req-2").unwrap())
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("TargetNotConnected"),
        "{refused}"
    );

    // The documented control routes, as a person would use them.
    assert_eq!(
        lab_post(&lab, &format!("/lab/nodes/{node}/deregister")).await,
        "HTTP/1.1 204 No Content"
    );
    assert_eq!(node_ids(&fleet).await, vec![other.clone()]);
    assert_eq!(
        lab_post(&lab, &format!("/lab/nodes/{node}/stop-agent")).await,
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        lab_post(&lab, &format!("/lab/nodes/{other}/stop-agent")).await,
        "HTTP/1.1 204 No Content"
    );
    let pings: Vec<String> = fleet
        .list_nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.ping)
        .collect();
    assert_eq!(pings, vec!["ConnectionLost"]);
    // An untainted node whose agent is lost is no finding.
    assert_eq!(fleet.list_nodes().await.unwrap()[0].agent_lost(), None);
    lab.shutdown().await;
}
