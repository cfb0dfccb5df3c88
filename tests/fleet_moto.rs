//! Taint and replacement against moto (the AWS emulator), through the real SDK clients.
//!
//! `scripts/test` (or `eval "$(scripts/moto-up)"`) starts moto and exports its endpoint as
//! `SOMBRERO_MOTO_ENDPOINT` plus the per-service `AWS_ENDPOINT_URL_*` variables, dummy
//! credentials and a region. Without it the tests say so and pass outside CI; under `CI=true`
//! they fail. Each test builds its own Auto Scaling group (launch configuration + group: moto
//! launches the instances), so they run in parallel.

mod moto_support;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_autoscaling::Client as Asg;
use aws_sdk_resourcegroupstagging::Client as Tagging;
use chrono::Utc;
use moto_support::moto;
use pink_sombrero::config::GlobalOpts;
use pink_sombrero::fleet::aws::AwsFleet;
use pink_sombrero::fleet::ec2_query::Ec2Query;
use pink_sombrero::fleet::{
    Fleet, FleetError, ReplaceFailure, ReplaceOptions, ReplaceProgress, ReplaceStrategy,
    ReplacementOutcome, Taint, tag,
};

struct Env {
    fleet: AwsFleet,
    asg: Asg,
    tagging: Tagging,
}

/// The fleet under test (SSM also pointed at moto through --endpoint-url) and raw clients
/// for setup and independent checks.
async fn env(endpoint: &str) -> Env {
    let fleet = AwsFleet::from_opts(&GlobalOpts {
        endpoint_url: Some(endpoint.to_owned()),
        ..Default::default()
    })
    .await
    .unwrap();
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    Env {
        fleet,
        asg: Asg::new(&sdk),
        tagging: Tagging::new(&sdk),
    }
}

/// Creates a group of `n` instances; returns its name and instance ids.
async fn group(asg: &Asg, n: i32) -> (String, Vec<String>) {
    let name = format!("sombrero-{}", uuid::Uuid::new_v4());
    asg.create_launch_configuration()
        .launch_configuration_name(&name)
        .image_id("ami-12c6146b")
        .instance_type("t2.micro")
        .send()
        .await
        .unwrap();
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .launch_configuration_name(&name)
        .min_size(n)
        .max_size(n)
        .desired_capacity(n)
        .availability_zones("us-east-1a")
        .send()
        .await
        .unwrap();
    let ids = group_ids(asg, &name).await;
    assert_eq!(ids.len(), n as usize);
    (name, ids)
}

async fn group_ids(asg: &Asg, name: &str) -> Vec<String> {
    let out = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .unwrap();
    out.auto_scaling_groups()[0]
        .instances()
        .iter()
        .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
        .map(|i| i.instance_id().unwrap().to_owned())
        .collect()
}

/// Tags of one instance read straight from the tagging API.
async fn tags_of(e: &Env, id: &str) -> BTreeMap<String, String> {
    let arn = e.fleet.instance_arn(id).await.unwrap();
    let out = e
        .tagging
        .get_resources()
        .resource_arn_list(arn)
        .send()
        .await
        .unwrap();
    out.resource_tag_mapping_list()
        .iter()
        .flat_map(|m| m.tags())
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect()
}

fn taint() -> Taint {
    Taint {
        request: "req-7".into(),
        by: "alice".into(),
        at: Utc::now(),
    }
}

fn quick(timeout: Duration) -> ReplaceOptions {
    ReplaceOptions {
        timeout,
        poll: Duration::from_millis(200),
    }
}

#[tokio::test]
async fn taints_an_asg_instance_with_the_four_tags() {
    let Some(m) = moto() else { return };
    let e = env(&m).await;
    let (_, ids) = group(&e.asg, 2).await;
    let t = taint();
    e.fleet.taint(&ids[0], &t).await.unwrap();

    let tags = tags_of(&e, &ids[0]).await;
    assert_eq!(tags.get(tag::TAINTED).map(String::as_str), Some("true"));
    assert_eq!(tags.get(tag::REQUEST).map(String::as_str), Some("req-7"));
    assert_eq!(tags.get(tag::BY).map(String::as_str), Some("alice"));
    let at = tags.get(tag::AT).unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(at)
            .unwrap()
            .timestamp(),
        t.at.timestamp()
    );
    // Only the target is tainted.
    assert_eq!(tags_of(&e, &ids[1]).await.get(tag::TAINTED), None);
}

#[tokio::test]
async fn asg_replacement_puts_a_new_instance_in_service() {
    let Some(m) = moto() else { return };
    let e = env(&m).await;
    let (name, ids) = group(&e.asg, 2).await;
    let old = ids[0].clone();
    let mut seen = Vec::new();
    let outcome = e
        .fleet
        .replace(
            &old,
            &ReplaceStrategy::Asg,
            &quick(Duration::from_secs(60)),
            |p| seen.push(p),
        )
        .await;

    let ReplacementOutcome::Completed { old: o, new } = outcome else {
        panic!("expected Completed, got {outcome:?}")
    };
    assert_eq!(o, old);
    assert_ne!(new, old);
    let now_in = group_ids(&e.asg, &name).await;
    assert!(now_in.contains(&new), "{new} not in service in {now_in:?}");
    assert!(!now_in.contains(&old), "{old} still in {now_in:?}");
    assert!(now_in.contains(&ids[1]), "the other instance was touched");
    assert!(matches!(
        seen.first(),
        Some(ReplaceProgress::Requested { .. })
    ));
    assert!(
        seen.iter()
            .any(|p| matches!(p, ReplaceProgress::Group { new_in_service, .. } if new_in_service.contains(&new)))
    );
}

#[tokio::test]
async fn asg_unhealthy_marks_the_instance_and_says_nothing_more_is_seen() {
    let Some(m) = moto() else { return };
    let e = env(&m).await;
    let (_, ids) = group(&e.asg, 1).await;
    let before = Utc::now() - chrono::Duration::seconds(1);
    let outcome = e
        .fleet
        .replace(
            &ids[0],
            &ReplaceStrategy::AsgUnhealthy,
            &quick(Duration::from_secs(1)),
            |_| {},
        )
        .await;

    let ReplacementOutcome::Requested { note } = outcome else {
        panic!("expected Requested, got {outcome:?}")
    };
    assert!(note.contains("Unhealthy"), "{note}");
    let out = e
        .asg
        .describe_auto_scaling_instances()
        .instance_ids(&ids[0])
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.auto_scaling_instances()[0].health_status(),
        Some("Unhealthy")
    );
    assert_eq!(
        tags_of(&e, &ids[0])
            .await
            .get(tag::REPLACEMENT)
            .map(String::as_str),
        Some(tag::REPLACEMENT_REQUESTED)
    );
    // The mark says when, so the reaper can tell a crashed run's mark from a live one.
    let at = tags_of(&e, &ids[0]).await[tag::REPLACEMENT_AT].clone();
    let at = chrono::DateTime::parse_from_rfc3339(&at).unwrap();
    assert!(
        at >= before,
        "{at} is before the replacement began ({before})"
    );
}

#[tokio::test]
async fn instance_in_no_group_is_a_clear_failure() {
    let Some(m) = moto() else { return };
    let e = env(&m).await;
    let (name, ids) = group(&e.asg, 2).await;
    e.asg
        .detach_instances()
        .auto_scaling_group_name(&name)
        .instance_ids(&ids[0])
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .unwrap();

    for strategy in [ReplaceStrategy::Asg, ReplaceStrategy::AsgUnhealthy] {
        let outcome = e
            .fleet
            .replace(&ids[0], &strategy, &quick(Duration::from_secs(5)), |_| {})
            .await;
        let ReplacementOutcome::Failed { why } = outcome else {
            panic!("expected Failed, got {outcome:?}")
        };
        assert!(
            matches!(&why, ReplaceFailure::NotInGroup { instance, .. } if *instance == ids[0]),
            "{why:?}"
        );
        assert!(why.to_string().contains("in no Auto Scaling group"));
    }
    // The group was left alone.
    assert_eq!(group_ids(&e.asg, &name).await, vec![ids[1].clone()]);
}

#[tokio::test]
async fn tagging_refused_fails_closed() {
    let Some(m) = moto() else { return };
    let e = env(&m).await;
    // No such instance: TagResources answers success, the read-back proves otherwise.
    let err = e
        .fleet
        .taint("i-0000000000000dead", &taint())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FleetError::TaintFailed { target, .. } if target == "i-0000000000000dead"),
        "{err:?}"
    );
    // No such managed node: SSM AddTagsToResource refuses it.
    let err = e
        .fleet
        .taint("mi-0123456789abcdef0", &taint())
        .await
        .unwrap_err();
    let FleetError::TaintFailed { why, .. } = &err else {
        panic!("expected TaintFailed, got {err:?}")
    };
    assert!(why.contains("InvalidResourceId"), "{why}");
    // A malformed target never reaches the API.
    assert!(matches!(
        e.fleet.taint("i-../etc", &taint()).await,
        Err(FleetError::InvalidTarget { .. })
    ));
}

#[tokio::test]
async fn replacement_api_error_is_a_failed_outcome_and_marked_for_retry() {
    let Some(m) = moto() else { return };
    let e = env(&m).await;
    let (_, ids) = group(&e.asg, 1).await;
    // moto does not implement StartAutomationExecution: the service answers with an error.
    let outcome = e
        .fleet
        .replace(
            &ids[0],
            &"automation:PinkSombrero-ReplaceNode".parse().unwrap(),
            &quick(Duration::from_secs(5)),
            |_| {},
        )
        .await;
    let ReplacementOutcome::Failed { why } = outcome else {
        panic!("expected Failed, got {outcome:?}")
    };
    assert!(
        matches!(&why, ReplaceFailure::Api(m) if m.contains("StartAutomationExecution")),
        "{why:?}"
    );
    // The reaper sees the failure and will try again.
    assert_eq!(
        tags_of(&e, &ids[0])
            .await
            .get(tag::REPLACEMENT)
            .map(String::as_str),
        Some(tag::REPLACEMENT_FAILED)
    );
}

/// The hand-made EC2 Query client, configured from the environment as the fleet's is.
async fn ec2() -> Ec2Query {
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let ec2 = Ec2Query::from_config(&sdk).unwrap();
    assert_eq!(
        ec2.endpoint(),
        std::env::var("AWS_ENDPOINT_URL_EC2")
            .unwrap()
            .trim_end_matches('/'),
        "AWS_ENDPOINT_URL_EC2 not honoured"
    );
    ec2
}

#[tokio::test]
async fn describe_instances_reports_launch_times_for_a_batch() {
    let Some(m) = moto() else { return };
    let e = env(&m).await;
    // moto stamps launch times in whole seconds.
    let before = Utc::now() - chrono::Duration::seconds(1);
    let (_, ids) = group(&e.asg, 3).await;
    let after = Utc::now();
    let asked: Vec<&str> = ids.iter().map(String::as_str).collect();

    let found = ec2().await.describe(&asked).await.unwrap();
    let mut got: Vec<&str> = found.iter().map(|i| i.id.as_str()).collect();
    got.sort_unstable();
    let mut want = asked.clone();
    want.sort_unstable();
    assert_eq!(got, want);
    for i in &found {
        let launched = i
            .launched
            .unwrap_or_else(|| panic!("{} has no launch time", i.id));
        assert!(
            before <= launched && launched <= after,
            "{}: launched {launched}, created between {before} and {after}",
            i.id
        );
    }

    // The same through the fleet (what the listing uses for `i-` ages).
    let times = e.fleet.launch_times(&asked).await.unwrap();
    assert_eq!(times.len(), 3);
    for i in &found {
        assert_eq!(Some(times[&i.id]), i.launched);
    }
}

#[tokio::test]
async fn describe_instances_unknown_id_is_a_clear_error_and_left_out_of_ages() {
    let Some(m) = moto() else { return };
    let e = env(&m).await;
    let (_, ids) = group(&e.asg, 1).await;
    let unknown = "i-0000000000000dead";

    let err = ec2()
        .await
        .describe(&[ids[0].as_str(), unknown])
        .await
        .unwrap_err();
    assert_eq!(err.aws_code(), Some("InvalidInstanceID.NotFound"), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("AWS DescribeInstances failed: InvalidInstanceID.NotFound: ")
            && text.contains(unknown),
        "{text}"
    );

    // The listing's lookup leaves the unknown one out and still ages the known one.
    let times = e
        .fleet
        .launch_times(&[unknown, ids[0].as_str()])
        .await
        .unwrap();
    assert_eq!(times.keys().collect::<Vec<_>>(), vec![&ids[0]]);
    assert!(e.fleet.launch_times(&[unknown]).await.unwrap().is_empty());
}
