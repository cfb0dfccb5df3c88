//! The policy's unit tests: parsing, defaults, errors naming key and line, the rules.

use std::path::Path;

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
    let p = parse("requesters = [\"a\"]\napprovers = [\"b\"]\n[mfa]\nat_open = false\n").unwrap();
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
    assert!(parse("requesters = [\"*\"]\napprovers = [\"*\"]\n[identities]\nalice = 3\n").is_err());
}
