//! Every file in tests/fixtures/bad-policies/ must be refused by `sombrero policy check` with
//! exit status 2 and the precise messages its leading `# expect: ...` lines name.

use crate::common::cli::{DEFAULT_POLICY_HINT, Env};

#[test]
fn bad_policies_fail_precisely() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad-policies");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "fixtures missing in {}", dir.display());
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let expects: Vec<&str> = text
            .lines()
            .map_while(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expects.is_empty(),
            "{} has no '# expect:' line",
            path.display()
        );
        let env = Env::new(&text);
        let out = env.run(&["policy", "check"]);
        assert_eq!(out.code, 2, "{}: {}", path.display(), out.stderr);
        for expect in expects {
            assert!(
                out.stderr.contains(expect),
                "{}: expected {expect:?} in {}",
                path.display(),
                out.stderr
            );
        }
        // Nothing else runs on a bad policy either.
        let out = env.run(&["user", "add", "ann", "--role", "approver", "--json"]);
        assert_eq!(out.code, 2, "{}: {}", path.display(), out.stderr);
    }
}

#[test]
fn first_run_writes_the_documented_default() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(crate::common::cli::BIN)
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env_remove("SOMBRERO_POLICY")
            .output()
            .unwrap()
    };
    // policy check does not invent a policy: it says where the default will come from.
    let out = run(&["policy", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(DEFAULT_POLICY_HINT));
    let out = run(&["user", "add", "ann", "--role", "approver", "--json"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrote the default policy"));
    let written = std::fs::read_to_string(dir.path().join("policy.toml")).unwrap();
    assert_eq!(written, pink_sombrero::policy::DEFAULT_POLICY);
    let out = run(&["policy", "check", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["policy"]["approvals_required"], 2);
    assert_eq!(v["policy"]["request_ttl"], "30m");
    assert_eq!(v["policy"]["replacement"], "asg");
    assert_eq!(v["policy"]["max_instance_age"], "14days");
}

#[test]
fn policy_path_can_be_overridden() {
    let env = Env::new("this is not toml");
    let other = env.path().join("other.toml");
    std::fs::write(
        &other,
        "requesters = [\"a\"]\napprovers = [\"b\"]\napprovals_required = 3\n",
    )
    .unwrap();
    let out = env
        .command(&["policy", "check", "--json"])
        .env("SOMBRERO_POLICY", &other)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["policy"]["approvals_required"], 3);
    // The same through the config file, relative to it.
    let config = env.path().join("sombrero.toml");
    std::fs::write(&config, "policy = \"other.toml\"\n").unwrap();
    let config = config.to_str().unwrap();
    let v = env
        .run(&["--config", config, "policy", "check", "--json"])
        .ok()
        .json();
    assert_eq!(v["policy"]["approvals_required"], 3);
    assert_eq!(v["path"], other.to_str().unwrap());
}
