//! The parallel chain scan both stores use for `verify_audit_log` and for verifying the chain
//! before a checkpoint is signed. The store reads the event rows in `seq` order (one snapshot)
//! and pushes each row's text here; rows are packed into chunks (one buffer per chunk, no
//! allocation per row) and the chunks are checked on worker threads: every event's hash is
//! recomputed from its own content and its stored `prev_hash`, so a chunk's links, hashes,
//! sequence numbers and pins can be checked without the chunks before it. One fold thread then
//! takes the chunks in order and stitches them: each chunk's first event goes through the
//! domain's [`ChainVerifier`] (which checks it against the previous chunk's last event), the
//! rest of a clean chunk is accepted with [`ChainVerifier::advance_verified`], and a chunk with
//! a problem is replayed event by event through the verifier, so every verdict and message is
//! the verifier's own. The same thread folds the decoded events into the projection (the
//! workers decode them) in chain order.
//!
//! May import: `crate::domain`, `crate::store`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use crate::domain::audit::{ChainVerifier, Pins, event_digest, hash_time};
use crate::domain::incident::{EventKind, IncidentId};
use crate::domain::projection::{Implied, Projector, StoredBody};
use crate::store::StoreError;
use crate::store::records::{EventRow, audit_event, backend};

/// Events per chunk.
const CHUNK: usize = 4096;

/// Rows packed into one text buffer: for each event its `seq` and the end offsets of its six
/// text fields (incident id, at, actor, data, prev_hash, hash), each starting where the one
/// before ended.
#[derive(Default)]
struct Chunk {
    buf: String,
    ev: Vec<(i64, [usize; 6])>,
}

impl Chunk {
    fn with_capacity() -> Chunk {
        Chunk {
            buf: String::with_capacity(CHUNK * 384),
            ev: Vec::with_capacity(CHUNK),
        }
    }

    fn push(&mut self, seq: i64, fields: [&str; 6]) {
        let mut ends = [0usize; 6];
        for (end, f) in ends.iter_mut().zip(fields) {
            self.buf.push_str(f);
            *end = self.buf.len();
        }
        self.ev.push((seq, ends));
    }

    /// The fields of event `i`: incident id, at, actor, data, prev_hash, hash.
    fn fields(&self, i: usize) -> (i64, [&str; 6]) {
        let (seq, ends) = self.ev[i];
        let mut start = if i == 0 { 0 } else { self.ev[i - 1].1[5] };
        let mut out = [""; 6];
        for (o, end) in out.iter_mut().zip(ends) {
            *o = self.buf.get(start..end).unwrap_or_default();
            start = end;
        }
        (seq, out)
    }

    fn row(&self, i: usize) -> EventRow {
        let (seq, [id, at, actor, data, prev, hash]) = self.fields(i);
        (
            seq,
            id.to_string(),
            at.to_string(),
            actor.to_string(),
            data.to_string(),
            prev.to_string(),
            hash.to_string(),
        )
    }
}

/// A chunk with its place in the chain (0, 1, 2, … in `seq` order).
type Numbered = (usize, Chunk);

/// A chunk after a worker: whether every event after the first passes the chain rules on its
/// own and against the event before it, and (for the projection) each event's decoded body.
struct Checked {
    chunk: Chunk,
    rest_clean: bool,
    kinds: Vec<Option<EventKind>>,
}

/// What the scan found: the verifier (call `finish` with the recorded head) and, when asked
/// for, the projection of every event.
pub(crate) struct Scanned {
    pub verifier: ChainVerifier,
    pub projector: Option<Projector>,
}

/// A scan in progress; push every event row in `seq` order, then finish.
pub(crate) struct Scan {
    cur: Chunk,
    /// Chunks the fold thread is done with, to fill again (no new buffer per chunk).
    spare: std_mpsc::Receiver<Chunk>,
    next_index: usize,
    tx: Option<mpsc::Sender<Numbered>>,
    total: Arc<AtomicUsize>,
    done: oneshot::Receiver<Result<Scanned, String>>,
}

fn lost(why: impl std::fmt::Display) -> StoreError {
    backend(format!("the audit scan stopped: {why}"))
}

impl Scan {
    /// Starts the workers and the fold thread. `verifier` is where the chain starts (from
    /// genesis with the checkpoint pins, or resumed after a signed head); `pins` are the same
    /// pins for the workers; `project` asks for the projection fold.
    pub(crate) fn start(verifier: ChainVerifier, pins: Pins, project: bool) -> Scan {
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 8);
        let (tx, rx) = mpsc::channel::<Numbered>(workers * 2);
        let rx = Arc::new(Mutex::new(rx));
        let (res_tx, res_rx) = std_mpsc::channel::<(usize, Checked)>();
        let pins = Arc::new(pins);
        for _ in 0..workers {
            let rx = rx.clone();
            let res_tx = res_tx.clone();
            let pins = pins.clone();
            std::thread::spawn(move || {
                loop {
                    let next = match rx.lock() {
                        Ok(mut r) => r.blocking_recv(),
                        Err(_) => None,
                    };
                    let Some((i, chunk)) = next else { break };
                    if res_tx.send((i, check(chunk, &pins, project))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(res_tx);
        let total = Arc::new(AtomicUsize::new(usize::MAX));
        let (done_tx, done) = oneshot::channel();
        let (spare_tx, spare) = std_mpsc::channel();
        let t = total.clone();
        std::thread::spawn(move || {
            let _ = done_tx.send(fold(verifier, project, res_rx, &t, spare_tx));
        });
        Scan {
            cur: Chunk::with_capacity(),
            spare,
            next_index: 0,
            tx: Some(tx),
            total,
            done,
        }
    }

    fn take_full(&mut self, seq: i64, fields: [&str; 6]) -> Option<Numbered> {
        self.cur.push(seq, fields);
        (self.cur.ev.len() >= CHUNK).then(|| self.take())
    }

    fn take(&mut self) -> Numbered {
        let i = self.next_index;
        self.next_index += 1;
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Chunk::with_capacity());
        (i, std::mem::replace(&mut self.cur, next))
    }

    /// Adds the next event row (from a blocking thread).
    pub(crate) fn push_blocking(&mut self, seq: i64, fields: [&str; 6]) -> Result<(), StoreError> {
        if let Some(c) = self.take_full(seq, fields) {
            let tx = self.tx.as_ref().ok_or_else(|| lost("already finished"))?;
            tx.blocking_send(c).map_err(lost)?;
        }
        Ok(())
    }

    /// Adds the next event row (from async code).
    pub(crate) async fn push(&mut self, seq: i64, fields: [&str; 6]) -> Result<(), StoreError> {
        if let Some(c) = self.take_full(seq, fields) {
            let tx = self.tx.as_ref().ok_or_else(|| lost("already finished"))?;
            tx.send(c).await.map_err(lost)?;
        }
        Ok(())
    }

    /// Sends the last chunk; returns the receiver of the result.
    fn close(mut self) -> (Option<Numbered>, Option<mpsc::Sender<Numbered>>, Self) {
        let last = (!self.cur.ev.is_empty()).then(|| self.take());
        self.total.store(self.next_index, Ordering::SeqCst);
        let tx = self.tx.take();
        (last, tx, self)
    }

    /// Waits for the verdict (from a blocking thread).
    pub(crate) fn finish_blocking(self) -> Result<Scanned, StoreError> {
        let (last, tx, this) = self.close();
        if let (Some(c), Some(tx)) = (last, &tx) {
            tx.blocking_send(c).map_err(lost)?;
        }
        drop(tx);
        this.done.blocking_recv().map_err(lost)?.map_err(lost)
    }

    /// Waits for the verdict (from async code).
    pub(crate) async fn finish(self) -> Result<Scanned, StoreError> {
        let (last, tx, this) = self.close();
        if let (Some(c), Some(tx)) = (last, &tx) {
            tx.send(c).await.map_err(lost)?;
        }
        drop(tx);
        this.done.await.map_err(lost)?.map_err(lost)
    }
}

/// Lowercase hex of a digest, as [`crate::domain::audit::event_hash`] writes it.
fn hex_of(d: &[u8; 32]) -> [u8; 64] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in d.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    out
}

/// Whether one event is readable and its stored hash is its content's hash (and no pin says
/// otherwise): the checks [`ChainVerifier::push`] makes that need nothing but the event.
fn event_ok(seq: i64, f: &[&str; 6], pins: &Pins) -> bool {
    let [id, at, actor, data, prev, hash] = *f;
    // The verifier hashes the id as parsed (trimmed, upper case) and the time as
    // `hash_time` writes it, not as stored; a stored text already in that form is used as it is
    // (what nearly every row holds), anything else goes the long way. The time is parsed
    // either way: an impossible date in that shape must still fail.
    let parsed;
    let id = if IncidentId::is_canonical(id) {
        id
    } else {
        let Ok(p) = id.parse::<IncidentId>() else {
            return false;
        };
        parsed = p;
        parsed.as_str()
    };
    let Ok(t) = DateTime::parse_from_rfc3339(at) else {
        return false;
    };
    let formatted;
    let at_s = if is_hash_time_form(at) {
        at
    } else {
        formatted = hash_time(&t.with_timezone(&Utc));
        formatted.as_str()
    };
    if hex_of(&event_digest(seq, id, at_s, actor, data, prev)) != hash.as_bytes() {
        return false;
    }
    pins.get(&seq).is_none_or(|(h, _)| h == hash)
}

/// Whether a time that parses as RFC 3339 is already written as [`hash_time`] writes it:
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, six fraction digits).
fn is_hash_time_form(at: &str) -> bool {
    let b = at.as_bytes();
    b.len() == 27
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            26 => c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

fn check(chunk: Chunk, pins: &Pins, project: bool) -> Checked {
    let mut rest_clean = true;
    let mut kinds = Vec::with_capacity(if project { chunk.ev.len() } else { 0 });
    let mut prev: Option<(i64, &str)> = None;
    for i in 0..chunk.ev.len() {
        let (seq, f) = chunk.fields(i);
        if rest_clean && let Some((pseq, phash)) = prev {
            rest_clean = seq == pseq + 1 && f[4] == phash && event_ok(seq, &f, pins);
        }
        prev = Some((seq, f[5]));
        if project {
            kinds.push(serde_json::from_str::<EventKind>(f[3]).ok());
        }
    }
    Checked {
        chunk,
        rest_clean,
        kinds,
    }
}

/// Pushes an event row through the verifier (as the sequential audit does).
fn push_row(v: &mut ChainVerifier, row: EventRow) -> bool {
    let seq = row.0;
    match audit_event(row) {
        Ok(e) => v.push(&e),
        Err(why) => v.push_unreadable(seq, &why),
    }
}

fn fold(
    mut v: ChainVerifier,
    project: bool,
    results: std_mpsc::Receiver<(usize, Checked)>,
    total: &AtomicUsize,
    spare: std_mpsc::Sender<Chunk>,
) -> Result<Scanned, String> {
    let mut pending: BTreeMap<usize, Checked> = BTreeMap::new();
    let mut next = 0usize;
    let mut intact = true;
    let mut implied: HashMap<String, Implied> = HashMap::new();
    let mut undecodable: Vec<(i64, String)> = Vec::new();
    let mut write = String::new();
    for (i, c) in results {
        pending.insert(i, c);
        while let Some(c) = pending.remove(&next) {
            next += 1;
            let n = c.chunk.ev.len();
            if intact && n > 0 {
                intact = push_row(&mut v, c.chunk.row(0));
                if intact && c.rest_clean {
                    let (seq, f) = c.chunk.fields(n - 1);
                    v.advance_verified(seq, f[5], n as u64 - 1);
                } else {
                    for k in 1..n {
                        if !intact {
                            break;
                        }
                        intact = push_row(&mut v, c.chunk.row(k));
                    }
                }
            }
            if project {
                for (k, kind) in c.kinds.iter().enumerate() {
                    let (seq, [id, at, actor, ..]) = c.chunk.fields(k);
                    let Some(kind) = kind else {
                        undecodable.push((seq, id.to_string()));
                        continue;
                    };
                    write.clear();
                    write.push_str(at);
                    write.push('|');
                    write.push_str(actor);
                    match implied.get_mut(id) {
                        Some(imp) => imp.apply(kind, &write),
                        None => implied
                            .entry(id.to_string())
                            .or_default()
                            .apply(kind, &write),
                    }
                }
            }
            let mut chunk = c.chunk;
            chunk.buf.clear();
            chunk.ev.clear();
            let _ = spare.send(chunk);
        }
    }
    let total = total.load(Ordering::SeqCst);
    if next != total || !pending.is_empty() {
        return Err(format!(
            "{} of {total} chunks of events were checked (a worker thread failed)",
            next
        ));
    }
    Ok(Scanned {
        verifier: v,
        projector: project
            .then(|| Projector::from_parts(implied.into_iter().collect(), undecodable)),
    })
}

/// The fields of a stored incident body the projection check compares, as
/// [`crate::store::records::stored_body`] reads them (`None`: not a JSON object), without
/// building the whole body as a `serde_json::Value`: only the five fields are kept (the last
/// one wins when a key repeats, as in a `Value`), everything else is skipped unparsed.
pub(crate) fn stored_body_fast(body: &str) -> Option<StoredBody> {
    serde_json::from_str::<BodyFields>(body).ok().map(|b| {
        let s = |v: Option<serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => Some(s),
            _ => None,
        };
        let BodyFields([status, severity, level, owner, resolution]) = b;
        StoredBody {
            status: s(status),
            severity: s(severity),
            level: level.as_ref().and_then(serde_json::Value::as_i64),
            owner: s(owner),
            resolution: s(resolution),
        }
    })
}

const BODY_KEYS: [&str; 5] = [
    "status",
    "severity",
    "escalation_level",
    "owner",
    "resolution",
];

/// status, severity, escalation_level, owner, resolution.
struct BodyFields([Option<serde_json::Value>; 5]);

/// A key of the body: the index of one of [`BODY_KEYS`], or another key.
struct BodyKey(Option<usize>);

impl<'de> serde::Deserialize<'de> for BodyKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = BodyKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: serde::de::Error>(self, k: &str) -> Result<BodyKey, E> {
                Ok(BodyKey(BODY_KEYS.iter().position(|b| *b == k)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::Deserialize<'de> for BodyFields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = BodyFields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<BodyFields, A::Error> {
                let mut out = BodyFields(Default::default());
                while let Some(BodyKey(k)) = m.next_key()? {
                    match k.and_then(|i| out.0.get_mut(i)) {
                        Some(slot) => *slot = Some(m.next_value()?),
                        None => {
                            m.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::{AuditReport, GENESIS_HASH, event_hash};

    /// The two shortcuts of `event_ok` (an id and a time used as stored) give what the long
    /// way gives: a stored text in the canonical form is what parsing and writing it return.
    #[test]
    fn stored_ids_and_times_in_canonical_form_are_what_the_long_way_gives() {
        for id in [
            "INC-20261126-3F9A1C2B",
            "INC-1",
            "inc-20261126-3f9a1c2b",
            " INC-20261126-3F9A1C2B",
            "INC-",
            "INC-A_B",
            "INC-ÄB",
        ] {
            let long = id
                .parse::<IncidentId>()
                .ok()
                .map(|p| p.as_str().to_string());
            if IncidentId::is_canonical(id) {
                assert_eq!(long.as_deref(), Some(id), "{id}");
            }
        }
        assert!(IncidentId::is_canonical("INC-20261126-3F9A1C2B"));
        assert!(!IncidentId::is_canonical("inc-20261126-3f9a1c2b"));
        for at in [
            "2026-01-01T00:00:00.000000Z",
            "2026-12-31T23:59:59.999999Z",
            "2016-12-31T23:59:60.500000Z",
            "2026-02-29T00:00:00.000000Z",
            "2026-13-01T00:00:00.000000Z",
            "2026-01-01T00:00:00.000000+00:00",
            "2026-01-01T01:00:00.000000+01:00",
            "2026-01-01T00:00:00.123Z",
            "2026-01-01t00:00:00.000000z",
        ] {
            let Ok(t) = DateTime::parse_from_rfc3339(at) else {
                continue;
            };
            let long = hash_time(&t.with_timezone(&Utc));
            if is_hash_time_form(at) {
                assert_eq!(long, at);
            } else {
                assert_ne!(long, at, "{at} is in hash_time's form but not recognised");
            }
        }
        assert!(is_hash_time_form("2026-01-01T00:00:00.000000Z"));
    }

    fn chain(n: i64) -> Vec<EventRow> {
        let mut prev = GENESIS_HASH.to_string();
        let at = "2026-01-01T00:00:00.000000Z";
        (1..=n)
            .map(|seq| {
                let id = format!("INC-20260101-{:08X}", seq % 7);
                let data = format!("{{\"kind\":\"note\",\"text\":\"{seq}\"}}");
                let hash = event_hash(seq, &id, at, "me", &data, &prev);
                let row = (
                    seq,
                    id,
                    at.to_string(),
                    "me".to_string(),
                    data,
                    prev.clone(),
                    hash.clone(),
                );
                prev = hash;
                row
            })
            .collect()
    }

    fn sequential(rows: &[EventRow], pins: &Pins, head: Option<(i64, &str)>) -> AuditReport {
        let mut v = ChainVerifier::with_pins(pins.clone());
        for r in rows {
            if !push_row(&mut v, r.clone()) {
                break;
            }
        }
        v.finish(head)
    }

    fn parallel(rows: &[EventRow], pins: &Pins, head: Option<(i64, &str)>) -> AuditReport {
        let mut s = Scan::start(ChainVerifier::with_pins(pins.clone()), pins.clone(), true);
        for r in rows {
            s.push_blocking(r.0, [&r.1, &r.2, &r.3, &r.4, &r.5, &r.6])
                .unwrap();
        }
        s.finish_blocking().unwrap().verifier.finish(head)
    }

    /// Every kind of damage, at the first event, inside a chunk, at the first and last event of
    /// a chunk (the stitch), and at the end: the parallel scan gives the sequential verifier's
    /// exact report.
    #[test]
    fn parallel_scan_reports_what_the_sequential_verifier_reports() {
        let n = CHUNK as i64 * 3 + 17;
        let good = chain(n);
        let head_of = |rows: &[EventRow]| rows.last().map(|r| (r.0, r.6.clone()));
        let mut cases: Vec<(String, Vec<EventRow>, Pins)> =
            vec![("intact".into(), good.clone(), Pins::new())];
        let chunk = CHUNK;
        for at in [0, 5, chunk - 1, chunk, chunk + 1, 2 * chunk, n as usize - 1] {
            let mut edited = good.clone();
            edited[at].4 = "{\"kind\":\"note\",\"text\":\"edited\"}".into();
            cases.push((format!("data edited at {at}"), edited, Pins::new()));
            let mut link = good.clone();
            link[at].5 = GENESIS_HASH.replace('0', "1");
            cases.push((format!("link broken at {at}"), link, Pins::new()));
            let mut gone = good.clone();
            gone.remove(at);
            cases.push((format!("event {at} deleted"), gone, Pins::new()));
            let mut time = good.clone();
            time[at].2 = "yesterday".into();
            cases.push((format!("time unreadable at {at}"), time, Pins::new()));
            let mut pin = Pins::new();
            pin.insert(at as i64 + 1, ("f".repeat(64), "2026-01-01".into()));
            cases.push((format!("wrong pin at {at}"), good.clone(), pin));
        }
        let mut beyond = Pins::new();
        beyond.insert(n + 5, ("a".repeat(64), "2026-01-01".into()));
        cases.push(("pin beyond the end".into(), good.clone(), beyond));
        for (name, rows, pins) in &cases {
            let head = head_of(&good);
            let head = head.as_ref().map(|(s, h)| (*s, h.as_str()));
            let want = sequential(rows, pins, head);
            let got = parallel(rows, pins, head);
            assert_eq!(got, want, "{name}");
            assert_eq!(got.ok, name == "intact", "{name}: {got:?}");
        }
    }

    #[test]
    fn the_fast_body_reader_reads_what_the_value_reader_reads() {
        for body in [
            r#"{"status":"new","severity":"high","escalation_level":2,"owner":"a","resolution":"r","title":"x","tags":["a",{"b":[1,2.5e300]}]}"#,
            r#"{"status":"new","status":"closed","escalation_level":1,"escalation_level":3}"#,
            r#"{"status":5,"severity":null,"escalation_level":"2","owner":["x"],"resolution":{"a":1}}"#,
            r#"{"escalation_level":2.0}"#,
            r#"{"escalation_level":18446744073709551615}"#,
            r#"{"st\u0061tus":"acknowledged","owner":"\u00e9"}"#,
            r#"{}"#,
            r#"  {"status":"new"}  "#,
            r#"[1,2]"#,
            r#""status""#,
            r#"{"status":"new"} trailing"#,
            r#"{"status":"new","#,
            r#"{"other":{"deep":[[[[]]]]},"status":"x"}"#,
            r#"not json"#,
            "",
        ] {
            assert_eq!(
                stored_body_fast(body),
                crate::store::records::stored_body(body),
                "{body}"
            );
        }
    }

    #[test]
    fn an_empty_chain_is_an_empty_scan() {
        let got = parallel(&[], &Pins::new(), None);
        assert!(got.ok);
        assert_eq!(got.events_checked, 0);
    }
}
