//! Building blocks for the reaper and rogue detection: pure functions over listings.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Fleet, FleetError, Node, SessionInfo, SessionReason, SessionState};

/// Why a session counts as rogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RogueReason {
    /// Its reason is not `pink sombrero <request-id>`: it was opened around the tool.
    NotOurReason,
    /// It claims a request, but the store has no such session: a forged or replayed reason.
    UnknownToStore {
        /// The request id its reason names.
        request: String,
    },
}

/// A session that did not go through the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RogueFinding {
    /// The session.
    pub session: SessionInfo,
    /// Why it is rogue.
    pub why: RogueReason,
}

/// Flags the sessions that have no pink-sombrero reason or that the store does not know
/// (`known(session_id)` asks the store).
pub fn classify_sessions(
    sessions: &[SessionInfo],
    known: impl Fn(&str) -> bool,
) -> Vec<RogueFinding> {
    sessions
        .iter()
        .filter_map(|s| {
            let why = match s.reason.as_deref().and_then(SessionReason::request_id_of) {
                None => RogueReason::NotOurReason,
                Some(_) if known(&s.session_id) => return None,
                Some(request) => RogueReason::UnknownToStore {
                    request: request.to_owned(),
                },
            };
            Some(RogueFinding {
                session: s.clone(),
                why,
            })
        })
        .collect()
}

/// Tainted nodes with no active session whose replacement is not in flight and that are not
/// terminated already: what the reaper replaces. A node whose last replacement failed is included, so the reaper retries; so is one
/// whose `requested` mark is stale at `now` (older than `retry_requested_after`, or without a
/// time; see [`Node::replacement_stale`]). `None` never counts a `requested` mark stale.
pub fn tainted_without_active_session(
    nodes: &[Node],
    active: &[SessionInfo],
    now: DateTime<Utc>,
    retry_requested_after: Option<Duration>,
) -> Vec<Node> {
    let busy: HashSet<&str> = active
        .iter()
        .filter(|s| s.state == SessionState::Active)
        .map(|s| s.target.as_str())
        .collect();
    // A limit too large for chrono never comes.
    let stale = |n: &Node| {
        retry_requested_after
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .is_some_and(|limit| n.replacement_stale(now, limit))
    };
    nodes
        .iter()
        .filter(|n| {
            n.tainted()
                && !n.terminated()
                && (!n.replacing() || stale(n))
                && !busy.contains(n.id.as_str())
        })
        .cloned()
        .collect()
}

/// Asks the fleet for nodes and active sessions and returns what the reaper should replace
/// now (see [`tainted_without_active_session`]).
pub async fn reap_candidates(
    fleet: &impl Fleet,
    retry_requested_after: Option<Duration>,
) -> Result<Vec<Node>, FleetError> {
    let nodes = fleet.list_nodes().await?;
    let active = fleet.describe_sessions(SessionState::Active).await?;
    Ok(tainted_without_active_session(
        &nodes,
        &active,
        Utc::now(),
        retry_requested_after,
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fleet::tag;

    fn session(id: &str, target: &str, reason: Option<&str>, state: SessionState) -> SessionInfo {
        SessionInfo {
            session_id: id.into(),
            owner: Some("arn:aws:iam::1:user/x".into()),
            target: target.into(),
            reason: reason.map(str::to_owned),
            start: None,
            end: None,
            status: "Connected".into(),
            state,
        }
    }

    fn node(id: &str, tags: &[(&str, &str)]) -> Node {
        Node {
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            ..Node::online(id)
        }
    }

    #[test]
    fn flags_foreign_and_unknown_sessions() {
        let sessions = [
            session(
                "s-ours",
                "mi-1",
                Some("pink sombrero r1"),
                SessionState::Active,
            ),
            session(
                "s-forged",
                "mi-1",
                Some("pink sombrero r9"),
                SessionState::History,
            ),
            session("s-plain", "mi-2", Some("debugging"), SessionState::Active),
            session("s-none", "mi-2", None, SessionState::History),
        ];
        let found = classify_sessions(&sessions, |id| id == "s-ours");
        let got: Vec<(&str, &RogueReason)> = found
            .iter()
            .map(|f| (f.session.session_id.as_str(), &f.why))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "s-forged",
                    &RogueReason::UnknownToStore {
                        request: "r9".into()
                    }
                ),
                ("s-plain", &RogueReason::NotOurReason),
                ("s-none", &RogueReason::NotOurReason),
            ]
        );
    }

    #[test]
    fn reaps_only_idle_tainted_nodes_not_already_replacing() {
        let tainted = [(tag::TAINTED, "true")];
        let nodes = [
            node("mi-busy", &tainted),
            node("mi-idle", &tainted),
            node("mi-clean", &[]),
            node(
                "mi-replacing",
                &[(tag::TAINTED, "true"), (tag::REPLACEMENT, "requested")],
            ),
            node(
                "mi-failed",
                &[(tag::TAINTED, "true"), (tag::REPLACEMENT, "failed")],
            ),
            Node {
                not_in_ssm: true,
                ec2_state: Some("stopped".into()),
                ..node("i-stopped", &tainted)
            },
            Node {
                not_in_ssm: true,
                ec2_state: Some("terminated".into()),
                ..node("i-gone", &tainted)
            },
        ];
        let active = [
            session(
                "s1",
                "mi-busy",
                Some("pink sombrero r"),
                SessionState::Active,
            ),
            session(
                "s2",
                "mi-idle",
                Some("pink sombrero r"),
                SessionState::History,
            ),
        ];
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let ids: Vec<String> = tainted_without_active_session(&nodes, &active, now, None)
            .into_iter()
            .map(|n| n.id)
            .collect();
        // Whether SSM lists it or not; a terminated instance has nothing left to replace.
        assert_eq!(ids, vec!["mi-idle", "mi-failed", "i-stopped"]);
    }

    #[test]
    fn retries_a_requested_mark_only_once_it_is_stale() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let at = |secs_ago: i64| {
            (now - chrono::Duration::seconds(secs_ago))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        let requested = |id: &str, when: Option<String>| {
            let mut tags = vec![
                (tag::TAINTED, "true".to_owned()),
                (tag::REPLACEMENT, tag::REPLACEMENT_REQUESTED.to_owned()),
            ];
            if let Some(w) = when {
                tags.push((tag::REPLACEMENT_AT, w));
            }
            let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
            node(id, &tags)
        };
        let nodes = [
            requested("mi-fresh", Some(at(60))),
            requested("mi-edge", Some(at(600))),
            requested("mi-stale", Some(at(601))),
            requested("mi-untimed", None),
            requested("mi-garbled", Some("yesterday".into())),
        ];
        let limit = Some(Duration::from_secs(600));
        let ids: Vec<String> = tainted_without_active_session(&nodes, &[], now, limit)
            .into_iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(ids, vec!["mi-stale", "mi-untimed", "mi-garbled"]);
        // Busy nodes stay untouched however old the mark.
        let busy = [session("s", "mi-stale", None, SessionState::Active)];
        assert!(
            !tainted_without_active_session(&nodes, &busy, now, limit)
                .iter()
                .any(|n| n.id == "mi-stale")
        );
        // No limit (strategy none): a requested mark is final.
        assert!(tainted_without_active_session(&nodes, &[], now, None).is_empty());
    }
}
