//! The append-only, SHA-256 hash-chained timeline: how an event's hash is
//! computed and how a stored chain is verified. Pure functions; the store
//! calls [`event_hash`] when it appends and [`verify_chain`] when asked.
//!
//! Signed checkpoints of the head live in [`crate::domain::checkpoint`]; the check that the
//! incident and containment rows match what the events imply lives in
//! [`crate::domain::projection`]. Both are reported here, in one [`AuditReport`].
//!
//! May import: std, sha2, hex, serde, `crate::domain::incident`, `crate::domain::checkpoint`,
//! `crate::domain::projection`.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::incident::Event;

/// The `prev_hash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// SHA-256 over the event's fields and the previous hash, as lowercase hex.
///
/// Fields are length-prefixed so no two different events share an input.
pub fn event_hash(
    seq: i64,
    incident_id: &str,
    at_rfc3339: &str,
    actor: &str,
    data: &str,
    prev_hash: &str,
) -> String {
    hex::encode(event_digest(
        seq,
        incident_id,
        at_rfc3339,
        actor,
        data,
        prev_hash,
    ))
}

/// The raw SHA-256 of [`event_hash`] (its hex form is the stored hash), without allocating.
pub fn event_digest(
    seq: i64,
    incident_id: &str,
    at_rfc3339: &str,
    actor: &str,
    data: &str,
    prev_hash: &str,
) -> [u8; 32] {
    use std::io::Write;
    let mut num = [0u8; 20];
    let len = {
        let mut w = &mut num[..];
        // An i64 has at most 20 characters: the write cannot fail.
        let _ = write!(w, "{seq}");
        20 - w.len()
    };
    let seq_s = std::str::from_utf8(&num[..len]).unwrap_or_default();
    let mut h = Sha256::new();
    for part in [seq_s, incident_id, at_rfc3339, actor, data, prev_hash] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// Timestamps are hashed in this exact form (microseconds, `Z`).
pub fn hash_time(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The outcome of [`verify_chain`] (and of the whole audit: chain, checkpoints, projection).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditReport {
    /// True when every event's hash and link is intact and nothing is missing, every signed
    /// checkpoint (when checked) matches the chain, and the incident and containment rows match
    /// what the events imply.
    pub ok: bool,
    /// How many events were checked.
    pub events_checked: u64,
    /// The sequence number of the first event that fails, if any.
    pub first_bad_event: Option<i64>,
    /// What is wrong with it.
    pub problem: Option<String>,
    /// The signed checkpoints the chain was compared with; absent when none were configured
    /// (`[audit] witness_file` and a key) or given (`verify-audit --checkpoints`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<crate::domain::checkpoint::CheckpointStatus>,
    /// Whether the `incidents` and `containments` rows match the state the events imply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projection: Option<crate::domain::projection::ProjectionReport>,
}

impl AuditReport {
    /// A report that fails at event `seq` for `why`.
    pub fn bad(events_checked: u64, seq: i64, why: impl Into<String>) -> AuditReport {
        AuditReport {
            ok: false,
            events_checked,
            first_bad_event: Some(seq),
            problem: Some(why.into()),
            checkpoints: None,
            projection: None,
        }
    }

    /// Adds the projection check; a mismatch makes the whole report fail.
    pub fn with_projection(mut self, p: crate::domain::projection::ProjectionReport) -> Self {
        if !p.ok {
            self.ok = false;
            if self.problem.is_none() {
                self.problem = p.mismatches.first().map(|m| {
                    format!(
                        "the stored state does not match the timeline: incident {} {} is {} but the events say {}",
                        m.incident_id, m.field, m.found, m.expected
                    )
                });
            }
        }
        self.projection = Some(p);
        self
    }
}

/// Hashes the chain must have at given sequence numbers (from signed checkpoints): `seq →
/// (hash, when it was signed)`.
pub type Pins = BTreeMap<i64, (String, String)>;

/// Checks a chain read in ascending `seq` order, one event at a time, so a
/// long log is verified in constant memory.
///
/// Detects edits (hash mismatch), deletions (a gap in `seq`, or a broken link),
/// and reordering (seq is hashed, so swapping rows breaks both hashes). The
/// `head` given to [`ChainVerifier::finish`] is the `(seq, hash)` the store
/// recorded for its last append, which catches a deleted tail.
///
/// With [`ChainVerifier::with_pins`] it also checks signed checkpoints: the event at each
/// pinned sequence number must carry the pinned hash (which commits to every event before it),
/// and the chain must reach the highest pinned number. That catches what a chain alone cannot:
/// a recomputed chain, a truncated tail with a rewritten head, an emptied table.
#[derive(Debug)]
pub struct ChainVerifier {
    prev_hash: String,
    expect_seq: i64,
    n: u64,
    failed: Option<AuditReport>,
    pins: Pins,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            prev_hash: GENESIS_HASH.to_string(),
            expect_seq: 1,
            n: 0,
            failed: None,
            pins: Pins::new(),
        }
    }
}

impl ChainVerifier {
    /// A verifier that also checks these checkpoint hashes.
    pub fn with_pins(pins: Pins) -> Self {
        Self {
            pins,
            ..Self::default()
        }
    }

    /// Starts after an already verified event (`seq`, `hash`): checks only what follows.
    pub fn resume(seq: i64, hash: &str) -> Self {
        Self {
            prev_hash: hash.to_string(),
            expect_seq: seq + 1,
            ..Self::default()
        }
    }

    /// Records that the event at `seq` cannot even be read (its time or incident id is not
    /// valid): the chain fails there. Returns false.
    pub fn push_unreadable(&mut self, seq: i64, why: &str) -> bool {
        if self.failed.is_none() {
            self.n += 1;
            self.failed = Some(AuditReport::bad(
                self.n,
                seq,
                format!("event {seq} cannot be read ({why}): it was edited"),
            ));
        }
        false
    }

    /// Checks the next event. Returns false once the chain is broken (later
    /// events are then ignored).
    pub fn push(&mut self, e: &Event) -> bool {
        if self.failed.is_some() {
            return false;
        }
        self.n += 1;
        let problem = if e.seq != self.expect_seq {
            Some(format!(
                "expected event {}, found {}: events are missing or reordered",
                self.expect_seq, e.seq
            ))
        } else if e.prev_hash != self.prev_hash {
            Some("prev_hash does not link to the previous event".to_string())
        } else if event_hash(
            e.seq,
            e.incident_id.as_str(),
            &hash_time(&e.at),
            &e.actor,
            &e.data,
            &e.prev_hash,
        ) != e.hash
        {
            Some("hash does not match the event's content: it was edited".to_string())
        } else if let Some((h, at)) = self.pins.get(&e.seq).filter(|(h, _)| *h != e.hash) {
            Some(format!(
                "event {} has hash {} but the checkpoint signed at {at} says {h}: the chain was rewritten at or before this event",
                e.seq,
                short(&e.hash),
            ))
        } else {
            None
        };
        if let Some(why) = problem {
            self.failed = Some(AuditReport::bad(self.n, e.seq, why));
            return false;
        }
        self.prev_hash = e.hash.clone();
        self.expect_seq += 1;
        true
    }

    /// The verdict, given the recorded head of the chain.
    pub fn finish(self, head: Option<(i64, &str)>) -> AuditReport {
        if let Some(r) = self.failed {
            return r;
        }
        let last = self.expect_seq - 1;
        let head_ok = match head {
            Some((seq, hash)) => seq == last && hash == self.prev_hash,
            None => last == 0,
        };
        if !head_ok {
            return AuditReport::bad(
                self.n,
                last + 1,
                format!(
                    "the chain ends at event {last} but the recorded head is event {}: events were deleted",
                    head.map(|h| h.0).unwrap_or(0)
                ),
            );
        }
        if let Some((&seq, (_, at))) = self.pins.last_key_value().filter(|(s, _)| **s > last) {
            return AuditReport::bad(
                self.n,
                last + 1,
                format!(
                    "the chain ends at event {last} but the checkpoint signed at {at} covers event {seq}: events were deleted and the head rewritten"
                ),
            );
        }
        AuditReport {
            ok: true,
            events_checked: self.n,
            first_bad_event: None,
            problem: None,
            checkpoints: None,
            projection: None,
        }
    }

    /// Accepts `count` events that follow the last one pushed, ending at `(last_seq,
    /// last_hash)`, which the caller has checked by the same rules as [`ChainVerifier::push`]
    /// (consecutive sequence numbers, each `prev_hash` the hash before it, each hash recomputed,
    /// no pin contradicted): the parallel verifier checks chunks on worker threads and pushes
    /// only each chunk's first event here. Ignored once the chain is broken.
    pub fn advance_verified(&mut self, last_seq: i64, last_hash: &str, count: u64) {
        if self.failed.is_some() || count == 0 {
            return;
        }
        self.n += count;
        self.expect_seq = last_seq + 1;
        self.prev_hash = last_hash.to_string();
    }

    /// The last verified event (`seq`, `hash`), while the chain is intact.
    pub fn last(&self) -> Option<(i64, &str)> {
        (self.failed.is_none() && self.expect_seq > 1)
            .then_some((self.expect_seq - 1, self.prev_hash.as_str()))
    }
}

fn short(h: &str) -> &str {
    h.get(..16).unwrap_or(h)
}

/// Checks a whole chain held in memory (see [`ChainVerifier`]).
pub fn verify_chain<'a>(
    events: impl IntoIterator<Item = &'a Event>,
    head: Option<(i64, &str)>,
) -> AuditReport {
    let mut v = ChainVerifier::default();
    for e in events {
        if !v.push(e) {
            break;
        }
    }
    v.finish(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::incident::IncidentId;

    fn chain(n: i64) -> Vec<Event> {
        let mut prev = GENESIS_HASH.to_string();
        let at = chrono::DateTime::UNIX_EPOCH;
        (1..=n)
            .map(|seq| {
                let id: IncidentId = "INC-1".parse().unwrap();
                let data = format!("{{\"kind\":\"note\",\"text\":\"{seq}\"}}");
                let hash = event_hash(seq, id.as_str(), &hash_time(&at), "me", &data, &prev);
                let e = Event {
                    seq,
                    incident_id: id,
                    at,
                    actor: "me".into(),
                    data,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                e
            })
            .collect()
    }

    fn head(c: &[Event]) -> Option<(i64, &str)> {
        c.last().map(|e| (e.seq, e.hash.as_str()))
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(5);
        let r = verify_chain(&c, head(&c));
        assert!(r.ok);
        assert_eq!(r.events_checked, 5);
    }

    #[test]
    fn edit_is_detected() {
        let mut c = chain(5);
        let h = c[4].hash.clone();
        c[2].data = "{\"kind\":\"note\",\"text\":\"changed\"}".into();
        let r = verify_chain(&c, Some((5, &h)));
        assert_eq!(r.first_bad_event, Some(3));
    }

    #[test]
    fn deletion_in_middle_and_tail_detected() {
        let mut c = chain(5);
        let h = c[4].hash.clone();
        c.remove(1);
        assert_eq!(verify_chain(&c, Some((5, &h))).first_bad_event, Some(3));
        let mut c = chain(5);
        c.pop();
        assert!(!verify_chain(&c, Some((5, &h))).ok);
    }

    #[test]
    fn reordering_detected() {
        let mut c = chain(5);
        let h = c[4].hash.clone();
        c.swap(1, 2);
        assert!(!verify_chain(&c, Some((5, &h))).ok);
        // renumbering after a swap still breaks the hashes
        let mut c = chain(5);
        c.swap(1, 2);
        c[1].seq = 2;
        c[2].seq = 3;
        assert!(!verify_chain(&c, Some((5, &h))).ok);
    }
}
