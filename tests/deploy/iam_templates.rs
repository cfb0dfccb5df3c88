//! The IAM templates in deploy/iam/ are what make the broker the only door (README "Trust
//! model"). These checks keep them well formed and in step with the product: the broker's role
//! grants every action the README's IAM line says the product calls, and the engineers' policy
//! and the SCP explicitly deny direct sessions and changes to the taint tags.

use crate::common::tools::{find_tool, run_ok};
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

// deploy/cloudformation/sombrero.yaml deploys the same documents in one stack: cfn-lint must
// pass on it, and with its parameters at their defaults it must grant exactly what the JSON
// templates grant (their placeholders are the template's parameters and pseudo parameters).

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// CloudFormation's short forms (`!Sub`, `!Ref`, `!GetAtt a.b`, ...) as their long forms.
const CFN_YAML_TO_JSON: &str = r#"
import json, sys, yaml
class Loader(yaml.SafeLoader):
    pass
def intrinsic(loader, suffix, node):
    name = suffix if suffix in ("Ref", "Condition") else "Fn::" + suffix
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}
Loader.add_multi_constructor("!", intrinsic)
with open(sys.argv[1]) as f:
    print(json.dumps(yaml.load(f, Loader=Loader)))
"#;

fn cfn_template_path() -> PathBuf {
    manifest_dir().join("deploy/cloudformation/sombrero.yaml")
}

/// The template as JSON (PyYAML from the venv cfn-lint lives in), or None if skipped.
fn cfn_template() -> Option<Value> {
    let python = find_tool("python3", "the CloudFormation template checks")?;
    let json = run_ok(
        std::process::Command::new(python)
            .args(["-c", CFN_YAML_TO_JSON])
            .arg(cfn_template_path()),
    );
    Some(serde_json::from_slice(&json).unwrap())
}

/// What each `${NAME}` / `Ref` stands for when the stack is deployed with its defaults into
/// the account the JSON templates' placeholders name.
fn cfn_values(template: &Value) -> std::collections::HashMap<String, String> {
    let mut values: std::collections::HashMap<String, String> = [
        ("AWS::AccountId", "111122223333"),
        ("AWS::Partition", "aws"),
        ("BrokerRole.RoleId", "AROAEXAMPLEBROKERROLEID"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (name, p) in template["Parameters"].as_object().unwrap() {
        let default = match &p["Default"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => panic!("parameter {name} has no usable default: {other}"),
        };
        values.insert(name.clone(), default);
    }
    values
}

/// Replaces `Ref`, `Fn::Sub` and `Fn::GetAtt` with their values; any other intrinsic inside a
/// document is a failure (the JSON templates have none).
fn cfn_resolve(v: &Value, values: &std::collections::HashMap<String, String>) -> Value {
    let lookup = |name: &str| {
        values
            .get(name)
            .unwrap_or_else(|| panic!("the template names ${{{name}}}, which has no value"))
            .clone()
    };
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("Ref") => {
            Value::String(lookup(m["Ref"].as_str().unwrap()))
        }
        Value::Object(m) if m.len() == 1 && m.contains_key("Fn::GetAtt") => {
            Value::String(lookup(&strings(&m["Fn::GetAtt"]).join(".")))
        }
        Value::Object(m) if m.len() == 1 && m.contains_key("Fn::Sub") => {
            let mut text = m["Fn::Sub"]
                .as_str()
                .expect("Fn::Sub of a string")
                .to_string();
            let mut out = String::new();
            while let Some(start) = text.find("${") {
                out.push_str(&text[..start]);
                let end = start + text[start..].find('}').unwrap();
                let name = &text[start + 2..end];
                match name.strip_prefix('!') {
                    Some(literal) => out.push_str(&format!("${{{literal}}}")),
                    None => out.push_str(&lookup(name)),
                }
                text = text[end + 1..].to_string();
            }
            out.push_str(&text);
            Value::String(out)
        }
        Value::Object(m) => {
            if let Some(k) = m.keys().find(|k| k.starts_with("Fn::")) {
                panic!("unexpected {k} inside a document: {v}");
            }
            Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), cfn_resolve(v, values)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| cfn_resolve(i, values)).collect()),
        other => other.clone(),
    }
}

#[test]
fn cloudformation_template_passes_cfn_lint() {
    let Some(cfn_lint) = find_tool("cfn-lint", "cfn-lint on the CloudFormation template") else {
        return;
    };
    run_ok(std::process::Command::new(cfn_lint).arg(cfn_template_path()));
}

#[test]
fn cloudformation_grants_exactly_what_deploy_iam_grants() {
    let Some(t) = cfn_template() else {
        return;
    };
    let values = cfn_values(&t);
    let resources = &t["Resources"];
    // Every JSON template but the SCP (an Organizations policy, deployed in the management
    // account) is one document of the stack.
    let documents = [
        (
            "broker-trust-policy.json",
            &resources["BrokerRole"]["Properties"]["AssumeRolePolicyDocument"],
        ),
        (
            "broker-role-policy.json",
            &resources["BrokerPolicy"]["Properties"]["PolicyDocument"],
        ),
        (
            "engineers-deny-direct-sessions.json",
            &resources["EngineersDenyPolicy"]["Properties"]["PolicyDocument"],
        ),
    ];
    let mut files: Vec<String> = std::fs::read_dir(iam_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && n != "scp-broker-only-door.json")
        .collect();
    files.sort();
    let mut covered: Vec<String> = documents.iter().map(|(f, _)| f.to_string()).collect();
    covered.sort();
    assert_eq!(
        files, covered,
        "a deploy/iam template the stack does not deploy"
    );
    for (file, in_template) in documents {
        assert!(
            !in_template.is_null(),
            "the template lost the document of {file}"
        );
        assert_eq!(
            cfn_resolve(in_template, &values),
            load(file),
            "deploy/cloudformation/sombrero.yaml and deploy/iam/{file} differ"
        );
    }
    // Attached where the JSON templates say: the policy to the broker's role, the role to the
    // instance profile, the deny to the team's principals from the parameters.
    let p = &resources["BrokerPolicy"]["Properties"];
    assert_eq!(p["RoleName"], serde_json::json!({"Ref": "BrokerRole"}));
    assert_eq!(
        resources["BrokerInstanceProfile"]["Properties"]["Roles"],
        serde_json::json!([{"Ref": "BrokerRole"}])
    );
    let deny = &resources["EngineersDenyPolicy"]["Properties"];
    for (key, param) in [
        ("Roles", "EngineerRoleNames"),
        ("Groups", "EngineerGroupNames"),
        ("Users", "EngineerUserNames"),
    ] {
        assert_eq!(
            deny[key]["Fn::If"][1],
            serde_json::json!({"Ref": param}),
            "{key}"
        );
        assert_eq!(t["Parameters"][param]["Type"], "CommaDelimitedList");
    }
}

#[test]
fn cloudformation_table_and_session_documents() {
    let Some(t) = cfn_template() else {
        return;
    };
    let values = cfn_values(&t);
    let resources = t["Resources"].as_object().unwrap();
    // The team store: the schema `sombrero store init` creates, restorable and undeletable.
    let table = &resources["TeamTable"];
    assert_eq!(table["Type"], "AWS::DynamoDB::Table");
    assert_eq!(table["DeletionPolicy"], "Retain");
    let p = &table["Properties"];
    assert_eq!(
        p["KeySchema"],
        serde_json::json!([
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"}
        ])
    );
    assert_eq!(p["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    assert_eq!(p["DeletionProtectionEnabled"], true);
    // The shell document: the account's Session Manager preferences, with both timeouts.
    let prefs = &resources["SessionPreferences"]["Properties"];
    assert_eq!(prefs["Name"], "SSM-SessionManagerRunShell");
    assert_eq!(prefs["Content"]["sessionType"], "Standard_Stream");
    let inputs = &prefs["Content"]["inputs"];
    assert_eq!(
        inputs["idleSessionTimeout"],
        serde_json::json!({"Ref": "IdleSessionTimeout"})
    );
    assert_eq!(
        inputs["maxSessionDuration"],
        serde_json::json!({"Ref": "MaxSessionDuration"})
    );
    assert_eq!(t["Parameters"]["IdleSessionTimeout"]["MaxValue"], 60);
    assert_eq!(t["Parameters"]["MaxSessionDuration"]["MaxValue"], 1440);
    // The one-shot command document: output and exit status kept apart.
    let command = cfn_resolve(&resources["CommandDocument"]["Properties"], &values);
    assert_eq!(command["Name"], "PinkSombrero-Command");
    assert_eq!(command["Content"]["sessionType"], "NonInteractiveCommands");
    assert_eq!(
        command["Content"]["properties"]["separateOutputStream"],
        true
    );
    // Each document also kept as a file in deploy/ssm/ is the same document here.
    let ssm_dir = manifest_dir().join("deploy/ssm");
    let files: Vec<PathBuf> = std::fs::read_dir(&ssm_dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    if files.is_empty() {
        eprintln!("note: no deploy/ssm/*.json to compare the session documents with");
    }
    for file in files
        .iter()
        .filter(|f| f.extension().is_some_and(|x| x == "json"))
    {
        let name = file.file_stem().unwrap().to_str().unwrap();
        let on_disk: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let in_template = resources
            .values()
            .filter(|r| r["Type"] == "AWS::SSM::Document")
            .map(|r| cfn_resolve(&r["Properties"], &values))
            .find(|p| p["Name"] == name)
            .unwrap_or_else(|| panic!("deploy/ssm/{name}.json is not in the template"));
        assert_eq!(
            in_template["Content"], on_disk,
            "the template's {name} differs from deploy/ssm/{name}.json"
        );
    }
}
