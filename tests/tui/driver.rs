//! The real loop, headless: a TestBackend console, keys sent as terminal events, and a real
//! broker on a real SQLite data dir, changed meanwhile by a second broker ("another process").
//! The same loop also runs against a real `sombrero serve` daemon through the remote client.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use pink_sombrero::api::BrokerApi;
use pink_sombrero::backend::api_only::ApiOnly;
use pink_sombrero::broker::{Broker, BrokerOptions, Clock, TestClock};
use pink_sombrero::config::Paths;
use pink_sombrero::mfa;
use pink_sombrero::policy::Role;
use pink_sombrero::request::{NewRequest, State as ReqState};
use pink_sombrero::tui::app::State;
use pink_sombrero::tui::driver::{Console, Events, Parts, TuiContext, run_with};
use pink_sombrero::tui::theme::Theme;
use pink_sombrero::tui::views;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokio::sync::mpsc;

struct TestConsole {
    term: Terminal<TestBackend>,
    screen: Arc<Mutex<String>>,
    bells: Arc<AtomicUsize>,
}

impl Console for TestConsole {
    fn size(&self) -> std::io::Result<(u16, u16)> {
        Ok((110, 30))
    }
    fn draw(&mut self, state: &State, theme: &Theme) -> std::io::Result<()> {
        self.term.draw(|f| views::draw(f, state, theme)).unwrap();
        *self.screen.lock().unwrap() = format!("{}", self.term.backend());
        Ok(())
    }
    fn bell(&mut self) -> std::io::Result<()> {
        self.bells.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn suspend(&mut self) {}
    fn resume(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Harness {
    keys: mpsc::UnboundedSender<Event>,
    screen: Arc<Mutex<String>>,
    bells: Arc<AtomicUsize>,
    clock: Arc<TestClock>,
    secrets: Vec<(String, String)>,
    other: Broker,
}

impl Harness {
    fn key(&self, code: KeyCode) {
        self.keys
            .send(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))
            .unwrap();
    }
    fn text(&self, text: &str) {
        for c in text.chars() {
            self.key(KeyCode::Char(c));
        }
    }
    /// `a` on the selected request, `who`'s code (the comment, after it, is skipped).
    fn approve(&self, who: &str) {
        self.key(KeyCode::Char('a'));
        self.text(&self.code(who));
        self.key(KeyCode::Enter);
    }
    /// `u`, the name, their code.
    fn switch_to(&self, name: &str) {
        self.key(KeyCode::Char('u'));
        self.text(name);
        self.key(KeyCode::Enter);
        self.text(&self.code(name));
        self.key(KeyCode::Enter);
    }
    fn code(&self, user: &str) -> String {
        let secret = &self.secrets.iter().find(|(n, _)| n == user).unwrap().1;
        mfa::code_at(user, secret, self.clock_now()).unwrap()
    }
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }
    /// Waits (generously) until the screen shows `needle`; fails with the screen otherwise.
    async fn shows(&self, needle: &str) {
        for _ in 0..200 {
            if self.screen.lock().unwrap().contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "screen never showed {needle:?}:\n{}",
            self.screen.lock().unwrap()
        );
    }
    async fn until(&self, what: &str, check: impl Fn(&Broker) -> bool) {
        for _ in 0..200 {
            if check(&self.other) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("never: {what}\n{}", self.screen.lock().unwrap());
    }
}

fn events_from(rx: mpsc::UnboundedReceiver<Event>) -> impl FnMut() -> Events {
    let mut rx = Some(rx);
    move || match rx.take() {
        Some(rx) => Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|e| (Ok(e), rx))
        })),
        None => Box::pin(futures_util::stream::pending()),
    }
}

type Ui = tokio::task::JoinHandle<Result<(), pink_sombrero::tui::driver::TuiError>>;

/// Starts the loop on a test console as `user`; `other` is a second broker on the same store.
fn start(
    broker: Arc<dyn BrokerApi>,
    user: &str,
    clock: Arc<TestClock>,
    secrets: Vec<(String, String)>,
    other: Broker,
) -> (Harness, Ui) {
    let (keys, rx) = mpsc::unbounded_channel();
    let screen = Arc::new(Mutex::new(String::new()));
    let bells = Arc::new(AtomicUsize::new(0));
    let mut console = TestConsole {
        term: Terminal::new(TestBackend::new(110, 30)).unwrap(),
        screen: Arc::clone(&screen),
        bells: Arc::clone(&bells),
    };
    let ctx = TuiContext {
        backend: Arc::new(ApiOnly::new(broker)),
        user: user.into(),
        theme: Theme::load("default").unwrap(),
        demo_codes: None,
        parts: Parts::NONE,
    };
    let ui = tokio::spawn(async move { run_with(ctx, &mut console, events_from(rx)).await });
    let h = Harness {
        keys,
        screen,
        bells,
        clock,
        secrets,
        other,
    };
    (h, ui)
}

/// `q` on the Fleet screen ends the loop cleanly.
async fn quit(h: &Harness, ui: Ui) {
    h.key(KeyCode::Char('q'));
    tokio::time::timeout(Duration::from_secs(10), ui)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_request_appears_and_is_approved_from_the_tui() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::at(dir.path().join("data"));
    let clock = TestClock::at(chrono::Utc::now());
    let opts = BrokerOptions {
        policy_path: None,
        clock: Some(clock.clone()),
    };
    let broker = Broker::open(&paths, opts.clone()).unwrap();
    let mut secrets = Vec::new();
    for (name, role) in [
        ("alice", Role::Requester),
        ("bob", Role::Approver),
        ("carol", Role::Approver),
    ] {
        let e = broker.enrol_user(name, BTreeSet::from([role])).unwrap();
        // Confirmed with the previous step's code, so the current one stays free.
        let earlier = clock.now() - chrono::Duration::seconds(30);
        let first = mfa::code_at(name, &e.secret_base32, earlier).unwrap();
        broker.confirm_enrolment(name, &first).unwrap();
        secrets.push((name.to_string(), e.secret_base32));
    }
    let (h, ui) = start(
        Arc::new(broker),
        "bob",
        clock,
        secrets,
        Broker::open(&paths, opts).unwrap(),
    );

    h.key(KeyCode::Char('3'));
    h.shows("Nothing waiting for bob").await;

    // Another process asks; bob's queue shows it without a key press, with a bell.
    let new = NewRequest {
        requester: "alice".into(),
        target: "mi-0123456789abcdef0".into(),
        reason: "disk full on the primary".into(),
        incident: Some("INC-77".into()),
        duration: Duration::from_secs(900),
        command: None,
    };
    let id = h.other.create_request(new, &h.code("alice")).unwrap().id;
    h.shows("disk full on the primary").await;
    h.shows("New approval request: alice wants").await;
    assert_eq!(h.bells.load(Ordering::SeqCst), 1);

    // bob approves: comment skipped, code typed.
    h.approve("bob");
    h.until("bob's approval is stored", |b| {
        b.get(&id).unwrap().approvals.len() == 1
    })
    .await;
    h.shows(&format!("Your approval of {id} is recorded: 1 of 2"))
        .await;

    // Over the shoulder: carol takes the keyboard and approves with a fresh code.
    h.switch_to("carol");
    h.shows("as carol").await;
    h.clock.advance(Duration::from_secs(30));
    h.shows("disk full on the primary").await;
    h.approve("carol");
    h.until("the request is approved", |b| {
        b.get(&id).unwrap().state == ReqState::Approved
    })
    .await;
    h.shows(&format!("APPROVED {id} (2 of 2)")).await;

    // A wrong code is refused inline, with what to do.
    h.key(KeyCode::Char('u'));
    h.text("alice");
    h.key(KeyCode::Enter);
    h.text("000000");
    h.key(KeyCode::Enter);
    h.shows("Refused: wrong TOTP code for alice").await;
    h.key(KeyCode::Esc);

    // q backs out to Fleet, then quits.
    h.key(KeyCode::Char('q'));
    h.shows("No fleet is configured").await;
    quit(&h, ui).await;
}

/// A daemon with alice (requester) and `me` (approver) enrolled.
fn daemon_with_alice_and(me: &str) -> crate::common::daemon::Daemon {
    let mut d = crate::common::daemon::Daemon::new(
        crate::common::cli::POLICY,
        &[("alice", "requester"), (me, "approver")],
    );
    d.start();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tui_against_a_daemon_acts_as_the_connection_identity() {
    use pink_sombrero::remote::RemoteBroker;
    let me = crate::common::daemon::own_user();
    let d = daemon_with_alice_and(&me);
    let remote = RemoteBroker::connect(&d.url().parse().unwrap()).unwrap();
    // The daemon runs on the real clock; "another process" on the broker host writes to the
    // same store directly, and the daemon's change signal carries it to the TUI.
    let clock = TestClock::at(chrono::Utc::now());
    let opts = BrokerOptions {
        policy_path: None,
        clock: Some(clock.clone()),
    };
    let secrets = vec![
        ("alice".into(), d.env.secret("alice").into()),
        (me.clone(), d.env.secret(&me).into()),
    ];
    let other = Broker::open(&Paths::at(d.env.path()), opts).unwrap();
    let (h, ui) = start(Arc::new(remote), &me, clock, secrets, other);

    h.key(KeyCode::Char('3'));
    h.shows(&format!("Nothing waiting for {me}")).await;
    let new = NewRequest {
        requester: "alice".into(),
        target: "mi-0123456789abcdef0".into(),
        reason: "disk full on the primary".into(),
        incident: None,
        duration: Duration::from_secs(900),
        command: None,
    };
    let id = h.other.create_request(new, &h.code("alice")).unwrap().id;
    h.shows("disk full on the primary").await;

    // The approval goes over the wire and is stored as the connection's identity.
    h.approve(&me);
    h.until("the approval is stored", |b| {
        b.get(&id).unwrap().approvals.iter().any(|a| a.by == me)
    })
    .await;
    h.shows(&format!("Your approval of {id} is recorded: 1 of 2"))
        .await;

    // Nobody takes over the keyboard of a daemon's client: identity is the connection's.
    h.switch_to("alice");
    h.shows("cannot switch to alice").await;
    h.key(KeyCode::Esc);

    h.key(KeyCode::Char('q'));
    quit(&h, ui).await;
}

/// A daemon's client that counts how the TUI asks for changes (every call goes to the daemon).
struct CountingRemote {
    inner: pink_sombrero::remote::RemoteBroker,
    revisions: AtomicUsize,
    waits: AtomicUsize,
}

type R<T> = pink_sombrero::broker::Result<T>;

impl BrokerApi for CountingRemote {
    fn identity(&self) -> R<Option<String>> {
        self.inner.identity()
    }
    fn revision(&self) -> R<u64> {
        self.revisions.fetch_add(1, Ordering::SeqCst);
        self.inner.revision()
    }
    fn wait_revision(&self, after: u64, timeout: Duration) -> R<u64> {
        self.waits.fetch_add(1, Ordering::SeqCst);
        self.inner.wait_revision(after, timeout)
    }
    fn waits_for_changes(&self) -> bool {
        self.inner.waits_for_changes()
    }
    fn policy(&self) -> R<pink_sombrero::policy::Policy> {
        self.inner.policy()
    }
    fn permits(&self, name: &str, role: Role) -> R<bool> {
        self.inner.permits(name, role)
    }
    fn users(&self) -> R<Vec<pink_sombrero::broker::UserInfo>> {
        self.inner.users()
    }
    fn create_request(&self, new: NewRequest, code: &str) -> R<pink_sombrero::request::Request> {
        self.inner.create_request(new, code)
    }
    fn create_emergency(&self, new: NewRequest, code: &str) -> R<pink_sombrero::request::Request> {
        BrokerApi::create_emergency(&self.inner, new, code)
    }
    fn pending_reviews(&self) -> R<Vec<pink_sombrero::review_queue::PendingReview>> {
        BrokerApi::pending_reviews(&self.inner)
    }
    fn approve(
        &self,
        id: &str,
        by: &str,
        code: &str,
        comment: Option<&str>,
    ) -> R<pink_sombrero::request::Request> {
        self.inner.approve(id, by, code, comment)
    }
    fn deny(
        &self,
        id: &str,
        by: &str,
        code: &str,
        comment: Option<&str>,
    ) -> R<pink_sombrero::request::Request> {
        self.inner.deny(id, by, code, comment)
    }
    fn cancel(&self, id: &str, by: &str) -> R<pink_sombrero::request::Request> {
        self.inner.cancel(id, by)
    }
    fn kill_session(&self, id: &str, by: &str, code: &str) -> R<pink_sombrero::request::Request> {
        self.inner.kill_session(id, by, code)
    }
    fn get(&self, id: &str) -> R<pink_sombrero::request::Request> {
        self.inner.get(id)
    }
    fn list(&self, state: Option<ReqState>) -> R<Vec<pink_sombrero::request::Request>> {
        self.inner.list(state)
    }
    fn expire_due(&self) -> R<usize> {
        self.inner.expire_due()
    }
    fn audit_events(&self, after_seq: u64, limit: usize) -> R<Vec<pink_sombrero::audit::Event>> {
        self.inner.audit_events(after_seq, limit)
    }
    fn audit_for_request(&self, id: &str) -> R<Vec<pink_sombrero::audit::Event>> {
        self.inner.audit_for_request(id)
    }
    fn verify_audit(&self) -> R<pink_sombrero::broker::AuditCheck> {
        self.inner.verify_audit()
    }
    fn switch_user(&self, name: &str, code: &str) -> R<()> {
        self.inner.switch_user(name, code)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tui_on_a_daemon_long_polls_for_changes_instead_of_polling() {
    use pink_sombrero::remote::RemoteBroker;
    let me = crate::common::daemon::own_user();
    let d = daemon_with_alice_and(&me);
    let remote = Arc::new(CountingRemote {
        inner: RemoteBroker::connect(&d.url().parse().unwrap()).unwrap(),
        revisions: AtomicUsize::new(0),
        waits: AtomicUsize::new(0),
    });
    let clock = TestClock::at(chrono::Utc::now());
    let opts = BrokerOptions {
        policy_path: None,
        clock: Some(clock.clone()),
    };
    let secrets = vec![("alice".into(), d.env.secret("alice").into())];
    let other = Broker::open(&Paths::at(d.env.path()), opts).unwrap();
    let (h, ui) = start(remote.clone(), &me, clock, secrets, other);
    h.key(KeyCode::Char('3'));
    h.shows(&format!("Nothing waiting for {me}")).await;

    // Another process writes; the change reaches the screen through the long-poll.
    let reads_before = remote.revisions.load(Ordering::SeqCst);
    let new = NewRequest {
        requester: "alice".into(),
        target: "mi-0123456789abcdef0".into(),
        reason: "disk full on the primary".into(),
        incident: None,
        duration: Duration::from_secs(900),
        command: None,
    };
    h.other.create_request(new, &h.code("alice")).unwrap();
    h.shows("disk full on the primary").await;
    // Idle a while: polling every 250 ms would read the revision several times over.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reads = remote.revisions.load(Ordering::SeqCst) - reads_before;
    assert!(reads <= 1, "{reads} revision reads instead of a long-poll");
    assert!(remote.waits.load(Ordering::SeqCst) >= 1, "no long-poll");

    h.key(KeyCode::Char('q'));
    quit(&h, ui).await;
}
