//! The IAM templates in deploy/iam/ are what make the broker the only door (README "Trust
//! model"). These checks keep them well formed and in step with the product: the broker's role
//! grants every action the README's IAM line says the product calls, and the engineers' policy
//! and the SCP explicitly deny direct sessions and changes to the taint tags.

use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn iam_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/iam")
}

fn load(name: &str) -> Value {
    let path = iam_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn statements(doc: &Value) -> &Vec<Value> {
    doc["Statement"].as_array().unwrap()
}

/// `Action`, `Resource` and condition values may be one string or a list of strings.
fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().map(|i| i.as_str().unwrap()).collect(),
        _ => Vec::new(),
    }
}

fn with_effect<'a>(doc: &'a Value, effect: &str) -> Vec<&'a Value> {
    statements(doc)
        .iter()
        .filter(|s| s["Effect"] == effect)
        .collect()
}

/// The backquoted action names in the README paragraph that starts "IAM for the broker's role:".
fn readme_broker_actions() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("IAM for the broker's role:")
        .expect("README.md lost its \"IAM for the broker's role:\" paragraph");
    let paragraph = readme[start..].split("\n\n").next().unwrap();
    paragraph
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_template_is_a_versioned_policy_with_unique_sids() {
    let mut files: Vec<_> = std::fs::read_dir(iam_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "templates missing in {}",
        iam_dir().display()
    );
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let doc = load(name);
        assert_eq!(doc["Version"], "2012-10-17", "{name}: Version");
        let stmts = statements(&doc);
        assert!(!stmts.is_empty(), "{name}: no statements");
        let mut sids = HashSet::new();
        for s in stmts {
            let sid = s["Sid"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: a statement has no Sid: {s}"));
            // IAM allows only ASCII letters and digits in a Sid.
            assert!(
                !sid.is_empty() && sid.chars().all(|c| c.is_ascii_alphanumeric()),
                "{name}: Sid {sid:?} is not alphanumeric"
            );
            assert!(sids.insert(sid), "{name}: Sid {sid} appears twice");
            assert!(
                s["Effect"] == "Allow" || s["Effect"] == "Deny",
                "{name}: {sid} has no valid Effect"
            );
            assert!(
                !strings(&s["Action"]).is_empty(),
                "{name}: {sid} names no Action"
            );
        }
    }
}

#[test]
fn broker_role_grants_every_action_the_product_calls() {
    let doc = load("broker-role-policy.json");
    let granted: HashSet<&str> = with_effect(&doc, "Allow")
        .into_iter()
        .flat_map(|s| strings(&s["Action"]))
        .collect();
    let needed = readme_broker_actions();
    assert!(
        needed.len() >= 17,
        "README's IAM line yielded only {needed:?}"
    );
    for action in &needed {
        assert!(
            granted.contains(action.as_str()),
            "broker-role-policy.json does not grant {action} (README's IAM line needs it)"
        );
    }
    // The data channel's signed websocket upgrade needs this beyond the API calls.
    assert!(granted.contains("ssmmessages:OpenDataChannel"));
}

#[test]
fn broker_role_is_least_privilege() {
    let doc = load("broker-role-policy.json");
    for s in with_effect(&doc, "Allow") {
        for action in strings(&s["Action"]) {
            assert!(
                !action.contains('*'),
                "{}: wildcard action {action}",
                s["Sid"]
            );
        }
    }
    // It never untags: un-tainting a node is exactly what nobody may do.
    let all: Vec<&str> = with_effect(&doc, "Allow")
        .into_iter()
        .flat_map(|s| strings(&s["Action"]))
        .collect();
    for forbidden in [
        "ec2:DeleteTags",
        "ssm:RemoveTagsFromResource",
        "tag:UntagResources",
    ] {
        assert!(!all.contains(&forbidden), "broker may {forbidden}");
    }
    // Sessions open only on nodes already tainted, and with the default shell document or the
    // one-shot command document only.
    let start: Vec<&Value> = with_effect(&doc, "Allow")
        .into_iter()
        .filter(|s| strings(&s["Action"]).contains(&"ssm:StartSession"))
        .collect();
    for s in &start {
        let on_nodes = strings(&s["Resource"])
            .iter()
            .any(|r| r.contains(":instance/") || r.contains(":managed-instance/"));
        if on_nodes {
            assert_eq!(
                s["Condition"]["StringEquals"]["ssm:resourceTag/pink-sombrero:tainted"], "true",
                "{}: StartSession on nodes without the taint condition",
                s["Sid"]
            );
        } else {
            let documents = strings(&s["Resource"]);
            assert!(
                documents == ["arn:aws:ssm:*:111122223333:document/SSM-SessionManagerRunShell"]
                    || documents == ["arn:aws:ssm:*:111122223333:document/PinkSombrero-Command"],
                "{}: StartSession on another document",
                s["Sid"]
            );
        }
    }
    assert_eq!(start.len(), 3);
}

#[test]
fn the_command_document_separates_output_and_reports_the_exit_status() {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("deploy/ssm/PinkSombrero-Command.json"),
        )
        .unwrap(),
    )
    .unwrap();
    // Only NonInteractiveCommands with separateOutputStream sends stdout, stderr and the exit
    // code apart (amazon-ssm-agent agent/session/shell/shell.go).
    assert_eq!(doc["sessionType"], "NonInteractiveCommands");
    assert_eq!(doc["properties"]["separateOutputStream"], true);
    assert_eq!(doc["properties"]["commands"], "{{ command }}");
    assert_eq!(doc["parameters"]["command"]["type"], "String");
}

fn denies(doc: &Value, action: &str) -> Vec<Value> {
    with_effect(doc, "Deny")
        .into_iter()
        .filter(|s| strings(&s["Action"]).contains(&action))
        .cloned()
        .collect()
}

#[test]
fn engineers_are_explicitly_denied_direct_sessions_and_tag_changes() {
    let doc = load("engineers-deny-direct-sessions.json");
    assert!(
        with_effect(&doc, "Allow").is_empty(),
        "the engineers' policy only denies; their own grants live elsewhere"
    );
    let start = denies(&doc, "ssm:StartSession");
    assert_eq!(start.len(), 1, "one explicit Deny of ssm:StartSession");
    let resources = strings(&start[0]["Resource"]);
    assert!(resources.contains(&"arn:aws:ec2:*:*:instance/*"));
    assert!(resources.contains(&"arn:aws:ssm:*:*:managed-instance/*"));
    // Fail closed: only an explicit opt-out tag lifts the deny; untagged nodes stay protected.
    assert_eq!(
        start[0]["Condition"],
        serde_json::json!({"StringNotEquals": {"ssm:resourceTag/pink-sombrero:protected": "false"}})
    );
    for action in [
        "ssm:SendCommand",
        "ssm:StartAutomationExecution",
        "ec2-instance-connect:SendSSHPublicKey",
        "ssm-guiconnect:StartConnection",
        "ec2:GetPasswordData",
    ] {
        assert!(!denies(&doc, action).is_empty(), "side door {action} open");
    }
    for action in [
        "ec2:CreateTags",
        "ec2:DeleteTags",
        "ssm:AddTagsToResource",
        "ssm:RemoveTagsFromResource",
    ] {
        let guarded = denies(&doc, action)
            .iter()
            .any(|s| s["Condition"]["ForAnyValue:StringLike"]["aws:TagKeys"] == "pink-sombrero:*");
        assert!(guarded, "engineers may {action} on pink-sombrero:* tags");
    }
    assert!(
        denies(&doc, "iam:PassRole")
            .iter()
            .any(|s| strings(&s["Resource"])
                .contains(&"arn:aws:iam::111122223333:role/pink-sombrero-broker")),
        "engineers could launch an instance with the broker's role"
    );
}

#[test]
fn scp_exempts_only_the_broker_from_the_session_deny() {
    let doc = load("scp-broker-only-door.json");
    let start = denies(&doc, "ssm:StartSession");
    assert_eq!(start.len(), 1);
    assert_eq!(
        start[0]["Condition"]["ArnNotLike"]["aws:PrincipalArn"],
        "arn:aws:iam::*:role/pink-sombrero-broker"
    );
}

#[test]
fn broker_role_is_assumable_by_ec2_only() {
    let doc = load("broker-trust-policy.json");
    let stmts = statements(&doc);
    assert_eq!(stmts.len(), 1);
    assert_eq!(stmts[0]["Effect"], "Allow");
    assert_eq!(stmts[0]["Action"], "sts:AssumeRole");
    assert_eq!(
        stmts[0]["Principal"],
        serde_json::json!({"Service": "ec2.amazonaws.com"})
    );
}
