//! Proving a recording unaltered, or naming the first line where it is not.
//!
//! The cast is re-hashed line by line (see [`super::chain`]); the line fingerprints stored in
//! the chain locate and classify a difference (edited, deleted, inserted, reordered,
//! truncated); the chain heads and the Ed25519 seal prove the rest.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::chain::{self, Chain, ChainRecord, Seal};
use super::writer::chain_path_for;

/// How a recording differs from what was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tamper {
    /// A line's content changed.
    Edited,
    /// Lines were removed.
    Deleted,
    /// Lines were added.
    Inserted,
    /// Lines were moved.
    Reordered,
    /// The file ends early (lines or the end of a line missing).
    Truncated,
}

impl Tamper {
    fn verb(self) -> &'static str {
        match self {
            Tamper::Edited => "edited",
            Tamper::Deleted => "deleted",
            Tamper::Inserted => "inserted",
            Tamper::Reordered => "reordered",
            Tamper::Truncated => "truncated",
        }
    }
}

/// The verdict on one recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Integrity {
    /// Every line matches and the seal's signature is valid.
    Sealed {
        /// Lines in the cast.
        lines: u64,
        /// Final chain head, hex (the recording's digest).
        digest: String,
    },
    /// No seal (the session crashed or is still running): lines `1..=verified_lines` match.
    Unsealed {
        /// Lines proven by the chain.
        verified_lines: u64,
        /// Chain head after the verified lines, hex.
        digest: String,
        /// Lines in the cast (later ones were never chained).
        total_lines: u64,
    },
    /// The cast differs from what was chained.
    Tampered {
        /// How.
        kind: Tamper,
        /// First line (1-based, the header is line 1) where it differs.
        line: u64,
        /// How many lines were deleted or inserted (1 otherwise).
        count: u64,
    },
    /// No seal, and the audit log records why the session ended without one (a crash, a lost
    /// connection, a recording failure): lines `1..=verified_lines` match and agree with every
    /// checkpoint the audit log recorded during the session.
    Crashed {
        /// Lines proven by the chain.
        verified_lines: u64,
        /// Chain head after the verified lines, hex.
        digest: String,
        /// Lines in the cast.
        total_lines: u64,
        /// Why the session ended without a seal, as the audit log says.
        why: String,
    },
    /// The file holds together but contradicts the audit log (cut after sealing, re-sealed,
    /// shorter than a checkpoint recorded during the session).
    AuditTampered {
        /// What the audit log says and the file does not.
        reason: String,
        /// The first line that is wrong or gone, when known.
        line: Option<u64>,
    },
    /// The audit log records no such recording (renamed, planted, or from elsewhere).
    Unaudited {
        /// Why.
        reason: String,
    },
    /// The audit log records this recording but the disk lacks it.
    Missing {
        /// What the audit log says.
        reason: String,
    },
    /// The lines match their fingerprints but the seal does not hold.
    BadSignature {
        /// Why.
        reason: String,
    },
    /// No chain file next to the cast.
    ChainMissing {
        /// Where it was expected.
        path: String,
    },
    /// The chain file cannot be trusted to locate anything.
    ChainDamaged {
        /// 1-based line of the chain file.
        chain_line: u64,
        /// What is wrong.
        reason: String,
    },
    /// There is no trusted key to check against (nothing else was checked).
    Unverified {
        /// Why.
        reason: String,
    },
    /// The cast cannot be read.
    Unreadable {
        /// The OS error.
        reason: String,
    },
}

impl Integrity {
    /// True only for an intact, sealed recording.
    pub fn is_sealed_ok(&self) -> bool {
        matches!(self, Integrity::Sealed { .. })
    }

    /// True when a reviewer may sign it off: sealed, or crashed with the reason on record.
    pub fn is_reviewable(&self) -> bool {
        matches!(self, Integrity::Sealed { .. } | Integrity::Crashed { .. })
    }

    /// The first cast line that is wrong or unverified, if the verdict names one.
    pub fn first_bad_line(&self) -> Option<u64> {
        match self {
            Integrity::Tampered { line, .. } => Some(*line),
            Integrity::AuditTampered { line, .. } => *line,
            Integrity::Crashed {
                verified_lines,
                total_lines,
                ..
            }
            | Integrity::Unsealed {
                verified_lines,
                total_lines,
                ..
            } if total_lines > verified_lines => Some(verified_lines + 1),
            _ => None,
        }
    }

    /// The digest a review is bound to: the sealed head, or the head of the verified part.
    pub fn digest(&self) -> Option<&str> {
        match self {
            Integrity::Sealed { digest, .. }
            | Integrity::Unsealed { digest, .. }
            | Integrity::Crashed { digest, .. } => Some(digest),
            _ => None,
        }
    }

    /// A short badge for status bars: `sealed ✓`, `unsealed`, `TAMPERED at line N`, ...
    pub fn badge(&self) -> String {
        match self {
            Integrity::Sealed { .. } => "sealed ✓".into(),
            Integrity::Unsealed { verified_lines, .. } => {
                format!("unsealed (verified to line {verified_lines})")
            }
            Integrity::Tampered { line, .. } => format!("TAMPERED at line {line}"),
            Integrity::Crashed { verified_lines, .. } => {
                format!("crashed (verified to line {verified_lines})")
            }
            Integrity::AuditTampered { line: Some(l), .. } => {
                format!("TAMPERED at line {l} (audit log)")
            }
            Integrity::AuditTampered { line: None, .. } => "TAMPERED (audit log)".into(),
            Integrity::Unaudited { .. } => "NOT IN AUDIT LOG".into(),
            Integrity::Missing { .. } => "MISSING".into(),
            Integrity::BadSignature { .. } => "TAMPERED: bad seal".into(),
            Integrity::ChainMissing { .. } => "UNVERIFIED: no chain".into(),
            Integrity::ChainDamaged { .. } => "TAMPERED: chain damaged".into(),
            Integrity::Unverified { .. } => "UNVERIFIED: no key".into(),
            Integrity::Unreadable { .. } => "unreadable".into(),
        }
    }
}

impl std::fmt::Display for Integrity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Integrity::Sealed { lines, digest } => {
                write!(f, "intact and sealed: {lines} lines, digest {digest}")
            }
            Integrity::Unsealed {
                verified_lines,
                total_lines,
                ..
            } => write!(
                f,
                "unsealed (the session did not end cleanly): lines 1-{verified_lines} verified, {} later line(s) unverified",
                total_lines.saturating_sub(*verified_lines)
            ),
            Integrity::Crashed {
                verified_lines,
                total_lines,
                why,
                ..
            } => write!(
                f,
                "crashed: no seal because the session ended without one ({why}, as the audit log records): lines 1-{verified_lines} verified and agree with the audit log, {} later line(s) unverified",
                total_lines.saturating_sub(*verified_lines)
            ),
            Integrity::AuditTampered { reason, .. } => write!(f, "TAMPERED: {reason}"),
            Integrity::Unaudited { reason } => write!(f, "NOT IN AUDIT LOG: {reason}"),
            Integrity::Missing { reason } => write!(f, "MISSING: {reason}"),
            Integrity::Tampered { kind, line, count } if *count > 1 => {
                write!(f, "TAMPERED: {count} lines {} at line {line}", kind.verb())
            }
            Integrity::Tampered { kind, line, .. } => {
                write!(f, "TAMPERED: line {line} {}", kind.verb())
            }
            Integrity::BadSignature { reason } => write!(f, "TAMPERED: bad seal: {reason}"),
            Integrity::ChainMissing { path } => {
                write!(f, "cannot verify: integrity chain {path} is missing")
            }
            Integrity::ChainDamaged { chain_line, reason } => {
                write!(f, "TAMPERED: chain file line {chain_line}: {reason}")
            }
            Integrity::Unverified { reason } => write!(f, "not verified: {reason}"),
            Integrity::Unreadable { reason } => write!(f, "cannot read recording: {reason}"),
        }
    }
}

/// What the chain file promises.
struct Expected {
    fingerprints: Vec<u64>,
    /// `(line, head)` of every `lines` record.
    checkpoints: Vec<(u64, String)>,
    seal: Option<(Seal, String)>,
}

/// Parses the chain file; `Err` is the verdict when it cannot be used.
fn read_chain(path: &Path) -> Result<Expected, Integrity> {
    let read = |p: &Path| -> std::io::Result<Vec<u8>> {
        let mut b = Vec::new();
        crate::private_fs::open_regular(p)?.read_to_end(&mut b)?;
        Ok(b)
    };
    let bytes = match read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Integrity::ChainMissing {
                path: path.display().to_string(),
            });
        }
        Err(e) => {
            return Err(Integrity::Unreadable {
                reason: format!("{}: {e}", path.display()),
            });
        }
    };
    let damaged = |n: usize, reason: &str| Integrity::ChainDamaged {
        chain_line: n as u64 + 1,
        reason: reason.to_string(),
    };
    let mut exp = Expected {
        fingerprints: Vec::new(),
        checkpoints: Vec::new(),
        seal: None,
    };
    let mut hasher = Sha256::new();
    let mut lines = bytes
        .split_inclusive(|b| *b == b'\n')
        .enumerate()
        .peekable();
    while let Some((n, raw)) = lines.next() {
        let complete = raw.ends_with(b"\n");
        let record: ChainRecord = match serde_json::from_slice(raw) {
            Ok(r) if complete => r,
            // A record cut by a crash can only be the very last bytes.
            _ if !complete && lines.peek().is_none() && n > 0 => break,
            _ => return Err(damaged(n, "not a chain record")),
        };
        if exp.seal.is_some() {
            return Err(damaged(n, "records after the seal"));
        }
        match (n, record) {
            (0, ChainRecord::Start { version }) if version == chain::CHAIN_VERSION => {}
            (0, _) => return Err(damaged(n, "does not start with a version 1 start record")),
            (_, ChainRecord::Start { .. }) => return Err(damaged(n, "a second start record")),
            (_, ChainRecord::Lines { from, to, head, d }) => {
                let next = exp.fingerprints.len() as u64 + 1;
                let fps = chain::parse_fingerprints(&d)
                    .ok_or_else(|| damaged(n, "malformed line fingerprints"))?;
                if from != next || to < from || fps.len() as u64 != to - from + 1 {
                    return Err(damaged(
                        n,
                        &format!("covers lines {from}-{to}, expected from line {next}"),
                    ));
                }
                exp.fingerprints.extend(fps);
                exp.checkpoints.push((to, head));
            }
            (_, ChainRecord::Seal(seal)) => {
                let digest = hex::encode(hasher.clone().finalize());
                exp.seal = Some((seal, digest));
            }
        }
        hasher.update(raw);
    }
    Ok(exp)
}

/// The chain head after each line a `lines` record ends on, as the chain file says (`None`
/// when the chain file cannot be read or used).
pub fn chain_heads(cast: &Path) -> Option<HashMap<u64, String>> {
    read_chain(&chain_path_for(cast))
        .ok()
        .map(|e| e.checkpoints.into_iter().collect())
}

/// What the cast actually holds.
struct Actual {
    fingerprints: Vec<u64>,
    /// Chain heads after each line named by a checkpoint.
    heads: HashMap<u64, String>,
    head: String,
    ends_with_newline: bool,
}

fn read_cast(path: &Path, checkpoints: &[(u64, String)]) -> std::io::Result<Actual> {
    let wanted: std::collections::HashSet<u64> = checkpoints.iter().map(|(l, _)| *l).collect();
    let mut reader = BufReader::with_capacity(1 << 20, crate::private_fs::open_regular(path)?);
    let mut chain = Chain::default();
    let mut act = Actual {
        fingerprints: Vec::new(),
        heads: HashMap::new(),
        head: String::new(),
        ends_with_newline: true,
    };
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.by_ref().read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let body = match line.strip_suffix(b"\n") {
            Some(b) => b,
            None => {
                act.ends_with_newline = false;
                &line[..]
            }
        };
        act.fingerprints.push(chain.push(body));
        if wanted.contains(&chain.lines()) {
            act.heads.insert(chain.lines(), hex::encode(chain.head()));
        }
    }
    act.head = hex::encode(chain.head());
    Ok(act)
}

/// Locates the first difference between expected and actual fingerprints.
/// `sealed`: extra lines at the end are insertions (else they are the unchained tail of a crash).
fn locate(exp: &[u64], act: &[u64], sealed: bool) -> Option<(Tamper, u64, u64)> {
    let (n, m) = (exp.len(), act.len());
    let Some(i) = (0..n.min(m)).find(|&i| exp[i] != act[i]) else {
        return match m.cmp(&n) {
            std::cmp::Ordering::Less => Some((Tamper::Truncated, m as u64 + 1, (n - m) as u64)),
            std::cmp::Ordering::Greater if sealed => {
                Some((Tamper::Inserted, n as u64 + 1, (m - n) as u64))
            }
            _ => None,
        };
    };
    let line = i as u64 + 1;
    // Do a and b agree from their given starts to the end of the shorter one?
    let aligned = |a: &[u64], b: &[u64]| a.iter().zip(b).all(|(x, y)| x == y);
    let in_exp_later = exp[i + 1..].contains(&act[i]);
    if !in_exp_later && aligned(&exp[i + 1..], &act[i + 1..]) && (m == n || !sealed) {
        return Some((Tamper::Edited, line, 1));
    }
    // Deleted k lines: act[i..] continues exp[i+k..].
    if let Some(k) = (1..n - i).find(|&k| exp[i + k] == act[i] && aligned(&exp[i + k..], &act[i..]))
    {
        return Some((Tamper::Deleted, line, k as u64));
    }
    // Inserted k lines: act[i+k..] continues exp[i..].
    if let Some(k) = (1..m - i).find(|&k| act[i + k] == exp[i] && aligned(&exp[i..], &act[i + k..]))
    {
        return Some((Tamper::Inserted, line, k as u64));
    }
    if in_exp_later || act[i + 1..].contains(&exp[i]) {
        return Some((Tamper::Reordered, line, 1));
    }
    Some((Tamper::Edited, line, 1))
}

/// Verifies the cast at `path` against its chain file and `key` (the trusted recorder key).
pub fn verify(path: &Path, key: &VerifyingKey) -> VerifyReport {
    let integrity = verify_inner(path, key);
    VerifyReport {
        path: path.display().to_string(),
        integrity,
    }
}

/// The verdict with the file it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The cast.
    pub path: String,
    /// The verdict.
    #[serde(flatten)]
    pub integrity: Integrity,
}

fn verify_inner(path: &Path, key: &VerifyingKey) -> Integrity {
    let exp = match read_chain(&chain_path_for(path)) {
        Ok(e) => e,
        Err(verdict) => return verdict,
    };
    let act = match read_cast(path, &exp.checkpoints) {
        Ok(a) => a,
        Err(e) => {
            return Integrity::Unreadable {
                reason: format!("{}: {e}", path.display()),
            };
        }
    };
    let sealed = exp.seal.is_some();
    let (n, m) = (exp.fingerprints.len() as u64, act.fingerprints.len() as u64);
    if let Some((mut kind, line, count)) = locate(&exp.fingerprints, &act.fingerprints, sealed) {
        // The last line is cut short: that is truncation, not an edit.
        if !act.ends_with_newline && line == m {
            kind = Tamper::Truncated;
        }
        return Integrity::Tampered { kind, line, count };
    }
    if sealed && !act.ends_with_newline {
        return Integrity::Tampered {
            kind: Tamper::Truncated,
            line: m,
            count: 1,
        };
    }
    for (i, (to, head)) in exp.checkpoints.iter().enumerate() {
        if act.heads.get(to) != Some(head) {
            return Integrity::ChainDamaged {
                // Chain line 1 is the start record.
                chain_line: i as u64 + 2,
                reason: format!("chain head after line {to} does not match the cast"),
            };
        }
    }
    let Some((seal, chain_digest)) = exp.seal else {
        return Integrity::Unsealed {
            verified_lines: n,
            digest: exp
                .checkpoints
                .last()
                .map_or_else(|| hex::encode(chain::genesis()), |(_, h)| h.clone()),
            total_lines: m,
        };
    };
    if let Err(reason) = check_seal(&seal, &chain_digest, &act.head, m, key) {
        return Integrity::BadSignature { reason };
    }
    Integrity::Sealed {
        lines: m,
        digest: act.head,
    }
}

fn check_seal(
    seal: &Seal,
    chain_digest: &str,
    head: &str,
    lines: u64,
    key: &VerifyingKey,
) -> Result<(), String> {
    let trusted = hex::encode(key.as_bytes());
    if seal.key != trusted {
        return Err(format!(
            "sealed by key {}, not the trusted recorder key {trusted}",
            seal.key
        ));
    }
    if seal.lines != lines || seal.head != head {
        return Err(format!(
            "seal covers {} lines with head {}, the cast has {lines} with head {head}",
            seal.lines, seal.head
        ));
    }
    if seal.chain_digest != chain_digest {
        return Err("the chain file was altered before the seal".into());
    }
    let sig_bytes: [u8; 64] = hex::decode(&seal.sig)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("signature is not 64 hex bytes")?;
    key.verify_strict(
        &chain::seal_message(seal),
        &Signature::from_bytes(&sig_bytes),
    )
    .map_err(|_| "the Ed25519 signature does not verify".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(exp: &[u64], act: &[u64], sealed: bool) -> Option<(Tamper, u64, u64)> {
        locate(exp, act, sealed)
    }

    #[test]
    fn classifies_differences() {
        let e = [1, 2, 3, 4, 5];
        assert_eq!(t(&e, &e, true), None);
        assert_eq!(t(&e, &[1, 2, 9, 4, 5], true), Some((Tamper::Edited, 3, 1)));
        assert_eq!(t(&e, &[1, 2, 4, 5], true), Some((Tamper::Deleted, 3, 1)));
        assert_eq!(t(&e, &[1, 4, 5], true), Some((Tamper::Deleted, 2, 2)));
        assert_eq!(
            t(&e, &[1, 2, 9, 3, 4, 5], true),
            Some((Tamper::Inserted, 3, 1))
        );
        assert_eq!(
            t(&e, &[1, 2, 3, 4, 5, 6], true),
            Some((Tamper::Inserted, 6, 1))
        );
        assert_eq!(t(&e, &[1, 2, 3, 4, 5, 6], false), None);
        assert_eq!(
            t(&e, &[1, 3, 2, 4, 5], true),
            Some((Tamper::Reordered, 2, 1))
        );
        assert_eq!(t(&e, &[1, 2, 3], true), Some((Tamper::Truncated, 4, 2)));
        assert_eq!(t(&e, &[1, 2, 3, 4, 9], true), Some((Tamper::Edited, 5, 1)));
    }
}
