//! `sombrero lab` as a process: endpoint file, banner, real SDK calls, Ctrl-C, refusals.

use std::process::{Command, Stdio};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;

fn sombrero() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sombrero"))
}

/// A running `sombrero lab` with its scratch root under a private TMPDIR.
struct RunningLab {
    child: std::process::Child,
    dir: tempfile::TempDir,
    url: String,
}

async fn start_lab(nodes: &str) -> RunningLab {
    let dir = tempfile::tempdir().unwrap();
    let ep = dir.path().join("endpoint");
    std::fs::create_dir(dir.path().join("tmp")).unwrap();
    let child = sombrero()
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["lab", "--nodes", nodes, "--endpoint-file"])
        .arg(&ep)
        .env("TMPDIR", dir.path().join("tmp"))
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
    RunningLab { child, dir, url }
}

/// Scratch roots the lab left in its TMPDIR.
fn scratch_roots(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join("tmp"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("sombrero-lab-"))
        .collect()
}

/// Signals the lab and checks it exits 0, logging `signal`, with no scratch root left.
fn stop_lab(lab: RunningLab, signal: libc::c_int, name: &str) -> String {
    assert_eq!(
        scratch_roots(lab.dir.path()).len(),
        1,
        "the lab made its scratch root"
    );
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(lab.child.id() as i32, signal) };
    let out = lab.child.wait_with_output().unwrap();
    assert!(out.status.success(), "{name}: {:?}", out.status);
    assert!(
        scratch_roots(lab.dir.path()).is_empty(),
        "{name} left scratch dirs behind"
    );
    assert!(
        !lab.dir.path().join("endpoint").exists(),
        "endpoint file removed on exit"
    );
    let log = std::fs::read_to_string(lab.dir.path().join("data/logs/sombrero.log")).unwrap();
    assert!(log.contains("lab listening"));
    assert!(log.contains("stopping the lab"), "{log}");
    assert!(log.contains(name), "{log}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn lab_serves_until_ctrl_c_and_writes_its_endpoint_file() {
    let lab = start_lab("2").await;
    let url = lab.url.clone();
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("lab", "lab", None, None, "test"))
        .endpoint_url(&url)
        .load()
        .await;
    let ssm = aws_sdk_ssm::Client::new(&conf);
    let nodes = ssm.describe_instance_information().send().await.unwrap();
    assert_eq!(nodes.instance_information_list().len(), 2);

    let stdout = stop_lab(lab, libc::SIGINT, "SIGINT");
    assert!(stdout.contains(&format!("lab listening: {url}")));
    assert!(stdout.contains(&format!("AWS_ENDPOINT_URL_SSM={url}")));
    // The lab answers the search for tainted instances too (it has none), not AWS.
    assert!(stdout.contains(&format!(
        "AWS_ENDPOINT_URL_RESOURCE_GROUPS_TAGGING_API={url}"
    )));
}

#[tokio::test]
async fn lab_cleans_up_on_sigterm_and_sighup_as_on_sigint() {
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGHUP, "SIGHUP")] {
        let lab = start_lab("1").await;
        stop_lab(lab, signal, name);
    }
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
