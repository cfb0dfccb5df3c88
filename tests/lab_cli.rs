//! `sombrero lab` as a process: endpoint file, banner, real SDK calls, Ctrl-C, refusals.

use std::process::{Command, Stdio};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;

fn sombrero() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sombrero"))
}

#[tokio::test]
async fn lab_serves_until_ctrl_c_and_writes_its_endpoint_file() {
    let dir = tempfile::tempdir().unwrap();
    let ep = dir.path().join("endpoint");
    let child = sombrero()
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["lab", "--nodes", "2", "--endpoint-file"])
        .arg(&ep)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the file (a guard against a hang, not a speed check).
    let mut url = String::new();
    for _ in 0..400 {
        if let Ok(s) = std::fs::read_to_string(&ep) {
            url = s.trim().to_string();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "endpoint file: {url:?}"
    );

    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("lab", "lab", None, None, "test"))
        .endpoint_url(&url)
        .load()
        .await;
    let ssm = aws_sdk_ssm::Client::new(&conf);
    let nodes = ssm.describe_instance_information().send().await.unwrap();
    assert_eq!(nodes.instance_information_list().len(), 2);

    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(&format!("lab listening: {url}")));
    assert!(stdout.contains(&format!("AWS_ENDPOINT_URL_SSM={url}")));
    // The lab answers the search for tainted instances too (it has none), not AWS.
    assert!(stdout.contains(&format!(
        "AWS_ENDPOINT_URL_RESOURCE_GROUPS_TAGGING_API={url}"
    )));
    assert!(!ep.exists(), "endpoint file removed on exit");
    let log = std::fs::read_to_string(dir.path().join("data/logs/sombrero.log")).unwrap();
    assert!(log.contains("lab listening"));
    assert!(log.contains("Ctrl-C: stopping the lab"));
}

#[test]
fn lab_refuses_non_loopback_and_bad_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let run = |listen: &str| {
        sombrero()
            .arg("--data-dir")
            .arg(dir.path())
            .args(["lab", "--listen", listen])
            .output()
            .unwrap()
    };
    let out = run("0.0.0.0:0");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    let out = run("nope");
    assert_eq!(out.status.code(), Some(2));
}
