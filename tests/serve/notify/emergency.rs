//! The emergency door end to end: asked through the daemon, announced to every notify target
//! at once, vetoed by an approver (never opens), or left alone (opens after the window on the
//! lab, the node tagged, the recording's header saying EMERGENCY); off by default.

use std::time::Duration;

use pink_sombrero::lab::{self, LabConfig};

use super::Receiver;
use crate::common::cli::lab_env;
use crate::common::daemon::{Daemon, own_user};

fn policy(me: &str, hook: &str) -> String {
    format!(
        "requesters = [\"*\"]\napprovers = [\"*\"]\nreviewers = [\"*\"]\n\
         replacement = \"automation:PinkSombrero-ReplaceNode\"\n\
         [mfa]\nat_open = false\n\
         [emergency]\nenabled = true\nrequesters = [\"{me}\"]\nveto_window = \"2s\"\nmax_per_day = 3\n\
         [[notify]]\nkind = \"slack\"\nurl = \"{hook}\"\nevents = [\"request_denied\"]\n"
    )
}

fn ask(d: &mut Daemon, me: &str, target: &str) -> serde_json::Value {
    let code = d.env.code(me);
    d.client(
        None,
        &[
            "request",
            "--emergency",
            "--target",
            target,
            "--reason",
            "database down, nobody answers",
            "--incident",
            "INC-7",
            "--duration",
            "10m",
            "--code",
            &code,
            "--json",
        ],
    )
    .ok()
    .json()
}

#[test]
fn off_by_default() {
    let me = own_user();
    let mut d = Daemon::started_for_me("requesters = [\"*\"]\napprovers = [\"*\"]\n");
    let code = d.env.code(&me);
    d.client(
        None,
        &[
            "request",
            "--emergency",
            "--target",
            "i-0abc1234",
            "--reason",
            "database down, nobody answers",
            "--incident",
            "INC-7",
            "--code",
            &code,
        ],
    )
    .refused("emergency door is off");
}

#[test]
fn vetoed_it_never_opens_unvetoed_it_opens_tagged_and_recorded() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lab = rt.block_on(lab::start(LabConfig::default())).unwrap();
    let chat = Receiver::start(Duration::ZERO);
    let me = own_user();
    let mut d = Daemon::new(
        &policy(&me, &chat.url("/slack")),
        &[(&me, "requester"), ("ann", "approver")],
    );
    d.start();
    let target = lab.nodes()[0].id.clone();
    // Vetoed inside the window: denied, and opening is refused even after the window.
    let vetoed = ask(&mut d, &me, &target);
    assert_eq!(vetoed["state"], "emergency");
    let id = vetoed["id"].as_str().unwrap().to_string();
    let code = d.env.code("ann");
    d.env
        .decide("deny", &id, "ann", &code, "I am here: ordinary path")
        .ok();
    std::thread::sleep(Duration::from_millis(2200));
    let mut open = d.env.command(&["open", &id, "--as", &me]);
    lab_env(&mut open, &lab.endpoint_url());
    open.args(["--", "true"]);
    let out = open.output().unwrap();
    assert!(!out.status.success(), "a vetoed emergency opened");
    // Left alone: after the window it opens, tagged and recorded as an emergency.
    let r = ask(&mut d, &me, &target);
    let id = r["id"].as_str().unwrap().to_string();
    let announced = chat.wait_for(Duration::from_secs(10), |g| {
        g.iter().filter(|x| x.body.contains("EMERGENCY")).count() >= 2
    });
    assert!(
        announced
            .iter()
            .any(|g| g.body.contains(&id) && g.body.contains("EMERGENCY")),
        "every target hears of it at once: {announced:?}"
    );
    std::thread::sleep(Duration::from_millis(2200));
    let mut open = d.env.command(&["open", &id, "--as", &me]);
    lab_env(&mut open, &lab.endpoint_url());
    open.args(["--", "true"]);
    let out = open.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let show = d.env.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(show["request"]["state"], "closed");
    assert!(
        show["request"]["emergency"]["veto_ends_at"].is_string(),
        "{show}"
    );
    let events = d.env.run(&["audit", "export"]).ok().stdout;
    for kind in ["emergency_requested", "emergency_opened"] {
        assert!(events.contains(kind), "{kind}");
    }
    // The node was tagged (it is replaced by now: the lab's record of the tagging call).
    let tagged = lab.api_calls().iter().any(|c| {
        c.operation == "AddTagsToResource"
            && c.status == 200
            && c.request.to_string().contains("pink-sombrero:emergency")
    });
    assert!(tagged, "no emergency tag");
    let casts: Vec<_> = std::fs::read_dir(d.env.path().join("recordings"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cast"))
        .collect();
    assert_eq!(casts.len(), 1);
    let header = std::fs::read_to_string(&casts[0]).unwrap();
    let header = header.lines().next().unwrap();
    assert!(header.contains("EMERGENCY pink sombrero"), "{header}");
    rt.block_on(lab.shutdown());
}
