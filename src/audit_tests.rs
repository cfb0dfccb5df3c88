//! Unit tests of [`super`] (`audit.rs`), kept apart so the module reads as product code.

use super::*;
use chrono::TimeZone;

fn chain(n: u64) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for i in 0..n {
        let at = Utc.timestamp_opt(1_700_000_000 + i as i64, 0).unwrap();
        let prev = out.last().map(|e| (e.seq, e.hash.as_str()));
        let new = NewEvent::new(
            "alice",
            EventKind::ApprovalGiven,
            Some("req-0000abcd"),
            serde_json::json!({"n": i, "b": {"z": 1, "a": 2}}),
        );
        out.push(Event::chain(prev, new, at));
    }
    out
}

#[test]
fn intact_chain_verifies() {
    let c = chain(5);
    assert_eq!(verify(&c, 5), Ok(5));
    assert_eq!(c[0].prev_hash, GENESIS);
    assert_eq!(c[1].prev_hash, c[0].hash);
}

#[test]
fn canonical_json_sorts_keys() {
    let c = chain(1);
    let j = c[0].canonical_json();
    assert!(j.starts_with("{\"actor\":\"alice\",\"at\":"), "{j}");
    assert!(j.contains("\"b\":{\"a\":2,\"z\":1}"), "{j}");
}

#[test]
fn edit_is_named() {
    let mut c = chain(5);
    c[2].actor = "mallory".into();
    assert_eq!(verify(&c, 5), Err(ChainBreak::Edited { seq: 3 }));
}

#[test]
fn deletion_is_named() {
    let mut c = chain(5);
    c.remove(1);
    assert_eq!(
        verify(&c, 5),
        Err(ChainBreak::Missing {
            expected: 2,
            found: 3,
            previous: 1
        })
    );
}

#[test]
fn reorder_is_named() {
    let mut c = chain(5);
    c.swap(1, 2);
    assert_eq!(
        verify(&c, 5),
        Err(ChainBreak::Reordered {
            expected: 2,
            found: 3,
            previous: 1
        })
    );
    let mut c = chain(5);
    let moved = c.remove(1);
    c.insert(3, moved);
    assert!(verify(&c, 5).is_err());
}

#[test]
fn insertion_with_recomputed_hash_breaks_link() {
    let mut c = chain(4);
    // A forger renumbers and rehashes an inserted event but cannot fix the next link.
    let mut fake = c[1].clone();
    fake.actor = "mallory".into();
    fake.hash = fake.compute_hash();
    c[1] = fake;
    assert_eq!(
        verify(&c, 4),
        Err(ChainBreak::BadLink {
            seq: 3,
            previous: 2
        })
    );
}

#[test]
fn duplicate_is_out_of_order() {
    let mut c = chain(3);
    let dup = c[1].clone();
    c.insert(2, dup);
    assert_eq!(
        verify(&c, 4),
        Err(ChainBreak::OutOfOrder {
            found: 2,
            previous: 2
        })
    );
}

#[test]
fn forged_tail_is_inserted() {
    let mut c = chain(3);
    let forged = Event::chain(
        Some((3, c[2].hash.as_str())),
        NewEvent::new("mallory", EventKind::Reviewed, None, serde_json::json!({})),
        c[2].at,
    );
    c.push(forged);
    assert_eq!(
        verify(&c, 3),
        Err(ChainBreak::Extra {
            first: 4,
            last: 4,
            recorded: 3
        })
    );
}

#[test]
fn truncation_is_named() {
    let mut c = chain(4);
    c.pop();
    assert_eq!(
        verify(&c, 4),
        Err(ChainBreak::Truncated {
            last: 3,
            recorded: 4
        })
    );
}

#[test]
fn kinds_round_trip_as_strings() {
    for k in [
        EventKind::RequestCreated,
        EventKind::ReplacementCompleted,
        EventKind::MfaLockedOut,
    ] {
        assert_eq!(EventKind::parse(&k.as_str()), Some(k));
    }
    assert_eq!(EventKind::RecordingSealed.as_str(), "recording_sealed");
    assert_eq!(EventKind::parse("nope"), None);
}
