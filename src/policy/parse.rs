//! Parsing `policy.toml`: the raw TOML shape, and the checks that turn each value into the
//! policy or into an error naming its key and line.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{
    DEFAULT_MAX_INSTANCE_AGE, MfaPolicy, Policy, PolicyError, Replacement, emergency, notify,
    review,
};

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
}
