//! Taint and replacement against moto (the AWS emulator), through the real SDK clients.
//!
//! `scripts/test` (or `eval "$(scripts/moto-up)"`) starts moto and exports its endpoint as
//! `SOMBRERO_MOTO_ENDPOINT` plus the per-service `AWS_ENDPOINT_URL_*` variables, dummy
//! credentials and a region. Without it the tests say so and pass outside CI; under `CI=true`
//! they fail. Each test builds its own Auto Scaling group (launch configuration + group: moto
//! launches the instances), so they run in parallel.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::moto::moto;
use aws_config::BehaviorVersion;
use aws_sdk_autoscaling::Client as Asg;
use aws_sdk_autoscaling::types::AutoScalingGroup;
use aws_sdk_resourcegroupstagging::Client as Tagging;
use chrono::Utc;
use pink_sombrero::config::AwsOptions;
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
    let fleet = AwsFleet::from_opts(&AwsOptions {
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
    group_at(asg, "us-east-1a", n).await
}

/// Creates a group of `n` instances in availability zone `zone` (of the client's region).
async fn group_at(asg: &Asg, zone: &str, n: i32) -> (String, Vec<String>) {
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
        .availability_zones(zone)
        .send()
        .await
        .unwrap();
    let ids = group_ids(asg, &name).await;
    assert_eq!(ids.len(), n as usize);
    (name, ids)
}

/// The Auto Scaling group `name` as moto describes it now.
async fn describe_group(asg: &Asg, name: &str) -> AutoScalingGroup {
    let out = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .unwrap();
    out.auto_scaling_groups()[0].clone()
}

async fn group_ids(asg: &Asg, name: &str) -> Vec<String> {
    describe_group(asg, name)
        .await
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

// --- The taint tag as the source of truth: SSM on a lab that knows none of these instances;
// tagging, EC2 and Auto Scaling at moto. Each test works in an account of its own (moto keeps
// one state per account, and maps assumed-role keys to the role's account), so no other test's
// tainted instances, nor an earlier run's, are in its way.

/// Credentials for a fresh account at moto (AssumeRole into a random account id).
async fn fresh_account() -> aws_credential_types::Credentials {
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let account = 100_000_000_000u64 + u64::from(rand::random::<u32>()) * 100;
    let out = aws_sdk_sts::Client::new(&sdk)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/sombrero-test"))
        .role_session_name("sombrero-test")
        .send()
        .await
        .unwrap();
    let c = out.credentials().unwrap();
    aws_credential_types::Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        None,
        "moto-assumed",
    )
}

/// Clients for `region` at moto as `creds` (the endpoints come from the environment).
async fn regional(region: &str, creds: &aws_credential_types::Credentials) -> (AwsFleet, Asg) {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .credentials_provider(creds.clone())
        .load()
        .await;
    (AwsFleet::from_config(&sdk, None).unwrap(), Asg::new(&sdk))
}

/// One EC2 Query action on one instance, sent to moto by hand (the crate has no EC2 SDK; moto
/// reads the service and region from the credential scope, not the signature).
async fn ec2_action(
    moto: &str,
    creds: &aws_credential_types::Credentials,
    region: &str,
    action: &str,
    id: &str,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = moto.trim_start_matches("http://").trim_end_matches('/');
    let body = format!("Action={action}&Version=2016-11-15&InstanceId.1={id}");
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential={}/20260101/{region}/ec2/aws4_request, \
         SignedHeaders=host, Signature=00\r\nX-Amz-Security-Token: {}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        creds.access_key_id(),
        creds.session_token().unwrap_or_default(),
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(authority).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{action} {id}: {reply}");
}

/// Creates a group of `n` in `region`; returns its name and instance ids.
async fn group_in(asg: &Asg, region: &str, n: i32) -> (String, Vec<String>) {
    group_at(asg, &format!("{region}a"), n).await
}

/// A data dir with the default policy (strategy `asg`).
fn asg_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let policy = pink_sombrero::policy::DEFAULT_POLICY;
    assert!(policy.contains(r#"replacement = "asg""#));
    std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
    dir
}

/// `sombrero <args> --json` as `creds`, with SSM on `lab` and the rest at moto in `region`.
async fn sombrero_at(
    dir: &std::path::Path,
    lab: &pink_sombrero::lab::Lab,
    creds: &aws_credential_types::Credentials,
    region: &str,
    args: &[&str],
) -> (i32, serde_json::Value) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sombrero"));
    cmd.args(args)
        .args(["--json", "--region", region, "--endpoint-url"])
        .arg(lab.endpoint_url())
        .arg("--data-dir")
        .arg(dir)
        .env("AWS_ACCESS_KEY_ID", creds.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", creds.secret_access_key())
        .env(
            "AWS_SESSION_TOKEN",
            creds.session_token().unwrap_or_default(),
        );
    crate::common::fleet::sombrero_json(cmd, args).await
}

/// The rows of a reap for `target`, as (outcome, target).
fn rows_of(done: &serde_json::Value) -> Vec<(String, String)> {
    done.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap().to_owned(),
                r["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// One test's world: a fresh account in `region`, a group of `n` there, a lab for SSM, a data
/// dir with the default policy.
struct Tagged {
    region: &'static str,
    creds: aws_credential_types::Credentials,
    fleet: AwsFleet,
    asg: Asg,
    lab: pink_sombrero::lab::Lab,
    dir: tempfile::TempDir,
    group: String,
    ids: Vec<String>,
}

impl Tagged {
    async fn new(region: &'static str, n: i32) -> Tagged {
        let creds = fresh_account().await;
        let (fleet, asg) = regional(region, &creds).await;
        let lab = pink_sombrero::lab::start(pink_sombrero::lab::LabConfig::default())
            .await
            .unwrap();
        let (group, ids) = group_in(&asg, region, n).await;
        Tagged {
            region,
            creds,
            fleet,
            asg,
            lab,
            dir: asg_data_dir(),
            group,
            ids,
        }
    }

    async fn sombrero(&self, args: &[&str]) -> (i32, serde_json::Value) {
        sombrero_at(self.dir.path(), &self.lab, &self.creds, self.region, args).await
    }

    fn events(&self, kind: pink_sombrero::audit::EventKind) -> Vec<serde_json::Value> {
        crate::common::fleet::events(self.dir.path(), kind)
    }
}

fn crashed_taint() -> Taint {
    Taint {
        request: "crashed".into(),
        by: "alice".into(),
        at: Utc::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reap_replaces_tainted_instances_ssm_does_not_list_and_records_terminated_ones() {
    use pink_sombrero::audit::EventKind;
    let Some(m) = moto() else { return };
    let w = Tagged::new("eu-west-1", 3).await;
    let (region, creds, fleet, asg, ids) = (w.region, &w.creds, &w.fleet, &w.asg, &w.ids);
    let name = &w.group;
    let (running, stopped, gone) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    // A crashed run's taint on all three; then one is stopped and one terminated (its group
    // replaces it by itself).
    for id in ids {
        fleet.taint(id, &crashed_taint()).await.unwrap();
    }
    ec2_action(&m, creds, region, "StopInstances", &stopped).await;
    ec2_action(&m, creds, region, "TerminateInstances", &gone).await;

    // The listing shows them, badged, though SSM (the lab) lists none of them.
    let (code, listing) = w.sombrero(&["fleet"]).await;
    assert_eq!(code, 0, "{listing}");
    let unlisted: BTreeMap<String, serde_json::Value> = listing
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["not_in_ssm"] == true)
        .map(|n| (n["id"].as_str().unwrap().to_owned(), n.clone()))
        .collect();
    assert_eq!(unlisted.len(), 3, "{listing}");
    assert_eq!(unlisted[&stopped]["ec2_state"], "stopped");
    assert_eq!(unlisted[&gone]["ec2_state"], "terminated");
    assert_eq!(unlisted[&running]["agent_lost"], "not_in_ssm");

    let (code, done) = w.sombrero(&["reap"]).await;
    assert_eq!(code, 0, "{done}");
    let mut got = rows_of(&done);
    got.sort();
    let mut want = vec![
        ("completed".to_owned(), running.clone()),
        ("completed".to_owned(), stopped.clone()),
        ("replaced-by-termination".to_owned(), gone.clone()),
    ];
    want.sort();
    assert_eq!(got, want, "{done}");

    // The group no longer holds the two, and is back to its desired count.
    let now_in = group_ids(asg, name).await;
    assert!(
        !now_in.contains(&running) && !now_in.contains(&stopped),
        "{now_in:?}"
    );
    assert_eq!(describe_group(asg, name).await.desired_capacity(), Some(3));
    assert_eq!(now_in.len(), 3, "{now_in:?}");

    let closed = w.events(EventKind::TaintClosed);
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0]["target"], gone.as_str());
    assert_eq!(closed[0]["closed_as"], "replaced-by-termination");
    let requested: Vec<String> = w
        .events(EventKind::ReplacementRequested)
        .iter()
        .map(|e| e["target"].as_str().unwrap().to_owned())
        .collect();
    assert!(!requested.contains(&gone), "{requested:?}");
    assert_eq!(requested.len(), 2, "{requested:?}");

    // Nothing left to do: the replaced ones are terminated and recorded, the gone one too.
    let (code, again) = w.sombrero(&["reap"]).await;
    assert_eq!(code, 0, "{again}");
    assert_eq!(again, serde_json::json!([]), "second run did something");
    assert_eq!(w.events(EventKind::ReplacementRequested).len(), 2);
    w.lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reap_of_a_tainted_instance_in_no_group_fails_clearly_and_is_retried() {
    use pink_sombrero::audit::EventKind;
    let Some(_) = moto() else { return };
    let w = Tagged::new("eu-west-2", 2).await;
    let (fleet, asg, ids, name) = (&w.fleet, &w.asg, &w.ids, &w.group);
    asg.detach_instances()
        .auto_scaling_group_name(name)
        .instance_ids(&ids[0])
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .unwrap();
    fleet.taint(&ids[0], &crashed_taint()).await.unwrap();

    for run in 1..=2 {
        let (code, done) = w.sombrero(&["reap"]).await;
        assert_eq!(
            code, 1,
            "run {run}: a failed replacement must not exit 0: {done}"
        );
        assert_eq!(
            rows_of(&done),
            vec![("failed".to_owned(), ids[0].clone())],
            "run {run}"
        );
        let detail = done[0]["detail"].as_str().unwrap();
        assert!(detail.contains("in no Auto Scaling group"), "{detail}");
        assert_eq!(
            w.events(EventKind::ReplacementFailed).len(),
            run,
            "each run tries again"
        );
    }
    // The group was left alone.
    assert_eq!(group_ids(asg, name).await, vec![ids[1].clone()]);
    w.lab.shutdown().await;
}
