//! `[[notify]]` targets as the policy writes them, checked; secrets stay where they live.
//!
//! A webhook URL may be written inline (it is shown redacted everywhere: logs, the policy API,
//! `policy check`) or read from an environment variable or a file (`url_env`, `url_file`); a
//! Slack incoming-webhook URL is itself a credential, so prefer those. The HMAC secret of a
//! webhook is never in the policy text: `secret_env` or `secret_file` name where it is, and it
//! is read only when a notification is signed.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::PathBuf;

use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;

use super::notify_event::NotifyEvent;
use super::role::Role;

/// Most `[[notify]]` targets a policy may list.
pub const MAX_TARGETS: usize = 16;
/// Longest webhook URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Most bytes read from a `secret_file` or `url_file`.
pub const MAX_SECRET_FILE: u64 = 4096;

/// What shape the POST has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyKind {
    /// Generic JSON, signed with HMAC-SHA256 (`x-pink-sombrero-signature`).
    Webhook,
    /// A Slack incoming-webhook message.
    Slack,
}

/// An inline URL: printed only as scheme and host.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The whole URL, for the HTTP client only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `scheme://host/…` with the path and query (where tokens live) left out.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

/// `scheme://host/…(redacted)` of any URL text.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}/…(redacted)",
            u.scheme(),
            u.host_str().unwrap_or("?")
        ),
        Err(_) => "(redacted)".to_string(),
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Where a value lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source<T> {
    /// Written in the policy (URLs only).
    Inline(T),
    /// In this environment variable of the broker process.
    Env(String),
    /// In this file on the broker host.
    File(PathBuf),
}

impl<T> Source<T> {
    fn describe(&self, inline: impl FnOnce(&T) -> String) -> String {
        match self {
            Source::Inline(v) => inline(v),
            Source::Env(var) => format!("env:{var}"),
            Source::File(p) => format!("file:{}", p.display()),
        }
    }
}

/// One checked `[[notify]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotifyTarget {
    /// Unique name (default `notify-N`), used in audit events and `notify test`.
    pub name: String,
    /// Webhook or Slack.
    pub kind: NotifyKind,
    /// Where the URL is (printed redacted).
    #[serde(serialize_with = "ser_url")]
    pub url: Source<SecretUrl>,
    /// Where the HMAC secret is (webhooks; printed as its source only).
    #[serde(serialize_with = "ser_secret")]
    pub secret: Option<Source<()>>,
    /// Events this target receives.
    pub events: BTreeSet<NotifyEvent>,
    /// Only events about these people (the request's requester, else the actor); empty: all.
    pub users: Vec<String>,
    /// Only events about people enrolled with one of these roles; empty: all.
    pub roles: BTreeSet<Role>,
}

fn ser_url<S: Serializer>(u: &Source<SecretUrl>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&u.describe(SecretUrl::redacted))
}

fn ser_secret<S: Serializer>(v: &Option<Source<()>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(&v.describe(|_| "(inline)".to_string())),
        None => s.serialize_none(),
    }
}

impl NotifyTarget {
    /// The URL, read from where it lives and checked again (an env var or file may change).
    pub fn resolve_url(&self) -> Result<String, String> {
        let url = match &self.url {
            Source::Inline(u) => u.expose().to_string(),
            Source::Env(var) => std::env::var(var)
                .map_err(|_| format!("environment variable {var} (url_env) is not set"))?,
            Source::File(p) => read_small(p, "url_file")?,
        };
        let url = url.trim().to_string();
        check_url(&url)?;
        Ok(url)
    }

    /// The HMAC secret, if this target signs.
    pub fn resolve_secret(&self) -> Result<Option<Vec<u8>>, String> {
        let secret = match &self.secret {
            None => return Ok(None),
            Some(Source::Inline(())) => return Err("inline secrets are not accepted".into()),
            Some(Source::Env(var)) => std::env::var(var)
                .map_err(|_| format!("environment variable {var} (secret_env) is not set"))?,
            Some(Source::File(p)) => read_small(p, "secret_file")?,
        };
        let secret = secret.trim();
        if secret.len() < 16 {
            return Err("the HMAC secret is shorter than 16 characters".into());
        }
        Ok(Some(secret.as_bytes().to_vec()))
    }

    /// Where the HMAC secret is read from, as it may be shown (`env:VAR`, `file:PATH`).
    pub fn secret_shown(&self) -> Option<String> {
        self.secret
            .as_ref()
            .map(|s| s.describe(|_| "(inline)".to_string()))
    }

    /// The URL's source as it may be shown.
    pub fn url_shown(&self) -> String {
        self.url.describe(SecretUrl::redacted)
    }
}

/// Reads a small file (a URL or a secret), bounded.
fn read_small(p: &std::path::Path, key: &str) -> Result<String, String> {
    use std::io::Read;
    let f =
        std::fs::File::open(p).map_err(|e| format!("cannot read {key} {}: {e}", p.display()))?;
    let mut text = String::new();
    f.take(MAX_SECRET_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {key} {}: {e}", p.display()))?;
    if text.len() as u64 > MAX_SECRET_FILE {
        return Err(format!(
            "{key} {} is larger than {MAX_SECRET_FILE} bytes",
            p.display()
        ));
    }
    Ok(text)
}

/// https anywhere; plain http only to a loopback host (a relay or a test receiver).
pub fn check_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("a URL is at most {MAX_URL_LEN} characters"));
    }
    let u = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => return Err("a URL needs a host".into()),
    };
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err("use https (plain http only to a loopback address)".into()),
        s => Err(format!("scheme {s:?} is not http(s)")),
    }
}

/// One `[[notify]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    name: Option<Spanned<String>>,
    kind: Spanned<String>,
    url: Option<Spanned<String>>,
    url_env: Option<Spanned<String>>,
    url_file: Option<Spanned<String>>,
    secret_env: Option<Spanned<String>>,
    secret_file: Option<Spanned<String>>,
    events: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    users: Vec<Spanned<String>>,
    #[serde(default)]
    roles: Vec<Spanned<String>>,
}

/// A bad value: its key, where it is, and what to write instead.
#[derive(Debug)]
pub struct Bad {
    /// The key, e.g. `notify.events`.
    pub key: String,
    /// Its span in the policy text.
    pub span: Range<usize>,
    /// The message.
    pub message: String,
}

fn bad<T>(key: &str, span: Range<usize>, message: impl Into<String>) -> Result<T, Bad> {
    Err(Bad {
        key: format!("notify.{key}"),
        span,
        message: message.into(),
    })
}

/// Checks every `[[notify]]` table; `whole` spans the policy (for errors about the list).
pub fn check(raw: Vec<RawNotify>, whole: Range<usize>) -> Result<Vec<NotifyTarget>, Bad> {
    if raw.len() > MAX_TARGETS {
        return bad(
            "",
            whole,
            format!("at most {MAX_TARGETS} [[notify]] targets"),
        );
    }
    let mut out: Vec<NotifyTarget> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let t = check_one(r, i)?;
        out.push(t);
    }
    let mut names = BTreeSet::new();
    for t in &out {
        if !names.insert(t.name.clone()) {
            return bad(
                "name",
                whole.clone(),
                format!("two targets are named {:?}", t.name),
            );
        }
    }
    Ok(out)
}

fn check_one(r: RawNotify, i: usize) -> Result<NotifyTarget, Bad> {
    let name = match r.name {
        None => format!("notify-{}", i + 1),
        Some(n) => {
            let v = n.get_ref().trim();
            if v.is_empty()
                || v.len() > 64
                || !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return bad(
                    "name",
                    n.span(),
                    "a name is 1-64 letters, digits, '-', '_' or '.'",
                );
            }
            v.to_string()
        }
    };
    let kind = match r.kind.get_ref().as_str() {
        "webhook" => NotifyKind::Webhook,
        "slack" => NotifyKind::Slack,
        other => {
            return bad(
                "kind",
                r.kind.span(),
                format!("{other:?} is not \"webhook\" or \"slack\""),
            );
        }
    };
    let url_span = r.kind.span();
    let url = match (r.url, r.url_env, r.url_file) {
        (Some(u), None, None) => {
            if let Err(why) = check_url(u.get_ref()) {
                return bad("url", u.span(), why);
            }
            Source::Inline(SecretUrl(u.into_inner()))
        }
        (None, Some(v), None) => Source::Env(env_name(v, "url_env")?),
        (None, None, Some(f)) => Source::File(PathBuf::from(f.into_inner())),
        _ => {
            return bad(
                "url",
                url_span,
                "give exactly one of url, url_env or url_file",
            );
        }
    };
    let secret = match (r.secret_env, r.secret_file) {
        (Some(v), None) => Some(Source::Env(env_name(v, "secret_env")?)),
        (None, Some(f)) => Some(Source::File(PathBuf::from(f.into_inner()))),
        (None, None) => None,
        (Some(v), Some(_)) => {
            return bad(
                "secret_env",
                v.span(),
                "give one of secret_env or secret_file",
            );
        }
    };
    if kind == NotifyKind::Webhook && secret.is_none() {
        return bad(
            "secret_env",
            url_span,
            "a webhook is signed: name its HMAC secret with secret_env = \"VAR\" or secret_file = \"PATH\" (never the secret itself)",
        );
    }
    let events_span = r.events.span();
    let mut events = BTreeSet::new();
    for e in r.events.into_inner() {
        match NotifyEvent::parse(e.get_ref()) {
            Some(ev) => {
                events.insert(ev);
            }
            None => {
                let all: Vec<&str> = NotifyEvent::ALL.iter().map(|e| e.as_str()).collect();
                return bad(
                    "events",
                    e.span(),
                    format!("{:?} is not an event; use {}", e.get_ref(), all.join(", ")),
                );
            }
        }
    }
    if events.is_empty() {
        return bad("events", events_span, "list at least one event");
    }
    let mut users = Vec::new();
    for u in r.users {
        let v = u.get_ref().trim();
        if v.is_empty() || v.chars().any(char::is_whitespace) {
            return bad("users", u.span(), "a user name has no spaces");
        }
        users.push(v.to_string());
    }
    let mut roles = BTreeSet::new();
    for role in r.roles {
        match Role::parse_set(role.get_ref()) {
            Some(set) if !set.is_empty() => roles.extend(set),
            _ => {
                return bad(
                    "roles",
                    role.span(),
                    "use \"requester\", \"approver\" or \"reviewer\"",
                );
            }
        }
    }
    Ok(NotifyTarget {
        name,
        kind,
        url,
        secret,
        events,
        users,
        roles,
    })
}

fn env_name(v: Spanned<String>, key: &str) -> Result<String, Bad> {
    let name = v.get_ref().trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return bad(
            key,
            v.span(),
            "the name of an environment variable (letters, digits, '_')",
        );
    }
    Ok(name.to_string())
}

/// The policy text with every inline `[[notify]]` URL redacted, for the policy API: the text
/// still parses. Text without inline URLs comes back unchanged (comments and all).
pub fn redact_policy_text(text: &str) -> String {
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return text.to_string();
    };
    let Some(toml::Value::Array(targets)) = table.get_mut("notify") else {
        return text.to_string();
    };
    let mut changed = false;
    for t in targets.iter_mut() {
        if let Some(toml::Value::String(u)) = t.get_mut("url") {
            let shown = redacted_but_parsable(u);
            *u = shown;
            changed = true;
        }
    }
    if !changed {
        return text.to_string();
    }
    format!(
        "# [[notify]] URLs redacted by the broker\n{}",
        toml::to_string(&table).unwrap_or_default()
    )
}

/// `scheme://host/redacted`: still a valid URL for the same host.
fn redacted_but_parsable(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}/redacted",
            u.scheme(),
            u.host_str().unwrap_or("invalid")
        ),
        Err(_) => "https://invalid/redacted".to_string(),
    }
}

/// How many whole `every` steps lie between `since` and `now`.
pub fn steps(
    since: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
    every: std::time::Duration,
) -> u32 {
    let waited = (now - since).to_std().unwrap_or_default();
    if every.is_zero() {
        return 0;
    }
    u32::try_from(waited.as_millis() / every.as_millis().max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_https_except_on_loopback() {
        assert!(check_url("https://hooks.slack.com/services/T/B/x").is_ok());
        assert!(check_url("http://127.0.0.1:9/h").is_ok());
        assert!(check_url("http://localhost/h").is_ok());
        assert!(check_url("http://example.com/h").is_err());
        assert!(check_url("ftp://example.com/h").is_err());
        assert!(check_url(&format!("https://a/{}", "x".repeat(MAX_URL_LEN))).is_err());
    }

    #[test]
    fn redaction_keeps_host_and_drops_tokens() {
        let u = SecretUrl("https://hooks.slack.com/services/T0/B0/SECRETTOKEN".into());
        assert_eq!(format!("{u:?}"), "https://hooks.slack.com/…(redacted)");
        let text = "requesters = [\"*\"]\napprovers = [\"*\"]\n[[notify]]\nkind = \"slack\"\nurl = \"https://hooks.slack.com/services/T0/B0/SECRETTOKEN\"\nevents = [\"request_created\"]\n";
        let shown = redact_policy_text(text);
        assert!(!shown.contains("SECRETTOKEN"), "{shown}");
        assert!(shown.contains("hooks.slack.com"), "{shown}");
        let plain = "requesters = [\"*\"]\napprovers = [\"*\"]\n# comment\n";
        assert_eq!(redact_policy_text(plain), plain);
    }
}

#[cfg(test)]
mod policy_tests {
    use crate::policy::Policy;
    use std::path::Path;

    fn parse(extra: &str) -> Result<Policy, String> {
        let text = format!("requesters = [\"*\"]\napprovers = [\"*\"]\n{extra}");
        Policy::parse(&text, Path::new("p.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn targets_parse_and_bad_ones_name_key_and_line() {
        let p = parse("[[notify]]\nkind = \"webhook\"\nurl = \"https://h.example/x\"\nsecret_env = \"HOOK_SECRET\"\nevents = [\"request_created\"]\nroles = [\"approver\"]\n").unwrap();
        assert_eq!(p.notify.len(), 1);
        assert_eq!(p.notify[0].name, "notify-1");
        assert_eq!(p.escalate_after, None);
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("env:HOOK_SECRET"), "{json}");
        assert!(!json.contains("h.example/x"), "{json}");
        for (bad, want) in [
            (
                "kind = \"pager\"\nurl = \"https://h/x\"\nevents = [\"request_created\"]",
                "notify.kind",
            ),
            (
                "kind = \"webhook\"\nurl = \"https://h/x\"\nevents = [\"request_created\"]",
                "secret_env",
            ),
            (
                "kind = \"slack\"\nurl = \"http://example.com/x\"\nevents = [\"request_created\"]",
                "https",
            ),
            (
                "kind = \"slack\"\nurl = \"https://h/x\"\nevents = [\"nope\"]",
                "notify.events",
            ),
            (
                "kind = \"slack\"\nurl = \"https://h/x\"\nevents = []",
                "at least one",
            ),
            (
                "kind = \"slack\"\nevents = [\"request_created\"]",
                "exactly one of url",
            ),
            (
                "kind = \"slack\"\nurl = \"https://h/x\"\nsecret = \"s\"\nevents = [\"test\"]",
                "unknown field",
            ),
        ] {
            let e = parse(&format!("[[notify]]\n{bad}\n")).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
        let e = parse("[[notify]]\nname = \"a\"\nkind = \"slack\"\nurl = \"https://h/x\"\nevents = [\"escalation\"]\n[[notify]]\nname = \"a\"\nkind = \"slack\"\nurl = \"https://h/y\"\nevents = [\"escalation\"]\n").unwrap_err();
        assert!(e.contains("two targets"), "{e}");
        let p = parse("escalate_after = \"5m\"\n").unwrap();
        assert_eq!(p.escalate_after, Some(std::time::Duration::from_secs(300)));
    }
}
