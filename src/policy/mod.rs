//! The policy file (`policy.toml`): who may request and approve, thresholds and limits.
//!
//! Unknown keys are errors; a value of the wrong type or out of range is an error naming the key
//! and line. Missing optional keys take the documented defaults of [`DEFAULT_POLICY`]; a value
//! the file got wrong is never replaced by a default.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use toml::Spanned;

use crate::request::Rules;

pub mod emergency;
pub mod notify;
pub mod notify_event;
pub mod review;
mod role;

pub use role::Role;

/// The policy written on first run, with every key and its meaning.
pub const DEFAULT_POLICY: &str = r#"# pink-sombrero policy. Checked with `sombrero policy check`.
#
# A person may request (or approve, or review) when they are enrolled with that role
# (`sombrero user add NAME --role requester|approver|reviewer|both`) AND the list below
# names them or contains "*". "*" trusts every enrolled user with the role: fine for one
# console or a lab; a team should list names.
requesters = ["*"]
approvers = ["*"]
reviewers = ["*"]

# Distinct approvers needed, never the requester (at least 1; default 2).
approvals_required = 2

# How long a request may wait for approvals, how long an approved request may wait to be
# opened, and the longest session one may ask for (humantime: "90s", "15m", "1h 30m").
request_ttl = "30m"
grant_window = "15m"
max_session_duration = "1h"

# Shortest acceptable reason, in characters.
reason_min_length = 10

# If set, every request needs an incident reference matching this regex.
# incident_pattern = "^INC-[0-9]+$"

# What happens to an instance after its session closes:
#   "asg"                 terminate it in its Auto Scaling group (which launches a fresh one)
#   "asg-unhealthy"       mark it Unhealthy in its group
#   "automation:<doc>"    run an SSM Automation document with the instance id
#   "none"                only tag it as tainted
replacement = "asg"

# In an immutable fleet nothing lives long: instances older than this (since launch for EC2
# instances, since registration for managed nodes) are a finding. `sombrero fleet` marks them
# OLD; `sombrero rogue` reports them and audits each one once. "0" turns the check off.
max_instance_age = "14d"

# On the daemon's Unix socket, an OS user whose name is an enrolled sombrero user is that user
# without an [identities] line. false turns that off: only [identities] maps anyone.
implicit_identities = true

# Requests still pending after this long (and every such step after) are announced again to
# the [[notify]] targets listing "escalation". Off unless set.
# escalate_after = "5m"

# Whose recordings must be reviewed ("emergency", "all" or "none"), and by when after the
# session ends; `sombrero review --pending` lists them, late ones are audited and notified.
review_required = "emergency"
review_within = "24h"

[mfa]
# Consecutive wrong or replayed TOTP codes before a lockout, and how long it lasts.
max_failures = 5
lockout = "5m"
# Opening an approved session needs the requester's code too (true), not only the request.
# Killing a session always needs the approver's code.
at_open = true

# Who is who when `sombrero serve` runs the broker: the daemon names each client by its
# connection, never by what the client says. On the Unix socket that is the peer's OS user
# ("alice", or "uid:1001" for a uid without a passwd entry); over TCP it is the AWS IAM ARN the
# client proved. Map them to enrolled sombrero users here. An OS user whose name is an enrolled
# sombrero user is that user without a line here (unless implicit_identities = false); anyone
# else is refused.
[identities]
# "alice.smith" = "alice"
# "uid:1001" = "bob"
# "arn:aws:iam::123456789012:role/oncall-carol" = "carol"

# Where events are announced (README: "Notifications"). URLs and secrets: see there; never
# write a secret in this file.
# [[notify]]
# kind = "slack"
# url_env = "SOMBRERO_SLACK_URL"
# events = ["request_created", "escalation", "emergency_opened", "review_overdue"]

# The emergency door (README: "The emergency door"): off unless enabled.
# [emergency]
# enabled = true
# requesters = ["oncall"]
# veto_window = "2m"
# max_per_day = 1
# review_within = "24h"
# reviewers_required = 2
"#;

/// `max_instance_age` when the policy does not set it: two weeks.
pub const DEFAULT_MAX_INSTANCE_AGE: Duration = Duration::from_secs(14 * 24 * 60 * 60);

/// Writes [`DEFAULT_POLICY`] to `path` unless a file appears there first. The text goes to a
/// private temporary file that is then hard-linked into place, which fails if `path` exists:
/// a process starting at the same moment never reads a half-written policy.
fn write_default(path: &Path) -> Result<bool, PolicyError> {
    use std::io::Write;
    let werr = |source| PolicyError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension(format!("toml.tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(werr)?;
    f.write_all(DEFAULT_POLICY.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(werr)?;
    let linked = std::fs::hard_link(&tmp, path);
    // The temporary name is ours alone; failing to remove it leaves a stray file, not a risk.
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(werr(e)),
    }
}

/// Environment variable naming the policy file; wins over the config file.
pub const POLICY_ENV: &str = "SOMBRERO_POLICY";

/// Where the policy file is: `$SOMBRERO_POLICY`, else the `policy` key of the config file
/// (`--config`, else `config.toml` in the data dir, if it exists; relative paths are relative
/// to the config file), else `policy.toml` in the data dir. Other config keys are ignored here.
pub fn resolve_path(
    config: Option<&Path>,
    paths: &crate::config::Paths,
) -> Result<PathBuf, PolicyError> {
    if let Some(p) = std::env::var_os(POLICY_ENV) {
        return Ok(PathBuf::from(p));
    }
    let config = config.map_or_else(|| paths.config(), Path::to_path_buf);
    let text = match std::fs::read_to_string(&config) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(paths.policy()),
        Err(source) => {
            return Err(PolicyError::Read {
                path: config,
                source,
            });
        }
    };
    let table: toml::Table = toml::from_str(&text).map_err(|e| PolicyError::Syntax {
        path: config.clone(),
        message: e.to_string().trim_end().to_string(),
    })?;
    match table.get("policy") {
        None => Ok(paths.policy()),
        Some(toml::Value::String(p)) => {
            let base = config.parent().unwrap_or(Path::new("."));
            Ok(base.join(p))
        }
        Some(_) => Err(PolicyError::Syntax {
            path: config,
            message: "policy: must be a string, the path of the policy file".to_string(),
        }),
    }
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    requesters: Vec<Spanned<String>>,
    approvers: Vec<Spanned<String>>,
    #[serde(default)]
    reviewers: Vec<Spanned<String>>,
    approvals_required: Option<Spanned<i64>>,
    request_ttl: Option<Spanned<String>>,
    grant_window: Option<Spanned<String>>,
    max_session_duration: Option<Spanned<String>>,
    reason_min_length: Option<Spanned<i64>>,
    incident_pattern: Option<Spanned<String>>,
    replacement: Option<Spanned<String>>,
    max_instance_age: Option<Spanned<String>>,
    mfa: Option<RawMfa>,
    #[serde(default)]
    identities: BTreeMap<String, Spanned<String>>,
    implicit_identities: Option<bool>,
    review: Option<RawReview>,
    #[serde(default)]
    notify: Vec<notify::RawNotify>,
    escalate_after: Option<Spanned<String>>,
    review_required: Option<Spanned<String>>,
    review_within: Option<Spanned<String>>,
    emergency: Option<emergency::RawEmergency>,
}

/// `[review]`: reviewer aids.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReview {
    #[serde(default)]
    flag: Vec<RawFlag>,
}

/// One `[[review.flag]]` rule.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlag {
    pattern: Spanned<String>,
    label: Spanned<String>,
    severity: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMfa {
    max_failures: Option<Spanned<i64>>,
    lockout: Option<Spanned<String>>,
    at_open: Option<bool>,
}

/// Turns spans into line numbers and builds precise errors.
struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    fn err(&self, key: &str, span: std::ops::Range<usize>, message: String) -> PolicyError {
        let line = self.text[..span.start.min(self.text.len())]
            .bytes()
            .filter(|b| *b == b'\n')
            .count()
            + 1;
        PolicyError::Invalid {
            path: self.path.to_path_buf(),
            line,
            key: key.to_string(),
            message,
        }
    }

    fn duration(
        &self,
        key: &str,
        v: Option<Spanned<String>>,
        default: Duration,
    ) -> Result<Duration, PolicyError> {
        let Some(v) = v else { return Ok(default) };
        match self.any_duration(key, &v)? {
            d if !d.is_zero() => Ok(d),
            _ => Err(self.err(
                key,
                v.span(),
                "must be longer than zero, e.g. \"15m\"".to_string(),
            )),
        }
    }

    /// A duration where zero means "off" (`None`); absent takes `default`.
    fn limit_or_off(
        &self,
        key: &str,
        v: Option<Spanned<String>>,
        default: Duration,
    ) -> Result<Option<Duration>, PolicyError> {
        let Some(v) = v else {
            return Ok(Some(default));
        };
        Ok(Some(self.any_duration(key, &v)?).filter(|d| !d.is_zero()))
    }

    fn any_duration(&self, key: &str, v: &Spanned<String>) -> Result<Duration, PolicyError> {
        humantime::parse_duration(v.get_ref()).map_err(|e| {
            self.err(
                key,
                v.span(),
                format!(
                    "{:?} is not a duration ({e}); write e.g. \"90s\", \"15m\" or \"1h 30m\"",
                    v.get_ref()
                ),
            )
        })
    }

    fn count(
        &self,
        key: &str,
        v: Option<Spanned<i64>>,
        min: i64,
        default: u32,
    ) -> Result<u32, PolicyError> {
        let Some(v) = v else { return Ok(default) };
        let n = *v.get_ref();
        if n < min || n > i64::from(u32::MAX) {
            return Err(self.err(
                key,
                v.span(),
                format!("{n} is out of range: it must be at least {min}"),
            ));
        }
        Ok(n as u32)
    }

    fn names(&self, key: &str, v: Vec<Spanned<String>>) -> Result<Vec<String>, PolicyError> {
        v.into_iter()
            .map(|s| {
                let name = s.get_ref().trim();
                if name.is_empty() || name.chars().any(char::is_whitespace) {
                    Err(self.err(
                        key,
                        s.span(),
                        format!(
                            "{:?} is not a user name: use enrolled names without spaces, or \"*\"",
                            s.get_ref()
                        ),
                    ))
                } else {
                    Ok(name.to_string())
                }
            })
            .collect()
    }
}

impl Checker<'_> {
    /// `[identities]`: keys are external identities, values sombrero user names.
    fn identities(
        &self,
        raw: BTreeMap<String, Spanned<String>>,
    ) -> Result<BTreeMap<String, String>, PolicyError> {
        raw.into_iter()
            .map(|(external, name)| {
                let key = format!("identities.{external:?}");
                let n = name.get_ref().trim();
                if external.trim().is_empty() || external.chars().any(char::is_whitespace) {
                    return Err(self.err(
                        &key,
                        name.span(),
                        "an identity has no spaces: an OS user, \"uid:N\" or an IAM ARN".into(),
                    ));
                }
                if n.is_empty() || n == "*" || n.chars().any(char::is_whitespace) {
                    return Err(self.err(
                        &key,
                        name.span(),
                        format!(
                            "{:?} is not a user name: map the identity to one enrolled sombrero user",
                            name.get_ref()
                        ),
                    ));
                }
                Ok((external, n.to_string()))
            })
            .collect()
    }
}

impl Checker<'_> {
    /// `[[review.flag]]` rules; a bad one names its key and line.
    fn review_flags(
        &self,
        raw: Option<RawReview>,
    ) -> Result<Vec<crate::recording::flags::FlagRule>, PolicyError> {
        use crate::recording::flags::{FlagRule, Severity};
        let flags = raw.map(|r| r.flag).unwrap_or_default();
        flags
            .into_iter()
            .map(|f| {
                let pattern = regex::Regex::new(f.pattern.get_ref()).map_err(|e| {
                    self.err(
                        "review.flag.pattern",
                        f.pattern.span(),
                        format!("not a valid regular expression: {e}"),
                    )
                })?;
                let severity = Severity::parse(f.severity.get_ref()).ok_or_else(|| {
                    self.err(
                        "review.flag.severity",
                        f.severity.span(),
                        format!(
                            "{:?} is not \"high\", \"medium\" or \"low\"",
                            f.severity.get_ref()
                        ),
                    )
                })?;
                let label = f.label.get_ref().trim();
                if label.is_empty() || label.chars().any(char::is_control) {
                    return Err(self.err(
                        "review.flag.label",
                        f.label.span(),
                        "a label is one line of text, e.g. \"exfiltration: scp\"".into(),
                    ));
                }
                Ok(FlagRule {
                    pattern,
                    label: label.to_string(),
                    severity,
                })
            })
            .collect()
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

    /// Parses policy text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let c = Checker { path, text };
        let incident_pattern = match raw.incident_pattern {
            None => None,
            Some(p) => Some(regex::Regex::new(p.get_ref()).map_err(|e| {
                c.err(
                    "incident_pattern",
                    p.span(),
                    format!("not a valid regular expression: {e}"),
                )
            })?),
        };
        let replacement = match raw.replacement {
            None => Replacement::Asg,
            Some(r) => Replacement::parse(r.get_ref()).ok_or_else(|| {
                c.err(
                    "replacement",
                    r.span(),
                    format!(
                        "{:?} is not a strategy: use \"asg\", \"asg-unhealthy\", \"automation:<document>\" or \"none\"",
                        r.get_ref()
                    ),
                )
            })?,
        };
        let (max_failures, lockout, at_open) = match raw.mfa {
            None => (None, None, None),
            Some(m) => (m.max_failures, m.lockout, m.at_open),
        };
        Ok(Policy {
            requesters: c.names("requesters", raw.requesters)?,
            approvers: c.names("approvers", raw.approvers)?,
            reviewers: c.names("reviewers", raw.reviewers)?,
            approvals_required: c.count("approvals_required", raw.approvals_required, 1, 2)?,
            request_ttl: c.duration(
                "request_ttl",
                raw.request_ttl,
                Duration::from_secs(30 * 60),
            )?,
            grant_window: c.duration(
                "grant_window",
                raw.grant_window,
                Duration::from_secs(15 * 60),
            )?,
            max_session_duration: c.duration(
                "max_session_duration",
                raw.max_session_duration,
                Duration::from_secs(60 * 60),
            )?,
            reason_min_length: c.count("reason_min_length", raw.reason_min_length, 0, 10)? as usize,
            incident_pattern,
            replacement,
            max_instance_age: c.limit_or_off(
                "max_instance_age",
                raw.max_instance_age,
                DEFAULT_MAX_INSTANCE_AGE,
            )?,
            mfa: MfaPolicy {
                max_failures: c.count("mfa.max_failures", max_failures, 1, 5)?,
                lockout: c.duration("mfa.lockout", lockout, Duration::from_secs(5 * 60))?,
                at_open: at_open.unwrap_or(true),
            },
            identities: c.identities(raw.identities)?,
            implicit_identities: raw.implicit_identities.unwrap_or(true),
            review_flags: c.review_flags(raw.review)?,
            notify: notify::check(raw.notify, 0..text.len())
                .map_err(|b| c.err(&b.key, b.span, b.message))?,
            escalate_after: match raw.escalate_after {
                None => None,
                Some(v) => Some(c.duration("escalate_after", Some(v), Duration::ZERO)?),
            },
            review_required: match raw.review_required {
                None => review::ReviewRequired::default(),
                Some(v) => review::ReviewRequired::parse(v.get_ref()).ok_or_else(|| {
                    c.err(
                        "review_required",
                        v.span(),
                        format!(
                            "{:?} is not \"emergency\", \"all\" or \"none\"",
                            v.get_ref()
                        ),
                    )
                })?,
            },
            review_within: c.duration(
                "review_within",
                raw.review_within,
                review::DEFAULT_REVIEW_WITHIN,
            )?,
            emergency: emergency::check(raw.emergency)
                .map_err(|b| c.err(&b.key, b.span, b.message))?,
        })
    }

    /// Reads and parses a policy file. The file is read on every call, so edits apply at
    /// once; parsing is skipped when its text is byte-for-byte what was parsed last time
    /// (a daemon reads it on every request, and a team's `[identities]` table makes that cost).
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        use std::sync::Mutex;
        /// The last file parsed: its path, text and policy.
        static LAST: Mutex<Option<(PathBuf, String, Policy)>> = Mutex::new(None);
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if let Ok(last) = LAST.lock()
            && let Some((p, t, policy)) = last.as_ref()
            && p == path
            && *t == text
        {
            return Ok(policy.clone());
        }
        let policy = Policy::parse(&text, path)?;
        if let Ok(mut last) = LAST.lock() {
            *last = Some((path.to_path_buf(), text, policy.clone()));
        }
        Ok(policy)
    }

    /// Loads the policy, first writing [`DEFAULT_POLICY`] if no file exists.
    /// Returns the policy and whether this call created the file.
    pub fn load_or_create(path: &Path) -> Result<(Policy, bool), PolicyError> {
        let created = if path.exists() {
            false
        } else {
            write_default(path)?
        };
        Ok((Policy::load(path)?, created))
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
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(text, Path::new("policy.toml"))
    }

    #[test]
    fn default_policy_parses_with_documented_values() {
        let p = parse(DEFAULT_POLICY).unwrap();
        assert_eq!(p.approvals_required, 2);
        assert_eq!(p.request_ttl, Duration::from_secs(1800));
        assert_eq!(p.grant_window, Duration::from_secs(900));
        assert_eq!(p.max_session_duration, Duration::from_secs(3600));
        assert_eq!(p.reason_min_length, 10);
        assert_eq!(p.replacement, Replacement::Asg);
        assert_eq!(p.max_instance_age, Some(Duration::from_secs(14 * 86_400)));
        assert_eq!(p.mfa.max_failures, 5);
        assert_eq!(p.mfa.lockout, Duration::from_secs(300));
        assert!(p.mfa.at_open);
        assert!(p.incident_pattern.is_none());
    }

    #[test]
    fn minimal_policy_takes_defaults() {
        let p = parse("requesters = [\"a\"]\napprovers = [\"b\", \"c\"]\n").unwrap();
        assert_eq!(p.approvals_required, 2);
        assert_eq!(p.mfa.max_failures, 5);
        assert!(p.mfa.at_open);
        let p =
            parse("requesters = [\"a\"]\napprovers = [\"b\"]\n[mfa]\nat_open = false\n").unwrap();
        assert!(!p.mfa.at_open);
        assert!(p.reviewers.is_empty());
        assert_eq!(p.max_instance_age, Some(DEFAULT_MAX_INSTANCE_AGE));
    }

    #[test]
    fn max_instance_age_takes_durations_and_zero_for_off() {
        let with = |v: &str| {
            parse(&format!(
                "requesters = [\"a\"]\napprovers = [\"b\"]\nmax_instance_age = {v:?}\n"
            ))
        };
        assert_eq!(
            with("3d").unwrap().max_instance_age,
            Some(Duration::from_secs(3 * 86_400))
        );
        assert_eq!(
            with("36h").unwrap().max_instance_age,
            Some(Duration::from_secs(36 * 3600))
        );
        assert_eq!(with("0").unwrap().max_instance_age, None);
        assert_eq!(with("0s").unwrap().max_instance_age, None);
        let e = with("two weeks").unwrap_err().to_string();
        assert!(
            e.starts_with(
                "policy file policy.toml, line 3: max_instance_age: \"two weeks\" is not a duration"
            ),
            "{e}"
        );
        let e = parse("requesters = [\"a\"]\napprovers = [\"b\"]\nmax_instance_age = 14\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_instance_age"), "{e}");
    }

    #[test]
    fn replacement_strategies() {
        for (s, want) in [
            ("asg", Replacement::Asg),
            ("asg-unhealthy", Replacement::AsgUnhealthy),
            ("none", Replacement::None),
            (
                "automation:Lab-Replace",
                Replacement::Automation("Lab-Replace".into()),
            ),
        ] {
            assert_eq!(Replacement::parse(s), Some(want.clone()));
            assert_eq!(want.to_string(), s);
        }
        assert_eq!(Replacement::parse("automation:"), None);
        assert_eq!(Replacement::parse("terminate"), None);
    }

    #[test]
    fn roles_and_lists_resolve() {
        let p = parse("requesters = [\"*\"]\napprovers = [\"ann\", \"bob\"]\n").unwrap();
        let both = Role::parse_set("both").unwrap();
        let req = Role::parse_set("requester").unwrap();
        let users = vec![("ann", &both), ("bob", &req), ("zed", &both)];
        let r = p.rules(users);
        assert_eq!(r.requesters.len(), 3);
        // bob is listed but not enrolled as approver; zed is an approver not listed.
        assert_eq!(r.approvers.iter().collect::<Vec<_>>(), vec!["ann"]);
        assert_eq!(Role::parse_set("wizard"), None);
    }

    #[test]
    fn value_errors_name_key_and_line() {
        let e = parse("requesters = [\"a\"]\napprovers = [\"b\"]\napprovals_required = 0\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "policy file policy.toml, line 3: approvals_required: 0 is out of range: it must be at least 1"
        );
    }

    #[test]
    fn identities_map_and_errors_name_key_and_line() {
        let p = parse(
            "requesters = [\"*\"]\napprovers = [\"*\"]\n[identities]\n\"uid:1001\" = \"bob\"\n\"arn:aws:iam::1:role/x\" = \"carol\"\n",
        )
        .unwrap();
        assert_eq!(p.identity("uid:1001"), Some("bob"));
        assert_eq!(p.identity("arn:aws:iam::1:role/x"), Some("carol"));
        assert_eq!(p.identity("bob"), None);
        let e = parse("requesters = [\"*\"]\napprovers = [\"*\"]\n[identities]\nalice = \"a b\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4") && e.contains("identities"), "{e}");
        assert!(
            parse("requesters = [\"*\"]\napprovers = [\"*\"]\n[identities]\nalice = 3\n").is_err()
        );
    }

    #[test]
    fn load_sees_every_edit_even_of_the_same_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        let text = |n: u32| {
            format!("requesters = [\"*\"]\napprovers = [\"*\"]\napprovals_required = {n}\n")
        };
        for n in [2, 3, 2, 4] {
            std::fs::write(&path, text(n)).unwrap();
            assert_eq!(Policy::load(&path).unwrap().approvals_required, n);
            assert_eq!(Policy::load(&path).unwrap().approvals_required, n);
        }
        let other = dir.path().join("other.toml");
        std::fs::write(&other, text(5)).unwrap();
        assert_eq!(Policy::load(&other).unwrap().approvals_required, 5);
        assert_eq!(Policy::load(&path).unwrap().approvals_required, 4);
    }

    #[test]
    fn config_file_can_name_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let paths = crate::config::Paths::at(dir.path());
        // Environment overrides are tested through the binary; keep this test independent.
        if std::env::var_os(POLICY_ENV).is_some() {
            return;
        }
        assert_eq!(resolve_path(None, &paths).unwrap(), paths.policy());
        std::fs::write(
            paths.config(),
            "theme = \"dark\"\npolicy = \"team/policy.toml\"\n",
        )
        .unwrap();
        assert_eq!(
            resolve_path(None, &paths).unwrap(),
            dir.path().join("team/policy.toml")
        );
        let other = dir.path().join("other.toml");
        std::fs::write(&other, "policy = 3\n").unwrap();
        let e = resolve_path(Some(&other), &paths).unwrap_err().to_string();
        assert!(e.contains("policy: must be a string"), "{e}");
    }

    #[test]
    fn load_or_create_writes_the_default_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        let (_, created) = Policy::load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), DEFAULT_POLICY);
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1, "temporary file left behind");
        std::fs::write(&path, "requesters = []\napprovers = []\n").unwrap();
        let (p, created) = Policy::load_or_create(&path).unwrap();
        assert!(!created);
        assert!(p.requesters.is_empty());
    }
}
