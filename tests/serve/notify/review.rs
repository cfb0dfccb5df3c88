//! The review queue through the CLI, embedded and through the daemon: a real session on the
//! lab, then `review --pending` until a reviewer signs it off. (Deadlines and the overdue
//! notices under a test clock: `review_queue` unit tests.)

use std::time::Duration;

use pink_sombrero::lab::{self, LabConfig};

use crate::common::daemon::{Daemon, own_user};
use crate::common::run_with_stdin;

const POLICY: &str = r#"
requesters = ["*"]
approvers = ["*"]
reviewers = ["*"]
replacement = "automation:PinkSombrero-ReplaceNode"
review_required = "all"
review_within = "1s"
"#;

#[test]
fn a_finished_session_waits_on_the_queue_until_reviewed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lab = rt.block_on(lab::start(LabConfig::default())).unwrap();
    let me = own_user();
    let mut d = Daemon::new(
        POLICY,
        &[
            ("rita", "requester"),
            ("ann", "approver"),
            ("bob", "approver"),
            (&me, "both"),
            ("rev", "reviewer"),
        ],
    );
    let target = lab.nodes()[0].id.clone();
    let id = d.env.approved(&target, "rita", &["ann", "bob"]);
    // Nothing is queued before a session ended.
    let none = d.env.run(&["review", "--pending", "--json"]).ok().json();
    assert_eq!(none, serde_json::json!([]));
    let mut open = d.env.open_on_lab(&id, "rita", &lab.endpoint_url());
    open.args(["--", "true"]);
    let out = run_with_stdin(&mut open, b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(1100));
    let rows = d.env.run(&["review", "--pending", "--json"]).ok().json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["request_id"], id.as_str());
    assert_eq!(row["requester"], "rita");
    assert_eq!(row["target"], target.as_str());
    assert_eq!(row["overdue"], true);
    assert_eq!(row["needed"], 1);
    assert!(
        row["recording"].as_str().unwrap().ends_with(".cast"),
        "{row}"
    );
    let text = d.env.run(&["review", "--pending"]).ok().stdout;
    assert!(text.contains("OVERDUE by") && text.contains(&id), "{text}");
    // The daemon serves the same queue to approvers and reviewers.
    d.start();
    let remote = d
        .client(None, &["review", "--pending", "--json"])
        .ok()
        .json();
    assert_eq!(remote.as_array().unwrap().len(), 1, "{remote}");
    assert_eq!(remote[0]["request_id"], id.as_str());
    // rev signs the recording off: the queue is empty.
    let cast = d
        .env
        .path()
        .join("recordings")
        .join(row["recording"].as_str().unwrap());
    let code = d.env.code("rev");
    d.env
        .run(&[
            "review",
            cast.to_str().unwrap(),
            "--as",
            "rev",
            "--code",
            &code,
            "--note",
            "routine fix",
        ])
        .ok();
    let after = d
        .client(None, &["review", "--pending", "--json"])
        .ok()
        .json();
    assert_eq!(after, serde_json::json!([]));
    rt.block_on(lab.shutdown());
}
