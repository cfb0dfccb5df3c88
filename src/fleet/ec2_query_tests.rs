//! Unit tests of [`super`] (`ec2_query.rs`), kept apart so the module reads as product code.

use super::*;

const REPLY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>8f7724cf-496f-496e-8fe3-example</requestId>
  <reservationSet>
    <item>
      <reservationId>r-1234567890abcdef0</reservationId>
      <instancesSet>
        <item>
          <instanceId>i-1234567890abcdef0</instanceId>
          <blockDeviceMapping><item><ebs><attachTime>2020-01-01T00:00:00.000Z</attachTime></ebs></item></blockDeviceMapping>
          <launchTime>2026-11-01T09:30:00.000Z</launchTime>
          <instanceState><code>80</code><name>stopped</name></instanceState>
          <stateReason><name>not this</name></stateReason>
          <tagSet><item><key>launchTime</key><value>not this</value></item></tagSet>
        </item>
        <item>
          <instanceId>i-0abcdef1234567890</instanceId>
          <launchTime>garbled</launchTime>
        </item>
        <item><launchTime>2026-11-01T09:30:00.000Z</launchTime></item>
      </instancesSet>
    </item>
    <item>
      <instancesSet>
        <item><instanceId>i-0fedcba9876543210</instanceId><launchTime>2025-12-24T18:00:05Z</launchTime><instanceState><name>terminated</name></instanceState></item>
      </instancesSet>
    </item>
  </reservationSet>
  <nextToken>abc+/=</nextToken>
</DescribeInstancesResponse>"#;

fn at(s: &str) -> Option<DateTime<Utc>> {
    Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
}

#[test]
fn reads_ids_and_launch_times_only_where_they_belong() {
    let page = parse_reply(REPLY).unwrap();
    assert_eq!(
        page.instances,
        vec![
            Ec2Instance {
                id: "i-1234567890abcdef0".into(),
                launched: at("2026-11-01T09:30:00Z"),
                state: Some("stopped".into()),
            },
            Ec2Instance {
                id: "i-0abcdef1234567890".into(),
                launched: None,
                state: None,
            },
            Ec2Instance {
                id: "i-0fedcba9876543210".into(),
                launched: at("2025-12-24T18:00:05Z"),
                state: Some("terminated".into()),
            },
        ]
    );
    assert_eq!(page.next_token.as_deref(), Some("abc+/="));
    assert!(!page.instances[0].terminated() && page.instances[2].terminated());
    assert_eq!(form_encode("abc+/= x"), "abc%2B%2F%3D%20x");
}

#[test]
fn an_empty_or_foreign_reply() {
    let empty = r#"<DescribeInstancesResponse><reservationSet/></DescribeInstancesResponse>"#;
    assert_eq!(parse_reply(empty).unwrap(), Page::default());
    for bad in ["", "not xml", "<Other/>"] {
        assert!(
            matches!(parse_reply(bad), Err(FleetError::Api { code: None, .. })),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn ec2_errors_keep_code_and_message() {
    let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>r</RequestID></Response>"#;
    let e = error_reply(403, body);
    assert_eq!(e.aws_code(), Some("UnauthorizedOperation"));
    assert_eq!(
        e.to_string(),
        "AWS DescribeInstances failed: UnauthorizedOperation: You are not authorized to perform this operation."
    );
    let e = error_reply(503, "<html>Service Unavailable</html>");
    assert_eq!(e.aws_code(), None);
    assert!(
        e.to_string()
            .contains("HTTP 503: <html>Service Unavailable"),
        "{e}"
    );
}

#[test]
fn not_found_names_the_unknown_ids() {
    let asked = ["i-00000001", "i-00000002", "i-00000003"];
    let e = |m: &str| FleetError::Api {
        op: OP,
        code: Some(NOT_FOUND.into()),
        message: format!("{NOT_FOUND}: {m}"),
    };
    assert_eq!(
        unknown_ids(&e("The instance ID 'i-00000002' does not exist"), &asked),
        vec!["i-00000002"]
    );
    assert_eq!(
        unknown_ids(
            &e("The instance IDs 'i-00000001, i-00000003' do not exist"),
            &asked
        ),
        vec!["i-00000001", "i-00000003"]
    );
    assert!(unknown_ids(&e("The instance ID 'i-0000000' does not exist"), &asked).is_empty());
}

fn config(endpoint: &str, credentials: bool) -> SdkConfig {
    let mut b = SdkConfig::builder()
        .region(aws_types::region::Region::new("us-east-1"))
        .endpoint_url(endpoint);
    if credentials {
        b = b.credentials_provider(SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new("AKID", "secret", None, None, "test"),
        ));
    }
    b.build()
}

#[tokio::test]
async fn transport_and_credential_failures_say_what_happened() {
    // Nothing listens on port 1 of the loopback.
    let ec2 = Ec2Query::from_config(&config("http://127.0.0.1:1", true)).unwrap();
    assert_eq!(ec2.endpoint(), "http://127.0.0.1:1");
    let e = ec2.describe(&["i-00000001"]).await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with("AWS DescribeInstances failed: cannot reach http://127.0.0.1:1"),
        "{e}"
    );
    let ec2 = Ec2Query::from_config(&config("http://127.0.0.1:1", false)).unwrap();
    let e = ec2.describe(&["i-00000001"]).await.unwrap_err();
    assert!(
        e.to_string().contains("no credentials are configured"),
        "{e}"
    );
    assert!(Ec2Query::from_config(&config("localhost:4566", true)).is_err());
}

#[test]
fn endpoints() {
    let e = Endpoint::parse("http://127.0.0.1:4566/").unwrap();
    assert_eq!(e.url, "http://127.0.0.1:4566");
    assert_eq!(e.authority, "127.0.0.1:4566");
    assert_eq!(
        Endpoint::default_for("eu-west-1"),
        "https://ec2.eu-west-1.amazonaws.com"
    );
    assert_eq!(
        Endpoint::default_for("cn-north-1"),
        "https://ec2.cn-north-1.amazonaws.com.cn"
    );
    for bad in [
        "ec2.amazonaws.com",
        "ftp://x",
        "https://",
        "https://h/?a=b",
        "https://u@h/",
    ] {
        assert!(Endpoint::parse(bad).is_err(), "{bad:?} accepted");
    }
}
