//! Shared fixtures for the recording tests.

use std::path::{Path, PathBuf};

use pink_sombrero::recording::{RecorderKey, RecordingMeta};

/// Metadata for a test session.
pub fn meta() -> RecordingMeta {
    RecordingMeta {
        request_id: "req-1".into(),
        requester: "alice".into(),
        approvers: vec!["bob".into(), "carol".into()],
        target: "mi-0123456789abcdef0".into(),
        reason: "disk full on /var".into(),
        session_id: "sess-1".into(),
        width: 40,
        height: 10,
        term: "xterm-256color".into(),
        shell: "/bin/bash".into(),
        title: "pink sombrero req-1".into(),
    }
}

/// A data dir with a recorder key.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub key: RecorderKey,
}

impl Fixture {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let key = RecorderKey::load_or_create(&tmp.path().join("keys")).unwrap();
        Fixture { tmp, key }
    }

    pub fn recordings(&self) -> PathBuf {
        self.tmp.path().join("recordings")
    }

    /// A recorder of the test session ([`meta`]) in [`Fixture::recordings`].
    pub fn recorder(&self) -> pink_sombrero::recording::Recorder {
        pink_sombrero::recording::Recorder::create(&self.recordings(), meta(), &self.key).unwrap()
    }
}

/// The cast's lines (without newlines).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Rewrites the cast from lines (each gets its newline back).
pub fn write_lines(path: &Path, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(path, s).unwrap();
}

/// Writes what the session writes to the audit log of the data dir `data` for a recording
/// (`recording_started`, then `recording_sealed` with its lines and digest when sealed).
pub fn audit_recording(
    data: &Path,
    request: &str,
    cast: &Path,
    sealed: Option<&pink_sombrero::recording::SealInfo>,
) {
    use pink_sombrero::audit::EventKind;
    use pink_sombrero::broker::{Broker, BrokerOptions};
    let b = Broker::open(
        &pink_sombrero::config::Paths::at(data),
        BrokerOptions::default(),
    )
    .unwrap();
    let path = cast.display().to_string();
    b.record(
        "sombrero",
        EventKind::RecordingStarted,
        Some(request),
        serde_json::json!({"path": path, "session_id": "sess-1"}),
    )
    .unwrap();
    if let Some(info) = sealed {
        b.record(
            "sombrero",
            EventKind::RecordingSealed,
            Some(request),
            serde_json::json!({"path": path, "lines": info.lines, "digest": info.digest}),
        )
        .unwrap();
    }
}
