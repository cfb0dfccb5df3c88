//! Review sign-offs: a reviewer's TOTP-checked statement about a recording, bound to its
//! digest in the audit log. `sombrero review` and the daemon's review route both call this, so
//! the rules are the same on both sides of the wire.

use std::collections::HashMap;
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use thiserror::Error;

use crate::audit::{Event, EventKind};
use crate::broker::{Broker, BrokerError};
use crate::policy::Role;
use crate::recording::audited::{AuditLog, cross_check};
use crate::recording::list::{self, RecordingSummary, Review};
use crate::recording::{Integrity, verify};

/// Why a sign-off is refused.
#[derive(Debug, Error)]
pub enum ReviewError {
    /// The person lacks the reviewer role.
    #[error(
        "{who} may not review recordings: enrol them with `--role reviewer` and list them under reviewers in the policy"
    )]
    NotReviewer {
        /// Who tried.
        who: String,
    },
    /// Four eyes: nobody signs off their own session.
    #[error("{who} requested the session recorded in {name}: another reviewer must sign it off")]
    OwnSession {
        /// Who tried.
        who: String,
        /// The recording.
        name: String,
    },
    /// Nothing provable to bind the sign-off to (tampered, unsigned, unreadable, missing from
    /// or contradicting the audit log, still being written).
    #[error("cannot sign off {name}: {integrity}")]
    Unprovable {
        /// The recording.
        name: String,
        /// Its verdict.
        integrity: Integrity,
    },
    /// The note is empty.
    #[error("the review note must say what the review concluded")]
    EmptyNote,
    /// The broker refused (TOTP) or failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl ReviewError {
    /// True for refusals by a rule (exit status 1).
    pub fn is_refusal(&self) -> bool {
        match self {
            ReviewError::NotReviewer { .. }
            | ReviewError::OwnSession { .. }
            | ReviewError::Unprovable { .. } => true,
            ReviewError::EmptyNote => false,
            ReviewError::Broker(e) => e.is_refusal(),
        }
    }

    /// True for bad input (exit status 2).
    pub fn is_input(&self) -> bool {
        match self {
            ReviewError::EmptyNote => true,
            ReviewError::Broker(e) => e.is_input(),
            _ => false,
        }
    }
}

/// A recording a reviewer may sign off: checked, with the digest the sign-off binds to.
#[derive(Debug, Clone)]
pub struct Reviewable {
    /// The cast's file name.
    pub name: String,
    /// The chain head of its verified part.
    pub digest: String,
    /// Its verdict in short (`SEALED`, `UNSEALED ...`).
    pub badge: String,
    /// The request it recorded, from its header.
    pub request_id: Option<String>,
}

/// Checks that `who` may sign off `cast`: a reviewer, not the session's requester, and the
/// recording provable with `key` (call before asking for a TOTP code).
pub fn check(
    broker: &Broker,
    who: &str,
    cast: &Path,
    key: &VerifyingKey,
) -> Result<Reviewable, ReviewError> {
    if !broker.permits(who, Role::Reviewer)? {
        return Err(ReviewError::NotReviewer {
            who: who.to_string(),
        });
    }
    let name = cast.file_name().map_or_else(
        || cast.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    let meta = list::summarize(cast, None).meta;
    // The file on its own, then held to what the audit log recorded about it: a cut, a
    // re-sealed or an unknown recording is refused, and so is one still being written.
    let lookup = audit_log(broker)?.lookup(&name, meta.as_ref().map(|m| m.request_id.as_str()));
    let integrity = cross_check(cast, verify(cast, key).integrity, &lookup);
    let digest = match integrity.digest() {
        Some(d) if integrity.is_reviewable() => d.to_string(),
        _ => return Err(ReviewError::Unprovable { name, integrity }),
    };
    // The header is line 1, covered by the digest just checked.
    if meta.as_ref().is_some_and(|m| m.requester == who) {
        return Err(ReviewError::OwnSession {
            who: who.to_string(),
            name,
        });
    }
    Ok(Reviewable {
        name,
        digest,
        badge: integrity.badge(),
        request_id: meta.map(|m| m.request_id),
    })
}

/// Records `who`'s sign-off of `r` after checking their TOTP `code`.
pub fn sign_off(
    broker: &Broker,
    who: &str,
    r: &Reviewable,
    code: &str,
    note: &str,
) -> Result<Event, ReviewError> {
    let note = note.trim();
    if note.is_empty() {
        return Err(ReviewError::EmptyNote);
    }
    crate::text::validate_field(crate::text::Field::Note, note).map_err(BrokerError::from)?;
    broker.verify_code(who, code, "review")?;
    Ok(broker.record(
        who,
        EventKind::Reviewed,
        r.request_id.as_deref(),
        serde_json::json!({
            "recording": r.name,
            "digest": r.digest,
            "integrity": r.badge,
            "note": note,
        }),
    )?)
}

/// The recordings `broker`'s audit log knows (to cross-check files with).
pub fn audit_log(broker: &Broker) -> Result<AuditLog, BrokerError> {
    // Page by page, as for sign-offs: only the recordings' facts are kept.
    let mut log = AuditLog::default();
    audit_pages(broker, |page| log.extend(&page))?;
    Ok(log)
}

/// Sign-offs in `broker`'s audit log, by recording digest.
pub fn by_digest(broker: &Broker) -> Result<HashMap<String, Vec<Review>>, BrokerError> {
    let mut out: HashMap<String, Vec<Review>> = HashMap::new();
    // Page by page: the log can be long, and only its sign-offs are kept.
    audit_pages(broker, |page| collect_reviews(&mut out, page))?;
    Ok(out)
}

/// Hands the whole audit log to `f` in order, [`REVIEW_PAGE`] events at a time, so a long log
/// is never held at once.
pub(crate) fn audit_pages(
    broker: &Broker,
    mut f: impl FnMut(Vec<Event>),
) -> Result<(), BrokerError> {
    let mut after = 0;
    loop {
        let page = broker.audit_events(after, REVIEW_PAGE)?;
        let Some(last) = page.last().map(|e| e.seq) else {
            return Ok(());
        };
        after = last;
        let full = page.len() == REVIEW_PAGE;
        f(page);
        if !full {
            return Ok(());
        }
    }
}

/// Events read per page when collecting sign-offs.
const REVIEW_PAGE: usize = 1000;

/// Adds the sign-offs among `events` to `out`.
fn collect_reviews(out: &mut HashMap<String, Vec<Review>>, events: Vec<Event>) {
    for e in events.into_iter().filter(|e| e.kind == EventKind::Reviewed) {
        let field = |k: &str| {
            e.data
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        out.entry(field("digest")).or_default().push(Review {
            reviewer: e.actor.clone(),
            at: e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            note: field("note"),
        });
    }
}

/// Fills each summary's sign-offs from `reviews` (by its digest).
pub fn attach(all: &mut [RecordingSummary], mut reviews: HashMap<String, Vec<Review>>) {
    for r in all {
        if let Some(d) = r.integrity.digest() {
            r.reviews = reviews.remove(d).unwrap_or_default();
        }
    }
}
