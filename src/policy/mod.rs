//! The policy file (`policy.toml`): who may request and approve, thresholds and limits.
//!
//! Unknown keys are errors; a value of the wrong type or out of range is an error naming the key
//! and line. Missing optional keys take the documented defaults of [`DEFAULT_POLICY`]; a value
//! the file got wrong is never replaced by a default.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use crate::request::Rules;

mod defaults;
pub mod emergency;
pub mod notify;
pub mod notify_event;
mod parse;
pub mod review;
mod role;

pub use defaults::{DEFAULT_MAX_INSTANCE_AGE, DEFAULT_POLICY};
pub use role::Role;

/// Problems loading the policy.
#[derive(Debug, Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file could not be written (first run).
    #[error("cannot write the default policy file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// TOML syntax, unknown key or wrong type (toml's message names line and column).
    #[error("policy file {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// toml's message.
        message: String,
    },
    /// A value with the right type but not acceptable.
    #[error("policy file {path}, line {line}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the value.
        line: usize,
        /// The key.
        key: String,
        /// What is wrong and what to write instead.
        message: String,
    },
}

/// What to do with an instance after its session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum Replacement {
    /// TerminateInstanceInAutoScalingGroup without decrement.
    Asg,
    /// SetInstanceHealth(Unhealthy).
    AsgUnhealthy,
    /// StartAutomationExecution with this document.
    Automation(String),
    /// Tag only.
    None,
}

impl Replacement {
    /// Parses `asg` | `asg-unhealthy` | `automation:<document>` | `none`.
    pub fn parse(s: &str) -> Option<Replacement> {
        match s {
            "asg" => Some(Replacement::Asg),
            "asg-unhealthy" => Some(Replacement::AsgUnhealthy),
            "none" => Some(Replacement::None),
            _ => s
                .strip_prefix("automation:")
                .filter(|d| !d.trim().is_empty())
                .map(|d| Replacement::Automation(d.to_string())),
        }
    }
}

impl From<Replacement> for String {
    fn from(r: Replacement) -> String {
        r.to_string()
    }
}

impl std::fmt::Display for Replacement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Replacement::Asg => f.write_str("asg"),
            Replacement::AsgUnhealthy => f.write_str("asg-unhealthy"),
            Replacement::Automation(d) => write!(f, "automation:{d}"),
            Replacement::None => f.write_str("none"),
        }
    }
}

/// MFA limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MfaPolicy {
    /// Consecutive failures before a lockout.
    pub max_failures: u32,
    /// How long a lockout lasts.
    #[serde(with = "humantime_serde_str")]
    pub lockout: Duration,
    /// Whether `open` needs the requester's TOTP code (default true).
    pub at_open: bool,
}

/// The policy in force.
#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    /// Names (or `*`) allowed to request.
    pub requesters: Vec<String>,
    /// Names (or `*`) allowed to approve.
    pub approvers: Vec<String>,
    /// Names (or `*`) allowed to review recordings.
    pub reviewers: Vec<String>,
    /// Distinct approvals needed.
    pub approvals_required: u32,
    /// How long a request may stay Pending.
    #[serde(with = "humantime_serde_str")]
    pub request_ttl: Duration,
    /// How long an approved request may wait to be opened.
    #[serde(with = "humantime_serde_str")]
    pub grant_window: Duration,
    /// Longest session.
    #[serde(with = "humantime_serde_str")]
    pub max_session_duration: Duration,
    /// Shortest reason.
    pub reason_min_length: usize,
    /// Incident reference pattern, if required.
    #[serde(serialize_with = "ser_regex")]
    pub incident_pattern: Option<regex::Regex>,
    /// Replacement strategy.
    pub replacement: Replacement,
    /// Instances older than this are a finding; `None` (written `"0"`) turns the check off.
    #[serde(serialize_with = "humantime_serde_str::serialize_opt")]
    pub max_instance_age: Option<Duration>,
    /// MFA limits.
    pub mfa: MfaPolicy,
    /// External identities (OS user, `uid:N`, IAM ARN) mapped to sombrero user names.
    pub identities: BTreeMap<String, String>,
    /// Whether an OS user on the Unix socket whose name is an enrolled user is that user
    /// without an `[identities]` line (default true).
    pub implicit_identities: bool,
    /// `[[review.flag]]`: risk rules added to the defaults of [`crate::recording::flags`].
    pub review_flags: Vec<crate::recording::flags::FlagRule>,
    /// `[[notify]]`: where events are announced ([`crate::notify`]); URLs print redacted.
    pub notify: Vec<notify::NotifyTarget>,
    /// A request still pending this long (and every such step after) is announced to the
    /// targets listing `escalation`; `None`: no escalation.
    #[serde(serialize_with = "humantime_serde_str::serialize_opt")]
    pub escalate_after: Option<Duration>,
    /// Which sessions' recordings must be reviewed ([`review`], queued by `crate::review_queue`).
    pub review_required: review::ReviewRequired,
    /// How long after its session ends a required review is due (default 24h).
    #[serde(with = "humantime_serde_str")]
    pub review_within: Duration,
    /// `[emergency]`: the loud door (off by default).
    pub emergency: emergency::EmergencyPolicy,
}

fn ser_regex<S: serde::Serializer>(r: &Option<regex::Regex>, s: S) -> Result<S::Ok, S::Error> {
    match r {
        Some(r) => s.serialize_some(r.as_str()),
        None => s.serialize_none(),
    }
}

/// Durations print as humantime strings in `policy check --json`.
mod humantime_serde_str {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// `None` (a check turned off) prints as `null`.
    pub fn serialize_opt<S: serde::Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => serialize(d, s),
            None => s.serialize_none(),
        }
    }
}

impl Policy {
    /// The emergency door's rules for `name` (enrolled with `roles`): open to them when
    /// `[emergency]` lists them and they are a requester.
    pub fn emergency_rules(
        &self,
        name: &str,
        roles: &BTreeSet<Role>,
    ) -> crate::request::EmergencyRules {
        let e = &self.emergency;
        let listed = e.requesters.iter().any(|n| n == "*" || n == name);
        let mut requesters = BTreeSet::new();
        if listed && self.permits(name, roles, Role::Requester) {
            requesters.insert(name.to_string());
        }
        crate::request::EmergencyRules {
            enabled: e.enabled,
            requesters,
            veto_window: e.veto_window,
            max_per_day: e.max_per_day,
        }
    }

    /// The sombrero user an external identity is mapped to by `[identities]`, if listed.
    pub fn identity(&self, external: &str) -> Option<&str> {
        self.identities.get(external).map(String::as_str)
    }

    fn allows(list: &[String], name: &str) -> bool {
        list.iter().any(|n| n == "*" || n == name)
    }

    /// True when `name`, enrolled with `roles`, may act as `role`.
    pub fn permits(&self, name: &str, roles: &BTreeSet<Role>, role: Role) -> bool {
        let list = match role {
            Role::Requester => &self.requesters,
            Role::Approver => &self.approvers,
            Role::Reviewer => &self.reviewers,
        };
        roles.contains(&role) && Policy::allows(list, name)
    }

    /// The lifecycle rules with names resolved against the enrolled users.
    pub fn rules<'a>(
        &self,
        users: impl IntoIterator<Item = (&'a str, &'a BTreeSet<Role>)>,
    ) -> Rules {
        let mut requesters = BTreeSet::new();
        let mut approvers = BTreeSet::new();
        for (name, roles) in users {
            if self.permits(name, roles, Role::Requester) {
                requesters.insert(name.to_string());
            }
            if self.permits(name, roles, Role::Approver) {
                approvers.insert(name.to_string());
            }
        }
        Rules {
            requesters,
            approvers,
            approvals_required: self.approvals_required,
            request_ttl: self.request_ttl,
            grant_window: self.grant_window,
            max_session_duration: self.max_session_duration,
            reason_min_length: self.reason_min_length,
            incident_pattern: self.incident_pattern.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
