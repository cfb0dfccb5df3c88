//! Unit tests of [`super`] (`replace.rs`), kept apart so the module reads as product code.

use std::collections::HashMap;

use super::*;

#[test]
fn strategies_round_trip() {
    for s in [
        "asg",
        "asg-unhealthy",
        "none",
        "automation:PinkSombrero-ReplaceNode",
    ] {
        assert_eq!(s.parse::<ReplaceStrategy>().unwrap().to_string(), s);
    }
    assert_eq!(
        "automation:arn:aws:ssm:us-east-1:123456789012:document/Replace"
            .parse::<ReplaceStrategy>()
            .unwrap(),
        ReplaceStrategy::Automation {
            document: "arn:aws:ssm:us-east-1:123456789012:document/Replace".into()
        }
    );
    for bad in [
        "",
        "ASG",
        "terminate",
        "automation:",
        "automation:ab",
        "automation:a b c",
    ] {
        assert!(bad.parse::<ReplaceStrategy>().is_err(), "{bad:?} accepted");
    }
}

#[test]
fn requested_marks_go_stale_after_the_timeout_and_a_margin() {
    let opts = ReplaceOptions {
        timeout: Duration::from_secs(60),
        poll: Duration::from_secs(1),
    };
    assert_eq!(
        opts.retry_requested_after(&ReplaceStrategy::Asg),
        Some(Duration::from_secs(60 + 300))
    );
    assert_eq!(
        ReplaceOptions::default().retry_requested_after(&ReplaceStrategy::AsgUnhealthy),
        Some(Duration::from_secs(20 * 60))
    );
    assert_eq!(opts.retry_requested_after(&ReplaceStrategy::None), None);
}

#[test]
fn new_id_from_outputs() {
    let out = |k: &str, v: &str| HashMap::from([(k.to_owned(), vec![v.to_owned()])]);
    assert_eq!(
        new_instance_from_outputs(&out("NewInstanceId", "mi-0123456789abcdef0")),
        Some("mi-0123456789abcdef0".into())
    );
    assert_eq!(
        new_instance_from_outputs(&out("launch.NewInstanceId", "i-0123456789abcdef0")),
        Some("i-0123456789abcdef0".into())
    );
    assert_eq!(
        new_instance_from_outputs(&out("OldInstanceId", "i-0123456789abcdef0")),
        None
    );
    assert_eq!(
        new_instance_from_outputs(&out("NewInstanceId", "not an id")),
        None
    );
}
