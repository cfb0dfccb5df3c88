//! The emergency door's policy (`[emergency]`): off by default; when on, a listed requester
//! with their TOTP code, a reason and an incident may open a request that is announced at
//! once, may be vetoed by any approver for `veto_window`, and is then approved without the
//! usual approvals ([`crate::request::create_emergency`] holds the lifecycle rules). Each
//! person may use it `max_per_day` times in 24 hours; its recording needs
//! `reviewers_required` sign-offs within `review_within`.

use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::notify::Bad;

/// Tag put on an instance tainted by an emergency session (value `true`).
pub const TAG: &str = "pink-sombrero:emergency";

/// `[emergency]` as checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmergencyPolicy {
    /// Off unless `enabled = true`.
    pub enabled: bool,
    /// Names (or `*`) who may use it; they must also be enrolled as requesters.
    pub requesters: Vec<String>,
    /// How long approvers may deny an emergency request (default 2m).
    #[serde(with = "human")]
    pub veto_window: Duration,
    /// Emergency requests per person in 24 hours (default 1).
    pub max_per_day: u32,
    /// Its recording's review is due this long after the session (default 24h).
    #[serde(with = "human")]
    pub review_within: Duration,
    /// Reviewers (never the requester) who must sign the recording off (default 2).
    pub reviewers_required: u32,
}

/// Durations print as humantime strings in `policy check --json`.
mod human {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

impl Default for EmergencyPolicy {
    fn default() -> Self {
        EmergencyPolicy {
            enabled: false,
            requesters: Vec::new(),
            veto_window: Duration::from_secs(120),
            max_per_day: 1,
            review_within: Duration::from_secs(24 * 60 * 60),
            reviewers_required: 2,
        }
    }
}

/// `[emergency]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmergency {
    enabled: Option<bool>,
    #[serde(default)]
    requesters: Vec<Spanned<String>>,
    veto_window: Option<Spanned<String>>,
    max_per_day: Option<Spanned<i64>>,
    review_within: Option<Spanned<String>>,
    reviewers_required: Option<Spanned<i64>>,
}

fn bad<T>(key: &str, span: Range<usize>, message: impl Into<String>) -> Result<T, Bad> {
    Err(Bad {
        key: format!("emergency.{key}"),
        span,
        message: message.into(),
    })
}

fn duration(key: &str, v: Option<Spanned<String>>, default: Duration) -> Result<Duration, Bad> {
    let Some(v) = v else { return Ok(default) };
    match humantime::parse_duration(v.get_ref()) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => bad(
            key,
            v.span(),
            format!(
                "{:?} is not a duration longer than zero, e.g. \"2m\"",
                v.get_ref()
            ),
        ),
    }
}

fn count(key: &str, v: Option<Spanned<i64>>, default: u32) -> Result<u32, Bad> {
    let Some(v) = v else { return Ok(default) };
    match u32::try_from(*v.get_ref()) {
        Ok(n) if n >= 1 => Ok(n),
        _ => bad(key, v.span(), "must be at least 1"),
    }
}

/// Checks `[emergency]` (absent: the door is off).
pub fn check(raw: Option<RawEmergency>) -> Result<EmergencyPolicy, Bad> {
    let d = EmergencyPolicy::default();
    let Some(raw) = raw else { return Ok(d) };
    let mut requesters = Vec::new();
    for r in raw.requesters {
        let name = r.get_ref().trim();
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            return bad(
                "requesters",
                r.span(),
                "a user name has no spaces; or \"*\"",
            );
        }
        requesters.push(name.to_string());
    }
    Ok(EmergencyPolicy {
        enabled: raw.enabled.unwrap_or(false),
        requesters,
        veto_window: duration("veto_window", raw.veto_window, d.veto_window)?,
        max_per_day: count("max_per_day", raw.max_per_day, d.max_per_day)?,
        review_within: duration("review_within", raw.review_within, d.review_within)?,
        reviewers_required: count(
            "reviewers_required",
            raw.reviewers_required,
            d.reviewers_required,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::EventKind;
    use crate::broker::{Broker, BrokerError, Clock, TestClock};
    use crate::notify::NotifyEvent;
    use crate::policy::{Policy, Role};
    use crate::request::{CloseReason, NewRequest, Refusal, State};
    use std::collections::HashMap;
    use std::sync::Arc;

    const ON: &str = "requesters = [\"*\"]\napprovers = [\"*\"]\nreviewers = [\"*\"]\n\
        [emergency]\nenabled = true\nrequesters = [\"rita\"]\nveto_window = \"2m\"\nmax_per_day = 2\nreviewers_required = 2\n\
        [[notify]]\nkind = \"slack\"\nurl = \"https://hooks.example.com/x\"\nevents = [\"request_denied\"]\n";

    struct F {
        _dir: tempfile::TempDir,
        clock: Arc<TestClock>,
        b: Broker,
        secrets: HashMap<String, String>,
    }

    impl F {
        fn new(policy: &str) -> F {
            let (dir, clock, b) = crate::broker::test_support::broker(policy);
            let mut f = F {
                _dir: dir,
                clock,
                b,
                secrets: HashMap::new(),
            };
            for (name, role) in [
                ("rita", "requester"),
                ("ron", "requester"),
                ("ann", "approver"),
                ("rev", "reviewer"),
                ("roy", "reviewer"),
            ] {
                let e =
                    f.b.enrol_user(name, Role::parse_set(role).unwrap())
                        .unwrap();
                let code = crate::mfa::code_at(name, &e.secret_base32, f.clock.now()).unwrap();
                f.b.confirm_enrolment(name, &code).unwrap();
                f.secrets.insert(name.into(), e.secret_base32);
            }
            f
        }

        fn code(&self, who: &str) -> String {
            self.clock.advance(Duration::from_secs(30));
            crate::mfa::code_at(who, &self.secrets[who], self.clock.now()).unwrap()
        }

        fn emergency(
            &self,
            who: &str,
            incident: Option<&str>,
        ) -> Result<crate::request::Request, BrokerError> {
            let new = NewRequest {
                requester: who.into(),
                target: "i-0abc1234".into(),
                reason: "database down, nobody answers".into(),
                incident: incident.map(str::to_string),
                duration: Duration::from_secs(600),
                command: None,
            };
            self.b.create_emergency(new, &self.code(who))
        }

        fn kinds(&self, id: &str) -> Vec<EventKind> {
            self.b
                .audit_for_request(id)
                .unwrap()
                .iter()
                .map(|e| e.kind)
                .collect()
        }
    }

    fn refusal(e: BrokerError) -> String {
        assert!(
            matches!(e, BrokerError::Refused(Refusal::Emergency { .. })),
            "{e}"
        );
        e.to_string()
    }

    #[test]
    fn off_by_default_and_refused_with_the_reason() {
        let f = F::new("requesters = [\"*\"]\napprovers = [\"*\"]\n");
        let e = f.emergency("rita", Some("INC-1")).unwrap_err();
        assert!(refusal(e).contains("off in this policy"));
        let p = f.b.policy().unwrap();
        assert!(!p.emergency.enabled);
        let refused = f.b.audit_events(0, 1000).unwrap();
        assert_eq!(refused.last().unwrap().kind, EventKind::Refused);
    }

    #[test]
    fn only_listed_requesters_with_an_incident_within_the_daily_limit() {
        let f = F::new(ON);
        assert!(refusal(f.emergency("ron", Some("INC-1")).unwrap_err()).contains("not among"));
        assert!(refusal(f.emergency("rita", None).unwrap_err()).contains("--incident"));
        f.emergency("rita", Some("INC-1")).unwrap();
        f.emergency("rita", Some("INC-2")).unwrap();
        let e = f.emergency("rita", Some("INC-3")).unwrap_err();
        assert!(refusal(e).contains("already made 2"));
        // A day later the door is open again.
        f.clock.advance(Duration::from_secs(24 * 3600));
        f.emergency("rita", Some("INC-4")).unwrap();
    }

    #[test]
    fn announced_to_every_target_and_a_veto_keeps_it_shut() {
        let f = F::new(ON);
        let r = f.emergency("rita", Some("INC-1")).unwrap();
        assert_eq!(r.state, State::Emergency);
        assert_eq!(f.kinds(&r.id)[1], EventKind::EmergencyRequested);
        // The target lists only request_denied, yet the emergency reaches it.
        let queued = f.b.outbox_due(10).unwrap();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].event, NotifyEvent::EmergencyRequested);
        let code = f.code("ann");
        let denied =
            f.b.deny(&r.id, "ann", &code, Some("I am awake: use the normal path"))
                .unwrap();
        assert_eq!(denied.state, State::Denied);
        f.clock.advance(Duration::from_secs(300));
        let code = f.code("rita");
        assert!(f.b.begin_open(&r.id, "rita", Some(&code)).is_err());
        assert!(!f.kinds(&r.id).contains(&EventKind::EmergencyOpened));
    }

    #[test]
    fn unvetoed_it_opens_after_the_window_and_needs_two_reviews() {
        let f = F::new(&ON.replace(
            "[emergency]",
            "review_required = \"emergency\"\n[emergency]",
        ));
        let r = f.emergency("rita", Some("INC-1")).unwrap();
        // Inside the window it cannot be opened.
        let code = f.code("rita");
        assert!(f.b.begin_open(&r.id, "rita", Some(&code)).is_err());
        f.clock.advance(Duration::from_secs(120));
        let code = f.code("rita");
        let g = f.b.begin_open(&r.id, "rita", Some(&code)).unwrap();
        assert_eq!(g.request.state, State::Active);
        assert!(g.request.emergency.is_some());
        let kinds = f.kinds(&r.id);
        assert!(kinds.contains(&EventKind::EmergencyOpened), "{kinds:?}");
        f.b.session_started(&r.id, "rita-0001").unwrap();
        f.b.close_session(&r.id, CloseReason::Exited { code: Some(0) })
            .unwrap();
        let rows = f.b.pending_reviews().unwrap();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].emergency);
        assert_eq!(rows[0].needed, 2);
        assert_eq!(rows[0].due_in_secs, 24 * 3600);
        let sign = |who: &str| {
            f.b.record(
                who,
                EventKind::Reviewed,
                Some(&r.id),
                serde_json::json!({"digest": "ab"}),
            )
            .unwrap();
        };
        sign("rev");
        assert_eq!(
            f.b.pending_reviews().unwrap()[0].sign_offs,
            vec!["rev".to_string()]
        );
        sign("roy");
        assert!(f.b.pending_reviews().unwrap().is_empty());
    }

    #[test]
    fn one_approval_ends_the_window_early() {
        let f = F::new(ON);
        let r = f.emergency("rita", Some("INC-1")).unwrap();
        let code = f.code("ann");
        let a = f.b.approve(&r.id, "ann", &code, Some("go")).unwrap();
        assert_eq!(a.state, State::Approved);
        let code = f.code("rita");
        f.b.begin_open(&r.id, "rita", Some(&code)).unwrap();
        // The sweep finds nothing left to do.
        f.clock.advance(Duration::from_secs(300));
        assert!(f.b.expire_due().unwrap().is_empty());
    }

    #[test]
    fn the_sweep_opens_the_door_when_the_window_passes() {
        let f = F::new(ON);
        let r = f.emergency("rita", Some("INC-1")).unwrap();
        assert!(f.b.expire_due().unwrap().is_empty());
        f.clock.advance(Duration::from_secs(121));
        let changed = f.b.expire_due().unwrap();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].state, State::Approved);
        assert_eq!(f.b.get(&r.id).unwrap().state, State::Approved);
        assert_eq!(f.b.verify_audit().unwrap().broken, None);
    }

    #[test]
    fn bad_tables_name_key_and_line() {
        let parse =
            |t: &str| Policy::parse(t, std::path::Path::new("p.toml")).map_err(|e| e.to_string());
        let base = "requesters = [\"*\"]\napprovers = [\"*\"]\n[emergency]\n";
        for (bad, key) in [
            ("veto_window = \"soon\"", "emergency.veto_window"),
            ("max_per_day = 0", "emergency.max_per_day"),
            ("reviewers_required = -1", "emergency.reviewers_required"),
            ("requesters = [\"a b\"]", "emergency.requesters"),
        ] {
            let e = parse(&format!("{base}{bad}\n")).unwrap_err();
            assert!(e.contains(key) && e.contains("line 4"), "{bad}: {e}");
        }
        let p = parse(&format!("{base}enabled = true\nrequesters = [\"*\"]\n")).unwrap();
        assert_eq!(p.emergency.veto_window, Duration::from_secs(120));
        assert_eq!(p.emergency.reviewers_required, 2);
    }
}
