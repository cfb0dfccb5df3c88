//! Every lab API operation and error shape, through the real aws-sdk-ssm client (and raw HTTP
//! where the SDK cannot be made to misbehave: no Authorization header, unknown targets).

use crate::common::lab::*;
use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_sdk_ssm::types::{
    AutomationExecutionStatus, InstanceInformationFilter, InstanceInformationFilterKey,
    InstanceInformationStringFilter, ResourceTypeForTagging, SessionFilter, SessionFilterKey,
    SessionState, Tag,
};
use pink_sombrero::lab::{OUTPUT_NEW_INSTANCE, REPLACE_DOCUMENT};

/// The service error of a call that must fail.
macro_rules! refused {
    ($call:expr $(,)?) => {
        $call.await.unwrap_err().into_service_error()
    };
}

/// A `describe_instance_information` filter on `InstanceIds`.
fn instance_ids(id: &str) -> InstanceInformationStringFilter {
    InstanceInformationStringFilter::builder()
        .key("InstanceIds")
        .values(id)
        .build()
        .unwrap()
}

/// A `describe_sessions` filter.
fn session_filter(key: SessionFilterKey, value: &str) -> SessionFilter {
    SessionFilter::builder()
        .key(key)
        .value(value)
        .build()
        .unwrap()
}

fn code<E: ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("<none>").to_string()
}

#[tokio::test]
async fn requests_without_sigv4_are_refused_and_unknown_operations_get_the_aws_shape() {
    let lab = lab(1).await;
    let (status, resp) = raw_post(
        &lab,
        &[("X-Amz-Target", "AmazonSSM.DescribeInstanceInformation")],
        "{}",
    )
    .await;
    assert_eq!(status, 400);
    assert!(resp.contains("x-amzn-errortype: MissingAuthenticationTokenException"));
    assert!(resp.contains(r#""__type":"MissingAuthenticationTokenException""#));

    let auth = "AWS4-HMAC-SHA256 Credential=lab/20260101/us-east-1/ssm/aws4_request, \
                SignedHeaders=host, Signature=00";
    let (status, resp) = raw_post(
        &lab,
        &[
            ("X-Amz-Target", "AmazonSSM.SendCommand"),
            ("Authorization", auth),
        ],
        "{}",
    )
    .await;
    assert_eq!(status, 400);
    assert!(resp.contains("x-amzn-errortype: UnknownOperationException"));
    assert!(resp.contains(r#""__type":"UnknownOperationException","message":"#));
    let (status, _) = raw_post(&lab, &[("Authorization", auth)], "{}").await;
    assert_eq!(status, 400);

    // The SDK parses the same shape.
    let ssm = client(&lab).await;
    let err = ssm.list_documents().send().await.unwrap_err();
    assert_eq!(code(&err), "UnknownOperationException");
    lab.shutdown().await;
}

#[tokio::test]
async fn describe_instance_information_pages_and_reports_aws_fields() {
    let lab = lab(7).await;
    let ssm = client(&lab).await;
    let first = ssm
        .describe_instance_information()
        .max_results(5)
        .send()
        .await
        .unwrap();
    assert_eq!(first.instance_information_list().len(), 5);
    let token = first.next_token().unwrap();
    let second = ssm
        .describe_instance_information()
        .max_results(5)
        .next_token(token)
        .send()
        .await
        .unwrap();
    assert_eq!(second.instance_information_list().len(), 2);
    assert!(second.next_token().is_none());

    let all: Vec<_> = ssm
        .describe_instance_information()
        .max_results(5)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(all.len(), 7);
    let listed: Vec<String> = all
        .iter()
        .map(|i| i.instance_id().unwrap().into())
        .collect();
    let known: Vec<String> = lab.nodes().into_iter().map(|n| n.id).collect();
    assert_eq!(listed, known);
    for i in &all {
        let id = i.instance_id().unwrap();
        assert!(id.starts_with("mi-") && id.len() == 20);
        assert_eq!(i.computer_name(), Some(id));
        assert_eq!(i.ping_status().unwrap().as_str(), "Online");
        assert_eq!(i.platform_type().unwrap().as_str(), "Linux");
        assert!(!i.platform_name().unwrap().is_empty());
        assert_eq!(i.agent_version().unwrap().split('.').count(), 4);
        assert!(i.ip_address().unwrap().starts_with("127.0.0."));
        assert!(i.last_ping_date_time().unwrap().secs() > 1_700_000_000);
        assert!(i.registration_date().is_some());
        assert_eq!(i.resource_type().unwrap().as_str(), "ManagedInstance");
    }

    let one = ssm
        .describe_instance_information()
        .filters(instance_ids(&known[3]))
        .send()
        .await
        .unwrap();
    assert_eq!(one.instance_information_list().len(), 1);
    // The legacy filter list: the SDK sends the model's `key` and `valueSet` members.
    let legacy = ssm
        .describe_instance_information()
        .instance_information_filter_list(
            InstanceInformationFilter::builder()
                .key(InstanceInformationFilterKey::InstanceIds)
                .value_set(&known[3])
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        legacy.instance_information_list()[0].instance_id(),
        Some(known[3].as_str())
    );

    let err = refused!(ssm.describe_instance_information().max_results(100).send());
    assert_eq!(code(&err), "ValidationException");
    let err = refused!(
        ssm.describe_instance_information()
            .next_token("forged")
            .send(),
    );
    assert!(err.is_invalid_next_token());
    let err = ssm
        .describe_instance_information()
        .filters(instance_ids("bogus"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_instance_id());
    lab.shutdown().await;
}

#[tokio::test]
async fn start_session_validates_like_aws_and_returns_a_stream_url() {
    let lab = lab(1).await;
    let ssm = client(&lab).await;
    let node = first_node(&ssm).await;
    let ok = ssm
        .start_session()
        .target(&node)
        .document_name("SSM-SessionManagerRunShell")
        .reason("r".repeat(256))
        .send()
        .await
        .unwrap();
    let sid = ok.session_id().unwrap();
    assert!(
        sid.starts_with("lab-"),
        "session ids start with the caller: {sid}"
    );
    assert_eq!(
        ok.stream_url().unwrap(),
        format!(
            "ws://{}/v1/data-channel/{sid}?role=publish_subscribe",
            lab.local_addr()
        )
    );
    assert!(!ok.token_value().unwrap().is_empty());

    for bad in ["r".repeat(257), "two\nlines".into(), String::new()] {
        let err = refused!(ssm.start_session().target(&node).reason(bad).send());
        assert_eq!(code(&err), "ValidationException");
    }
    let err = refused!(ssm.start_session().target("mi-00000000000000000").send());
    assert!(err.is_target_not_connected(), "{err:?}");
    let err = refused!(
        ssm.start_session()
            .target(&node)
            .document_name("AWS-StartPortForwardingSession")
            .send(),
    );
    assert!(err.is_invalid_document(), "{err:?}");
    lab.shutdown().await;
}

#[tokio::test]
async fn describe_resume_and_terminate_sessions() {
    let lab = lab(2).await;
    let ssm = client(&lab).await;
    let nodes: Vec<String> = lab.nodes().into_iter().map(|n| n.id).collect();
    let (a, _, _) = start_session(&ssm, &nodes[0]).await;
    let (b, _, _) = start_session(&ssm, &nodes[1]).await;
    ssm.terminate_session().session_id(&a).send().await.unwrap();
    // Terminating again is fine, as in AWS.
    ssm.terminate_session().session_id(&a).send().await.unwrap();

    let active = ssm
        .describe_sessions()
        .state(SessionState::Active)
        .send()
        .await
        .unwrap();
    let s = &active.sessions()[0];
    assert_eq!(active.sessions().len(), 1);
    assert_eq!(s.session_id(), Some(b.as_str()));
    assert_eq!(s.target(), Some(nodes[1].as_str()));
    assert_eq!(s.reason(), Some("pink sombrero test"));
    assert_eq!(s.owner(), Some("arn:aws:iam::000000000000:user/lab"));
    assert_eq!(s.status().unwrap().as_str(), "Connecting");
    assert!(s.start_date().is_some() && s.end_date().is_none());

    let history = ssm
        .describe_sessions()
        .state(SessionState::History)
        .send()
        .await
        .unwrap();
    let h = &history.sessions()[0];
    assert_eq!(h.session_id(), Some(a.as_str()));
    assert_eq!(h.status().unwrap().as_str(), "Terminated");
    assert!(h.end_date().is_some());

    let by_target = ssm
        .describe_sessions()
        .state(SessionState::Active)
        .filters(session_filter(SessionFilterKey::TargetId, &nodes[0]))
        .send()
        .await
        .unwrap();
    assert!(by_target.sessions().is_empty());
    let err = ssm
        .describe_sessions()
        .state(SessionState::Active)
        .filters(session_filter(SessionFilterKey::from("Nope"), "x"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_filter_key(), "{err:?}");

    let resumed = ssm.resume_session().session_id(&b).send().await.unwrap();
    assert_eq!(resumed.session_id(), Some(b.as_str()));
    assert!(resumed.stream_url().unwrap().contains(&b));
    let err = refused!(ssm.resume_session().session_id(&a).send());
    assert!(err.is_does_not_exist_exception(), "{err:?}");
    let err = refused!(ssm.terminate_session().session_id("lab-nope").send());
    assert_eq!(code(&err), "DoesNotExistException");
    lab.shutdown().await;
}

#[tokio::test]
async fn tags_live_on_nodes() {
    let lab = lab(1).await;
    let ssm = client(&lab).await;
    let node = first_node(&ssm).await;
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build().unwrap();
    ssm.add_tags_to_resource()
        .resource_type(ResourceTypeForTagging::ManagedInstance)
        .resource_id(&node)
        .tags(tag("pink-sombrero:tainted", "false"))
        .tags(tag("pink-sombrero:request", "req-1"))
        .send()
        .await
        .unwrap();
    ssm.add_tags_to_resource()
        .resource_type(ResourceTypeForTagging::ManagedInstance)
        .resource_id(&node)
        .tags(tag("pink-sombrero:tainted", "true"))
        .send()
        .await
        .unwrap();
    let listed = ssm
        .list_tags_for_resource()
        .resource_type(ResourceTypeForTagging::ManagedInstance)
        .resource_id(&node)
        .send()
        .await
        .unwrap();
    let pairs: Vec<(&str, &str)> = listed
        .tag_list()
        .iter()
        .map(|t| (t.key(), t.value()))
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("pink-sombrero:tainted", "true"),
            ("pink-sombrero:request", "req-1")
        ]
    );
    assert_eq!(lab.nodes()[0].tags.len(), 2);
    ssm.remove_tags_from_resource()
        .resource_type(ResourceTypeForTagging::ManagedInstance)
        .resource_id(&node)
        .tag_keys("pink-sombrero:request")
        .send()
        .await
        .unwrap();
    assert_eq!(
        lab.nodes()[0].tags,
        vec![("pink-sombrero:tainted".into(), "true".into())]
    );

    let err = refused!(
        ssm.list_tags_for_resource()
            .resource_type(ResourceTypeForTagging::ManagedInstance)
            .resource_id("mi-00000000000000000")
            .send(),
    );
    assert!(err.is_invalid_resource_id(), "{err:?}");
    let err = refused!(
        ssm.add_tags_to_resource()
            .resource_type(ResourceTypeForTagging::Document)
            .resource_id(&node)
            .tags(tag("a", "b"))
            .send(),
    );
    assert!(err.is_invalid_resource_type(), "{err:?}");
    let mut many = ssm
        .add_tags_to_resource()
        .resource_type(ResourceTypeForTagging::ManagedInstance)
        .resource_id(&node);
    for i in 0..50 {
        many = many.tags(tag(&format!("k{i}"), "v"));
    }
    let err = many.send().await.unwrap_err().into_service_error();
    assert!(err.is_too_many_tags_error(), "{err:?}");

    // The hook makes tagging fail the way a missing IAM permission does, once.
    lab.hooks().fail_operation("AddTagsToResource", 1);
    let err = refused!(
        ssm.add_tags_to_resource()
            .resource_type(ResourceTypeForTagging::ManagedInstance)
            .resource_id(&node)
            .tags(tag("a", "b"))
            .send(),
    );
    assert_eq!(code(&err), "AccessDeniedException");
    ssm.add_tags_to_resource()
        .resource_type(ResourceTypeForTagging::ManagedInstance)
        .resource_id(&node)
        .tags(tag("a", "b"))
        .send()
        .await
        .unwrap();
    lab.shutdown().await;
}

/// Runs the replace document on `node` and waits for the execution to leave InProgress.
async fn replace_and_wait(
    ssm: &aws_sdk_ssm::Client,
    node: &str,
) -> aws_sdk_ssm::types::AutomationExecution {
    let started = ssm
        .start_automation_execution()
        .document_name(REPLACE_DOCUMENT)
        .parameters("InstanceId", vec![node.to_string()])
        .send()
        .await
        .unwrap();
    let id = started.automation_execution_id().unwrap();
    loop {
        let e = ssm
            .get_automation_execution()
            .automation_execution_id(id)
            .send()
            .await
            .unwrap()
            .automation_execution()
            .unwrap()
            .clone();
        if e.automation_execution_status() != Some(&AutomationExecutionStatus::Inprogress) {
            return e;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn automation_replaces_nodes_and_reports_errors_like_aws() {
    let lab = lab(2).await;
    let ssm = client(&lab).await;
    let node = first_node(&ssm).await;
    let start = |doc: &str, params: Vec<String>| {
        ssm.start_automation_execution()
            .document_name(doc)
            .parameters("InstanceId", params)
            .send()
    };
    let e = replace_and_wait(&ssm, &node).await;
    assert_eq!(
        e.automation_execution_status(),
        Some(&AutomationExecutionStatus::Success)
    );
    let new = &e.outputs().unwrap()[OUTPUT_NEW_INSTANCE][0];
    assert!(e.execution_end_time().is_some());
    let ids: Vec<String> = lab.nodes().into_iter().map(|n| n.id).collect();
    assert!(ids.contains(new) && !ids.contains(&node));

    let err = refused!(start("AWS-RestartEC2Instance", vec![ids[0].clone()]));
    assert!(
        err.is_automation_definition_not_found_exception(),
        "{err:?}"
    );
    let err = refused!(start(REPLACE_DOCUMENT, vec![node.clone()]));
    assert!(
        err.is_invalid_automation_execution_parameters_exception(),
        "replacing a gone node: {err:?}"
    );
    let err = refused!(start(REPLACE_DOCUMENT, vec![]));
    assert!(err.is_invalid_automation_execution_parameters_exception());
    let err = refused!(
        ssm.get_automation_execution()
            .automation_execution_id("00000000-0000-0000-0000-000000000000")
            .send(),
    );
    assert!(err.is_automation_execution_not_found_exception());

    lab.hooks().fail_next_automation();
    let e = replace_and_wait(&ssm, &ids[0]).await;
    assert_eq!(
        e.automation_execution_status(),
        Some(&AutomationExecutionStatus::Failed)
    );
    assert!(e.failure_message().unwrap().contains("hook"));
    assert!(
        lab.nodes().iter().any(|n| n.id == ids[0]),
        "nothing replaced"
    );

    lab.hooks().fail_operation("StartAutomationExecution", 1);
    let err = start(REPLACE_DOCUMENT, vec![ids[0].clone()])
        .await
        .unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");
    lab.shutdown().await;
}

#[tokio::test]
async fn non_loopback_listen_is_refused() {
    let err = pink_sombrero::lab::start(pink_sombrero::lab::LabConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("loopback"));
}
