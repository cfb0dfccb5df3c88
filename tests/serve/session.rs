//! Sessions through `sombrero serve`: the daemon opens, records, seals and replaces with its
//! own fleet options, recordings directory and key; client processes under other uids (each
//! mapped to a sombrero user by the policy's `[identities]`) only carry bytes. Watchers see
//! the screen and cannot type; an approver's kill ends the session as theirs; a client killed
//! with SIGKILL, or one that stops answering pings, loses the session, which the daemon still
//! finishes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::cli::{BIN, Env, TEAM, TEAM_POLICY, lab_env};
use crate::common::{read_until, run_with_stdin, spawn_listening, spawn_piped};
use futures_util::{SinkExt, StreamExt};
use pink_sombrero::backend::Backend;
use pink_sombrero::backend::remote::Remote;
use pink_sombrero::channel::client::SessionEvent;
use pink_sombrero::lab::{self, Lab, LabConfig};
use pink_sombrero::remote::{RemoteBroker, UnixConnector};
use pink_sombrero::tui::driver::SessionRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Client processes run as these uids (no passwd entries), mapped to users in the policy; the
/// test process itself (root) is `rev`, a reviewer, for the raw websocket watcher.
const RITA: u32 = 2001;
const ANN: u32 = 2002;
const BOB: u32 = 2003;

/// The lab team, with the client uids mapped to its people.
fn policy() -> String {
    format!(
        "{TEAM_POLICY}
[identities]
\"uid:2001\" = \"rita\"
\"uid:2002\" = \"ann\"
\"uid:2003\" = \"bob\"
\"root\" = \"rev\"
"
    )
}

struct World {
    env: Env,
    lab: Lab,
    /// Holds the socket and the clients' data dirs; readable by the client uids.
    public: tempfile::TempDir,
    daemon: Child,
}

impl World {
    async fn new() -> World {
        World::with_policy(&policy()).await
    }

    async fn with_policy(policy: &str) -> World {
        World::with(policy, &[]).await
    }

    /// A world whose daemon also gets `serve_args`.
    async fn with(policy: &str, serve_args: &[&str]) -> World {
        World::with_setup(policy, serve_args, |_| {}).await
    }

    /// Like [`World::with`], with `setup` adding to the daemon's command last.
    async fn with_setup(
        policy: &str,
        serve_args: &[&str],
        setup: impl FnOnce(&mut Command),
    ) -> World {
        let lab = lab::start(LabConfig::default()).await.unwrap();
        let env = Env::enrolled(policy, &TEAM);
        let public = tempfile::tempdir().unwrap();
        set_mode(public.path(), 0o777);
        let socket = public.path().join("sombrero.sock");
        let listen = format!("unix:{}", socket.display());
        let mut serve = env.command(&["serve", "--listen", &listen]);
        serve.args(serve_args);
        lab_env(&mut serve, &lab.endpoint_url());
        setup(&mut serve);
        // The daemon prints where it listens once the socket is bound.
        let (daemon, _) = spawn_listening(&mut serve);
        World {
            env,
            lab,
            public,
            daemon,
        }
    }

    /// The lab's first node and rita's request on it, approved by ann and bob.
    fn approved_on_first_node(&mut self) -> (String, String) {
        let node = self.lab.nodes()[0].id.clone();
        let id = self.env.approved(&node, "rita", &["ann", "bob"]);
        (node, id)
    }

    fn socket(&self) -> PathBuf {
        self.public.path().join("sombrero.sock")
    }

    /// `sombrero --broker unix:SOCK ARGS` as `uid`, with a data dir of its own (no secrets,
    /// no key, no recordings: it has none to use).
    fn client(&self, uid: u32, args: &[&str]) -> Command {
        let home = self.public.path().join(format!("client-{uid}"));
        let mut c = Command::new("setpriv");
        // The socket is 0660 root:root: its group is who may talk to the broker.
        c.args([
            &format!("--reuid={uid}"),
            "--regid=0",
            "--clear-groups",
            BIN,
            "--data-dir",
            home.to_str().unwrap(),
            "--broker",
            &format!("unix:{}", self.socket().display()),
        ])
        .args(args)
        .env_remove("SOMBRERO_DATA_DIR")
        .env_remove("SOMBRERO_BROKER")
        .stdin(Stdio::null());
        c
    }

    fn recordings(&self) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(self.env.path().join("recordings")) else {
            return Vec::new();
        };
        rd.map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "cast"))
            .collect()
    }

    /// (kind, actor) of every audit event of `id`.
    fn audit(&self, id: &str) -> Vec<(String, String)> {
        self.env
            .audit_export()
            .into_iter()
            .filter(|v| v["request_id"] == id)
            .map(|v| {
                (
                    v["kind"].as_str().unwrap().to_string(),
                    v["actor"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Waits until the daemon has finished the session of `id` (replacement reported).
    async fn finished(&self, id: &str) -> Vec<(String, String)> {
        loop {
            let events = self.audit(id);
            if events
                .iter()
                .any(|(k, _)| k == "replacement_completed" || k == "replacement_failed")
            {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts `open ID` as rita (with a fresh code) with stdin held open; returns once
    /// `needle` was printed.
    fn open_live(
        &mut self,
        id: &str,
        first: &str,
        needle: &str,
    ) -> (Child, std::process::ChildStdin) {
        let code = self.env.code("rita");
        let mut child = spawn_piped(&mut self.client(RITA, &["open", id, "--code", &code]));
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(first.as_bytes()).unwrap();
        let mut out = child.stdout.take().unwrap();
        read_until(&mut out, needle);
        // Keep draining so the session never waits on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        (child, stdin)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // SIGTERM (unless a test already stopped it): the daemon removes its socket and stops.
        if let Ok(None) = self.daemon.try_wait() {
            unsafe { libc::kill(self.daemon.id() as i32, libc::SIGTERM) };
            let _ = self.daemon.wait();
        }
    }
}

/// The TUI's backend on the daemon at `socket`.
fn tui_backend(socket: PathBuf) -> Remote {
    let c = std::sync::Arc::new(UnixConnector::new(socket.clone()));
    let client = RemoteBroker::with_connector(socket.display().to_string(), c).unwrap();
    Remote::new(std::sync::Arc::new(client))
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A raw session websocket from this process, with `code` in the TOTP header; returns the
/// first `live` or `error` frame and the socket.
async fn raw_session(
    w: &World,
    id: &str,
    code: Option<&str>,
) -> (
    String,
    tokio_tungstenite::WebSocketStream<tokio::net::UnixStream>,
) {
    let stream = tokio::net::UnixStream::connect(w.socket()).await.unwrap();
    let mut req = format!("ws://sombrero/v1/requests/{id}/session?cols=80&rows=24")
        .into_client_request()
        .unwrap();
    if let Some(code) = code {
        req.headers_mut()
            .insert("x-pink-sombrero-totp", code.parse().unwrap());
    }
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t)))
                if t.contains(r#""type":"live""#) || t.contains(r#""type":"error""#) =>
            {
                return (t.to_string(), ws);
            }
            Some(Ok(_)) => {}
            other => panic!("no live or error frame: {other:?}"),
        }
    }
}

fn run(mut c: Command, stdin: &str) -> std::process::Output {
    run_with_stdin(&mut c, stdin.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_opens_records_and_replaces_for_a_thin_client() {
    let mut w = World::new().await;
    let (node, id) = w.approved_on_first_node();

    // Identity comes from the connection: ann cannot open rita's session, nor pose as rita.
    let code = w.env.code("ann");
    let ann = run(w.client(ANN, &["open", &id, "--code", &code]), "");
    assert_eq!(ann.status.code(), Some(1), "{ann:?}");
    let forged = run(w.client(ANN, &["open", &id, "--as", "rita"]), "");
    assert_eq!(forged.status.code(), Some(2), "{forged:?}");
    assert!(String::from_utf8_lossy(&forged.stderr).contains("--as"));

    // The daemon checks rita's code before it claims or taints anything: a wrong one is
    // refused and leaves the node alone.
    let wrong = w.env.wrong_code("rita");
    let out = run(
        w.client(RITA, &["open", &id, "--code", &wrong]),
        "hostname\nexit 3\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("wrong TOTP code for rita"), "{stderr}");
    let shown = w.env.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(shown["request"]["state"], "approved");
    let n = w.lab.nodes().into_iter().find(|n| n.id == node).unwrap();
    assert!(n.tags.is_empty(), "{:?}", n.tags);
    let kinds: Vec<String> = w.audit(&id).into_iter().map(|(k, _)| k).collect();
    assert!(kinds.iter().any(|k| k == "mfa_rejected"), "{kinds:?}");
    assert!(!kinds.iter().any(|k| k == "tainted"), "{kinds:?}");

    let code = w.env.code("rita");
    let out = run(
        w.client(RITA, &["open", &id, "--code", &code]),
        "hostname\nexit 3\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The agent reports no status for a shell: a shell that ended by itself is success.
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stdout.contains("EXIT_CODE"), "{stdout}");
    assert!(stdout.contains(&node), "{stdout}\n{stderr}");
    assert!(stderr.contains("tagged as tainted"), "{stderr}");
    assert!(stderr.contains("recording sealed"), "{stderr}");
    assert!(stderr.contains("replaced by"), "{stderr}");

    // The recording is the daemon's: in its recordings dir, sealed with its key, holding
    // what was typed and shown. The client wrote none.
    let casts = w.recordings();
    assert_eq!(casts.len(), 1, "{casts:?}");
    let cast = std::fs::read_to_string(&casts[0]).unwrap();
    assert!(
        cast.contains("hostname\\n") && cast.contains("\"i\""),
        "{cast}"
    );
    assert!(cast.contains(&node), "output recorded");
    let verify = w.env.run(&["verify", casts[0].to_str().unwrap()]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    let client_dir = w.public.path().join(format!("client-{RITA}"));
    assert!(!client_dir.join("recordings").exists());
    // Through the daemon, the requester downloads it and verifies it on her side.
    let name = casts[0].file_name().unwrap().to_str().unwrap();
    let verify = run(w.client(RITA, &["verify", name]), "");
    let said = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(0), "{said}{verify:?}");
    assert!(said.contains("intact and sealed"), "{said}");

    assert!(!w.lab.nodes().into_iter().any(|n| n.id == node), "replaced");
    let shown = w.env.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(shown["request"]["close_reason"]["reason"], "exited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_one_command_with_its_streams_apart_and_its_status() {
    let mut w = World::new().await;
    let (_, id) = w.approved_on_first_node();
    let code = w.env.code("rita");
    let out = run(
        w.client(
            RITA,
            &[
                "open",
                &id,
                "--code",
                &code,
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ],
        ),
        "",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout, "out\n", "only stdout on stdout; stderr:\n{stderr}");
    assert!(stderr.lines().any(|l| l == "err"), "{stderr}");
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    // The daemon recorded and sealed it.
    let casts = w.recordings();
    assert_eq!(casts.len(), 1, "{casts:?}");
    let cast = std::fs::read_to_string(&casts[0]).unwrap();
    assert!(cast.contains("command: sh -c"), "{cast}");
    let verify = w.env.run(&["verify", casts[0].to_str().unwrap()]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_cannot_type_and_an_approvers_kill_ends_the_session() {
    let mut w = World::new().await;
    let (node, id) = w.approved_on_first_node();
    let (rita, rita_in) = w.open_live(&id, "echo live-$((6*7))\n", "live-42");

    // ann watches with the CLI; rev (this process) with a raw socket that tries to type.
    let mut ann_watch = w
        .client(ANN, &["watch", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ann_out = ann_watch.stdout.take().unwrap();
    read_until(&mut ann_out, "live-42");

    let stream = tokio::net::UnixStream::connect(w.socket()).await.unwrap();
    let req = format!("ws://sombrero/v1/requests/{id}/watch")
        .into_client_request()
        .unwrap();
    let (mut rev, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    let mut rev_seen = String::new();
    rev.send(Message::Binary(b"echo INJECTED-$((1+1))\n".to_vec().into()))
        .await
        .unwrap();
    while !rev_seen.contains("read-only") {
        match rev.next().await.unwrap().unwrap() {
            Message::Binary(b) => rev_seen.push_str(&String::from_utf8_lossy(&b)),
            Message::Text(t) => rev_seen.push_str(&t),
            _ => {}
        }
    }
    assert!(
        rev_seen.contains("live-42"),
        "the screen so far: {rev_seen}"
    );

    // A TUI pane watching as rev gets the screen; ending the pane only stops watching.
    let tui_watch = tui_backend(w.socket());
    let mut pane = tui_watch
        .open_session(SessionRequest {
            request_id: id.clone(),
            user: "rev".into(),
            rows: 24,
            cols: 80,
            watch: true,
            code: None,
        })
        .await
        .unwrap();
    assert_eq!(pane.target, node);
    let mut pane_seen = Vec::new();
    while !String::from_utf8_lossy(&pane_seen).contains("live-42") {
        if let SessionEvent::Output(b) = pane.events.recv().await.unwrap() {
            pane_seen.extend(b);
        }
    }
    pane.control.terminate().unwrap();
    while pane.events.recv().await.is_some() {}

    // The requester keeps typing; both watchers see it.
    let mut rita_in = rita_in;
    rita_in.write_all(b"echo more-$((7*7))\n").unwrap();
    read_until(&mut ann_out, "more-49");
    // A hostile session's title, clipboard and DCS sequences never reach a CLI watcher's
    // terminal: the watcher draws the emulated screen, not the bytes.
    rita_in
        .write_all(b"printf '\\033]0;PWNED\\007\\033]52;c;UFdORUQ=\\007\\033Pq#0\\033\\\\osc-%s\\n' $((3*3))\n")
        .unwrap();
    let seen = read_until(&mut ann_out, "osc-9");
    for raw in ["\x1b]", "\x07", "\x1bP"] {
        assert!(!seen.contains(raw), "{raw:?} reached the watcher: {seen:?}");
    }
    while !rev_seen.contains("more-49") {
        if let Message::Binary(b) = rev.next().await.unwrap().unwrap() {
            rev_seen.push_str(&String::from_utf8_lossy(&b));
        }
    }

    // Only approvers kill, each with a good code of their own.
    let code = w.env.code("rita");
    let refused = run(w.client(RITA, &["kill", &id, "--code", &code]), "");
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let none = run(w.client(BOB, &["kill", &id]), "");
    assert_eq!(none.status.code(), Some(2), "{none:?}");
    let wrong = w.env.wrong_code("bob");
    let refused = run(w.client(BOB, &["kill", &id, "--code", &wrong]), "");
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("wrong TOTP code for bob"));
    let shown = w.env.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(shown["request"]["state"], "active");
    let code = w.env.code("bob");
    let killed = run(w.client(BOB, &["kill", &id, "--code", &code]), "");
    assert!(killed.status.success(), "{killed:?}");

    let out = rita.wait_with_output().unwrap();
    drop(rita_in);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("terminated by bob"), "{stderr}");
    let watched = ann_watch.wait_with_output().unwrap();
    assert!(watched.status.success(), "{watched:?}");
    assert!(String::from_utf8_lossy(&watched.stderr).contains("terminated by bob"));
    drop(rev);

    let events = w.finished(&id).await;
    let rev_watches = events
        .iter()
        .filter(|(k, a)| k == "session_watch_started" && a == "rev")
        .count();
    assert_eq!(rev_watches, 2, "{events:?}");
    for (kind, actor) in [
        ("session_watch_started", "ann"),
        ("session_watch_ended", "rev"),
        ("session_killed", "bob"),
        ("session_closed", "bob"),
        ("recording_sealed", "sombrero"),
    ] {
        assert!(
            events.iter().any(|(k, a)| k == kind && a == actor),
            "{kind} by {actor}: {events:?}"
        );
    }
    let casts = w.recordings();
    assert_eq!(casts.len(), 1);
    let cast = std::fs::read_to_string(&casts[0]).unwrap();
    assert!(cast.contains("more-49"));
    assert!(
        !cast.contains("INJECTED-2"),
        "a watcher's input reached the shell"
    );
    assert!(
        !cast.contains("INJECTED"),
        "a watcher's input was recorded as typed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_mid_session_loses_it_and_the_node_is_replaced() {
    let mut w = World::new().await;
    let (node, id) = w.approved_on_first_node();
    let (mut rita, _stdin) = w.open_live(&id, "echo live-$((6*7))\n", "live-42");
    // setpriv execs the client, so this is the client process itself.
    rita.kill().unwrap();
    let _ = rita.wait();

    let events = w.finished(&id).await;
    assert!(
        events.iter().any(|(k, _)| k == "replacement_completed"),
        "{events:?}"
    );
    let shown = w.env.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(shown["request"]["state"], "closed");
    assert_eq!(
        shown["request"]["close_reason"]["reason"],
        "connection_lost"
    );
    assert!(!w.lab.nodes().into_iter().any(|n| n.id == node));
    let casts = w.recordings();
    assert_eq!(casts.len(), 1);
    let verify = w.env.run(&["verify", casts[0].to_str().unwrap()]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_that_stops_answering_loses_the_session() {
    // Here this process is rita, so it can hold a raw session socket and then fall silent:
    // connected, but never reading, so it answers none of the daemon's pings (as a laptop that
    // dropped off the network would), while the socket itself stays open.
    let policy = policy()
        .replace(r#""root" = "rev""#, r#""root" = "rita""#)
        .replace(r#""uid:2001" = "rita""#, r#""uid:2001" = "rev""#);
    let mut w = World::with(&policy, &["--client-silence-secs", "2"]).await;
    let (node, id) = w.approved_on_first_node();
    // Without the code header, or with a code already spent, nothing opens.
    let (refusal, _) = raw_session(&w, &id, None).await;
    assert!(refusal.contains("needs rita's TOTP code"), "{refusal}");
    assert!(refusal.contains(r#""refused":true"#), "{refusal}");
    let spent = w.env.code("rita");
    w.env
        .request_with_code(&node, "rita", "another disk is full", &spent, &[])
        .ok();
    let (refusal, _) = raw_session(&w, &id, Some(&spent)).await;
    assert!(refusal.contains("already used"), "{refusal}");
    let shown = w.env.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(shown["request"]["state"], "approved");

    let code = w.env.code("rita");
    let (live, ws) = raw_session(&w, &id, Some(&code)).await;
    assert!(
        live.contains(r#""type":"live""#),
        "the session did not open: {live}"
    );

    // Bounded so a daemon that never notices fails here instead of hanging until the grant
    // ends an hour later.
    let events = tokio::time::timeout(Duration::from_secs(120), w.finished(&id))
        .await
        .expect("the silent client still held the session after 120 s");
    assert!(
        events.iter().any(|(k, _)| k == "replacement_completed"),
        "{events:?}"
    );
    let shown = w.env.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(
        shown["request"]["close_reason"]["reason"],
        "connection_lost"
    );
    // The silent client never let go of its socket: silence alone ended the session.
    drop(ws);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tui_opens_through_the_daemon() {
    // This process is rita here: the TUI's opener runs in it.
    let mut w =
        World::with_policy(&policy().replace(r#""root" = "rev""#, r#""root" = "rita""#)).await;
    let (node, id) = w.approved_on_first_node();
    let backend = tui_backend(w.socket());
    let open = |req| backend.open_session(req);
    let code = w.env.code("rita");
    let ask = || SessionRequest {
        request_id: id.clone(),
        user: "rita".into(),
        rows: 24,
        cols: 80,
        watch: false,
        code: Some(code.clone()),
    };
    let mut opened = open(ask()).await.unwrap();
    assert_eq!(opened.target, node);
    assert!(opened.ends_at.is_some());
    // One session per request: a second open is refused with the broker's reason.
    let again = open(ask()).await.err().unwrap().to_string();
    assert!(again.contains("already connected"), "{again}");
    // Nor may the requester watch (approvers and reviewers do).
    let watch = SessionRequest {
        watch: true,
        code: None,
        ..ask()
    };
    let refused = open(watch).await.err().unwrap().to_string();
    assert!(refused.contains("may not watch"), "{refused}");

    opened
        .input
        .send(b"hostname\nexit 4\n".to_vec())
        .await
        .unwrap();
    let (mut output, mut notices) = (Vec::new(), Vec::new());
    let closed = loop {
        match opened.events.recv().await.unwrap() {
            SessionEvent::Output(b) => output.extend(b),
            SessionEvent::Notice(n) => notices.push(n),
            SessionEvent::Closed { reason } => break reason,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(closed, "exited");
    assert!(String::from_utf8_lossy(&output).contains(&node));
    let notices = notices.join("\n");
    assert!(notices.contains("tagged as tainted"), "{notices}");
    assert!(notices.contains("replaced by"), "{notices}");
    assert_eq!(w.recordings().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_daemon_ends_its_sessions_and_finishes_them() {
    let mut w = World::new().await;
    let (_, id) = w.approved_on_first_node();
    let (rita, _stdin) = w.open_live(&id, "echo live-$((6*7))\n", "live-42");
    unsafe { libc::kill(w.daemon.id() as i32, libc::SIGTERM) };
    assert!(w.daemon.wait().unwrap().success());

    // Everything happened before the daemon exited.
    let events = w.audit(&id);
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    for k in [
        "session_closed",
        "recording_sealed",
        "replacement_completed",
    ] {
        assert!(kinds.contains(&k), "{k}: {kinds:?}");
    }
    let shown = w.env.run(&["show", &id, "--json"]).ok().json();
    let by = shown["request"]["close_reason"]["by"].as_str().unwrap();
    assert!(by.contains("the broker is stopping"), "{by}");
    let casts = w.recordings();
    let verify = w.env.run(&["verify", casts[0].to_str().unwrap()]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    let out = rita.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// Resident memory of `pid` in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    kb / 1024
}

/// A raw session socket on the daemon as `uid`: connected from a thread that took that uid
/// alone (a raw setresuid changes only the calling thread), so the peer credentials name it.
fn socket_as(uid: u32, socket: &Path) -> std::os::unix::net::UnixStream {
    let socket = socket.to_path_buf();
    std::thread::spawn(move || {
        // SAFETY: raw syscalls on this thread's own credentials; the thread ends right after.
        unsafe {
            assert_eq!(libc::syscall(libc::SYS_setresgid, 0, 0, 0), 0);
            assert_eq!(libc::syscall(libc::SYS_setresuid, uid, uid, uid), 0);
        }
        std::os::unix::net::UnixStream::connect(socket).unwrap()
    })
    .join()
    .unwrap()
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::UnixStream>;

/// Opens the websocket at `path` on `stream`, with a TOTP `code` in its header when given.
async fn ws_on(stream: std::os::unix::net::UnixStream, path: &str, code: Option<&str>) -> Ws {
    stream.set_nonblocking(true).unwrap();
    let stream = tokio::net::UnixStream::from_std(stream).unwrap();
    let mut req = format!("ws://sombrero{path}")
        .into_client_request()
        .unwrap();
    if let Some(code) = code {
        req.headers_mut()
            .insert("x-pink-sombrero-totp", code.parse().unwrap());
    }
    tokio_tungstenite::client_async(req, stream)
        .await
        .unwrap()
        .0
}

/// Reads until `needle` shows in the text or output; returns all seen.
async fn ws_until(ws: &mut Ws, needle: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(needle) {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(Message::Text(t)))) => seen.push_str(&t),
            Ok(Some(Ok(_))) => {}
            other => panic!("socket ended before {needle:?} ({other:?}): {seen}"),
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_terminal_sizes_are_clamped_and_allocate_nothing_before_authorization() {
    let mut w = World::new().await;
    let (_, id) = w.approved_on_first_node();
    let session = format!("/v1/requests/{id}/session?cols=65535&rows=65535");

    // rita opens at 65535x65535: the session is opened at the clamped size.
    let code = w.env.code("rita");
    let mut rita = ws_on(socket_as(RITA, &w.socket()), &session, Some(&code)).await;
    rita.send(Message::Binary(b"echo up-$((6*7))\n".to_vec().into()))
        .await
        .unwrap();
    let seen = ws_until(&mut rita, "up-42").await;
    assert!(
        seen.contains(r#""cols":1000"#) && seen.contains(r#""rows":500"#),
        "{seen}"
    );

    // rev (this process, not the requester) asks for the same huge session: refused, and
    // the daemon stays small.
    let mut rev = ws_on(
        std::os::unix::net::UnixStream::connect(w.socket()).unwrap(),
        &session,
        None,
    )
    .await;
    let refused = ws_until(&mut rev, r#""type":"error""#).await;
    assert!(refused.contains(r#""refused":true"#), "{refused}");
    assert!(
        rss_mib(w.daemon.id()) < 100,
        "{} MiB",
        rss_mib(w.daemon.id())
    );

    // rita resizes to 65535x65535 mid-session: clamped, and the session goes on.
    let huge = r#"{"type":"resize","cols":65535,"rows":65535}"#;
    rita.send(Message::Text(huge.into())).await.unwrap();
    rita.send(Message::Binary(b"echo still-$((2*3))\n".to_vec().into()))
        .await
        .unwrap();
    ws_until(&mut rita, "still-6").await;
    assert!(
        rss_mib(w.daemon.id()) < 100,
        "{} MiB",
        rss_mib(w.daemon.id())
    );
    rita.send(Message::Text(r#"{"type":"terminate"}"#.into()))
        .await
        .unwrap();
    ws_until(&mut rita, r#""type":"end""#).await;

    let events = w.finished(&id).await;
    assert!(
        events.iter().any(|(k, a)| k == "refused" && a == "rev"),
        "{events:?}"
    );
    let casts = w.recordings();
    let cast = std::fs::read_to_string(&casts[0]).unwrap();
    assert!(
        cast.contains(r#""r", "1000x500""#) || cast.contains(r#""r","1000x500""#),
        "{cast}"
    );
    assert!(!cast.contains("65535"), "{cast}");
}

/// Descriptors `pid` holds.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_from_one_peer_leave_descriptors_for_everyone_else() {
    use std::os::unix::process::CommandExt;
    const HOSTILE: u32 = 2009;
    // The hostile uid is rita's second account: one mapped identity, another peer.
    let policy = format!("{}\"uid:{HOSTILE}\" = \"rita\"\n", policy());
    let mut w = World::with_setup(&policy, &[], |c| {
        // SAFETY: setrlimit only, between fork and exec.
        unsafe {
            c.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: 1024,
                    rlim_max: 1024,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
    .await;
    let node = w.lab.nodes()[0].id.clone();
    let id = w.env.approved(&node, "rita", &["ann"]);
    let pid = w.daemon.id();

    // 1,100 POSTs that send their headers and one byte of a 1,000-byte body, then stall.
    let hostile: Vec<std::os::unix::net::UnixStream> = (0..1100)
        .map(|_| {
            let mut s = socket_as(HOSTILE, &w.socket());
            let head = "POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
            let _ = s.write_all(head.as_bytes());
            s
        })
        .collect();
    let held = fds(pid);
    assert!(held < 1024 - 256, "the daemon holds {held} descriptors");

    let timed = |what: &str, c: Command, stdin: &str| {
        let started = std::time::Instant::now();
        let out = run(c, stdin);
        let took = started.elapsed();
        assert!(out.status.success(), "{what}: {out:?}");
        assert!(took < Duration::from_secs(2), "{what} took {took:?}");
        out
    };
    let listed = timed("list", w.client(RITA, &["list", "--json"]), "");
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id));
    let code = w.env.code("bob");
    timed(
        "approve",
        w.client(BOB, &["approve", &id, "--code", &code]),
        "",
    );
    let code = w.env.code("rita");
    let opened = timed(
        "open",
        w.client(RITA, &["open", &id, "--code", &code]),
        "echo ok-$((5*5))\nexit 0\n",
    );
    assert!(String::from_utf8_lossy(&opened.stdout).contains("ok-25"));
    assert!(fds(pid) < 1024 - 256, "{} descriptors", fds(pid));
    drop(hostile);

    let log = std::fs::read_to_string(w.env.path().join("logs/sombrero.log")).unwrap();
    assert!(
        log.contains("descriptor limit") && log.contains("soft=1024"),
        "{log}"
    );
}
