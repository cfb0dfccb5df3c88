//! Fleet of nodes behind AWS Systems Manager: listing, sessions, taint and replacement.
//!
//! [`Fleet`] is the one interface the broker uses; [`aws::AwsFleet`] implements it over the AWS
//! SDK (and so also over the lab, which speaks the SSM API). Types here carry no SDK types so the
//! rest of the crate never depends on them. This is the AWS adapter only: what the broker does
//! with a fleet (the reaper, the rogue scan) is in [`crate::workflows`].

pub mod aws;
pub mod ec2_query;
mod error;
mod nodes;
pub mod replace;
pub mod rogue;
mod sessions;
mod tagged;
pub mod taint;
mod target;

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use error::FleetError;
pub use replace::{ReplaceFailure, ReplaceOptions, ReplaceProgress, ReplaceStrategy};
pub use rogue::{RogueFinding, RogueReason, classify_sessions, tainted_without_active_session};
pub use sessions::{COMMAND_DOCUMENT, SessionReason};
pub use taint::{Taint, tag};
pub use target::TargetKind;

/// One node (EC2 instance `i-…` or managed node `mi-…`) as Systems Manager sees it, or a
/// tainted EC2 instance it does not list ([`Node::not_in_ssm`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The node id (`i-…` or `mi-…`).
    pub id: String,
    /// The `Name` tag, else the computer name the agent reports.
    pub name: Option<String>,
    /// Platform: type and name, e.g. `Linux (Ubuntu)`.
    pub platform: String,
    /// Agent ping status (`Online`, `ConnectionLost`, `Inactive`).
    pub ping: String,
    /// SSM agent version.
    pub agent_version: Option<String>,
    /// IP address the agent reports.
    pub ip: Option<String>,
    /// When the node registered with Systems Manager (managed nodes).
    pub registered: Option<DateTime<Utc>>,
    /// When the EC2 instance launched (`i-` instances, from DescribeInstances).
    pub launched: Option<DateTime<Utc>>,
    /// The node's tags.
    pub tags: BTreeMap<String, String>,
    /// Systems Manager does not list it: an EC2 instance found by its taint tag alone (its
    /// agent was stopped, uninstalled or deregistered, its role lost, or it was stopped).
    #[serde(default)]
    pub not_in_ssm: bool,
    /// Its EC2 state (`running`, `stopped`, `terminated`, …) for an instance Systems Manager
    /// does not list, when DescribeInstances told.
    #[serde(default)]
    pub ec2_state: Option<String>,
}

/// Why a tainted node is out of Systems Manager's reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentLost {
    /// Systems Manager does not list it at all.
    NotInSsm,
    /// Listed, but its agent does not answer (PingStatus `ConnectionLost` or `Inactive`).
    ConnectionLost,
}

impl AgentLost {
    /// The badge the listings show for it.
    pub fn badge(self) -> &'static str {
        match self {
            AgentLost::NotInSsm => "TAINTED · NOT IN SSM",
            AgentLost::ConnectionLost => "TAINTED · AGENT LOST",
        }
    }
}

impl Node {
    /// Whether a pink-sombrero session touched this node (it carries the taint tag).
    pub fn tainted(&self) -> bool {
        self.tags.get(tag::TAINTED).map(String::as_str) == Some("true")
    }

    /// Why this tainted node is out of Systems Manager's reach, if it is (`None` for an
    /// untainted node or one whose agent answers).
    pub fn agent_lost(&self) -> Option<AgentLost> {
        if !self.tainted() {
            None
        } else if self.not_in_ssm {
            Some(AgentLost::NotInSsm)
        } else if self.ping != "Online" {
            Some(AgentLost::ConnectionLost)
        } else {
            None
        }
    }

    /// Whether EC2 says the instance is terminated (or shutting down): nothing left to replace.
    pub fn terminated(&self) -> bool {
        matches!(
            self.ec2_state.as_deref(),
            Some("shutting-down" | "terminated")
        )
    }

    /// Whether a replacement of this node has been requested and not reported failed.
    pub fn replacing(&self) -> bool {
        self.tags.get(tag::REPLACEMENT).map(String::as_str) == Some(tag::REPLACEMENT_REQUESTED)
    }

    /// When the replacement state was last marked ([`tag::REPLACEMENT_AT`]), if readable.
    pub fn replacement_marked_at(&self) -> Option<DateTime<Utc>> {
        self.tags
            .get(tag::REPLACEMENT_AT)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    }

    /// Whether the node is marked `requested` but the mark is older than `limit`, or carries
    /// no readable time (written before the time was recorded): the run that made it most
    /// likely died between the mark and the replacement call or its outcome.
    pub fn replacement_stale(&self, now: DateTime<Utc>, limit: chrono::Duration) -> bool {
        self.replacing()
            && self
                .replacement_marked_at()
                .is_none_or(|at| now - at > limit)
    }

    /// How long the node has existed, where the API tells: since launch for an EC2 instance,
    /// else since registration.
    pub fn age(&self, now: DateTime<Utc>) -> Option<chrono::Duration> {
        self.launched.or(self.registered).map(|r| now - r)
    }

    /// Whether the node is older than `max_age` (the policy's `max_instance_age`; `None` turns
    /// the check off). A node whose age is unknown is not called old.
    pub fn old(&self, now: DateTime<Utc>, max_age: Option<std::time::Duration>) -> bool {
        match (self.age(now), max_age.map(chrono::Duration::from_std)) {
            (Some(age), Some(Ok(max))) => age > max,
            // No limit, an unknown age, or a limit beyond chrono's range (never reached).
            _ => false,
        }
    }
}

/// What StartSession / ResumeSession return: enough to open the data channel.
#[derive(Clone, PartialEq, Eq)]
pub struct StartedSession {
    /// The session id.
    pub session_id: String,
    /// The token the data channel's open frame carries (a secret: never logged).
    pub token: String,
    /// The websocket URL of the data channel.
    pub stream_url: String,
}

impl std::fmt::Debug for StartedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartedSession")
            .field("session_id", &self.session_id)
            .field("token", &"<redacted>")
            .field("stream_url", &self.stream_url)
            .finish()
    }
}

/// Which sessions DescribeSessions lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Connected, connecting, disconnected or terminating.
    Active,
    /// Ended (the service keeps them for 30 days).
    History,
}

/// One Session Manager session as DescribeSessions reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session id.
    pub session_id: String,
    /// Who started it (an IAM ARN).
    pub owner: Option<String>,
    /// The node it is on.
    pub target: String,
    /// The reason given at StartSession.
    pub reason: Option<String>,
    /// When it started.
    pub start: Option<DateTime<Utc>>,
    /// When it ended.
    pub end: Option<DateTime<Utc>>,
    /// The service's status (`Connected`, `Terminated`, …).
    pub status: String,
    /// Which listing it came from.
    pub state: SessionState,
}

/// How a replacement ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplacementOutcome {
    /// The old node left service and a new one is in service.
    Completed {
        /// The replaced node.
        old: String,
        /// Its replacement.
        new: String,
    },
    /// The replacement could not be requested or did not finish.
    Failed {
        /// Why.
        why: ReplaceFailure,
    },
    /// Requested; nothing more can be observed from here (strategy `none`, or an
    /// `asg-unhealthy` group that had not replaced the node by the timeout).
    Requested {
        /// What was done and what is expected to happen next.
        note: String,
    },
}

/// The fleet: everything the broker needs from AWS (or the lab).
///
/// Futures are `Send` so the broker can run them on any tokio task.
pub trait Fleet {
    /// Lists every node Systems Manager knows, with its tags, plus every EC2 instance carrying
    /// the taint tag that Systems Manager does not list (the tag is the taint's home).
    fn list_nodes(&self) -> impl Future<Output = Result<Vec<Node>, FleetError>> + Send;

    /// Starts a shell session on `target` with the given reason.
    fn start_session(
        &self,
        target: &str,
        reason: &SessionReason,
    ) -> impl Future<Output = Result<StartedSession, FleetError>> + Send;

    /// Starts a one-shot command session on `target` through [`COMMAND_DOCUMENT`]: its stdout,
    /// stderr and exit status come back apart.
    fn start_command_session(
        &self,
        target: &str,
        reason: &SessionReason,
        command: &str,
    ) -> impl Future<Output = Result<StartedSession, FleetError>> + Send;

    /// Gets a fresh stream URL and token for a session whose socket was lost.
    fn resume_session(
        &self,
        session_id: &str,
    ) -> impl Future<Output = Result<StartedSession, FleetError>> + Send;

    /// Ends a session for good.
    fn terminate_session(
        &self,
        session_id: &str,
    ) -> impl Future<Output = Result<(), FleetError>> + Send;

    /// Lists the active sessions on one target (DescribeSessions filtered by `Target`), all
    /// pages: the last check before a node is replaced.
    fn active_sessions_on(
        &self,
        target: &str,
    ) -> impl Future<Output = Result<Vec<SessionInfo>, FleetError>> + Send;

    /// Lists sessions in one state, all pages.
    fn describe_sessions(
        &self,
        state: SessionState,
    ) -> impl Future<Output = Result<Vec<SessionInfo>, FleetError>> + Send;

    /// Tags `target` as tainted. An error means the taint is not in place: open no session.
    fn taint(
        &self,
        target: &str,
        taint: &Taint,
    ) -> impl Future<Output = Result<(), FleetError>> + Send;

    /// Adds `pink-sombrero:emergency=true` to a tainted `target` (its session came through
    /// the emergency door). An error: open no session.
    fn mark_emergency(&self, target: &str) -> impl Future<Output = Result<(), FleetError>> + Send;

    /// Replaces `target` with `strategy`, then watches for the outcome, reporting progress.
    fn replace(
        &self,
        target: &str,
        strategy: &ReplaceStrategy,
        opts: &ReplaceOptions,
        progress: impl FnMut(ReplaceProgress) + Send,
    ) -> impl Future<Output = ReplacementOutcome> + Send;
}

/// Converts an SDK timestamp; out-of-range values (never sent by AWS) become `None`.
pub(crate) fn to_utc(t: &aws_sdk_ssm::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

#[cfg(test)]
impl Node {
    /// An online Linux node `id` with nothing else known (for tests).
    pub(crate) fn online(id: &str) -> Node {
        Node {
            id: id.into(),
            name: None,
            platform: "Linux".into(),
            ping: "Online".into(),
            agent_version: None,
            ip: None,
            registered: None,
            launched: None,
            tags: BTreeMap::new(),
            not_in_ssm: false,
            ec2_state: None,
        }
    }
}
