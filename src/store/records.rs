//! Backend-neutral mapping of stored text to values, shared by the SQLite and PostgreSQL
//! adapters so both read rows the same way: times as microseconds, event rows, outbox payloads,
//! incidents assembled from body + counter columns + evidence rows (and the evidence rows a
//! change needs), incident bodies for the projection check, and containments as the events
//! imply them.
//!
//! May import: `crate::domain`, `crate::store`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::incident::{Counters, Event, EventKind, Evidence, Incident, IncidentId};
use crate::domain::projection::ContainmentFold;
use crate::store::{ActiveContainment, OutboxItem, StoreError};

/// The typed [`StoreError`] of each failure the adapters meet (the driver's own error types
/// are mapped beside their adapter: `rusqlite::Error` in `sqlite`, `tokio_postgres::Error` in
/// `postgres`).
pub(crate) trait IntoStoreError {
    fn into_store_error(self) -> StoreError;
}

impl IntoStoreError for serde_json::Error {
    fn into_store_error(self) -> StoreError {
        self.into()
    }
}

impl IntoStoreError for std::io::Error {
    fn into_store_error(self) -> StoreError {
        StoreError::Io(Arc::new(self))
    }
}

impl IntoStoreError for tokio::task::JoinError {
    fn into_store_error(self) -> StoreError {
        StoreError::Task {
            what: "a database task panicked or was cancelled",
            source: Some(Arc::new(self)),
        }
    }
}

impl<T> IntoStoreError for std::sync::PoisonError<T> {
    fn into_store_error(self) -> StoreError {
        StoreError::Task {
            what: "a store lock was poisoned by a panicked thread",
            source: None,
        }
    }
}

/// A broken guarantee, named by the message.
impl IntoStoreError for String {
    fn into_store_error(self) -> StoreError {
        StoreError::Corrupt(self)
    }
}

/// [`StoreError::Open`] for a schema at `current` when this binary knows versions up to
/// `latest`: a newer binary migrated it (`what` is "file" or "database").
pub(crate) fn schema_too_new(current: i64, latest: i64, what: &str) -> StoreError {
    StoreError::Open {
        what: format!(
            "the database schema is at version {current} but this binary knows versions up to {latest}: \
             run a newer ai-incident-mcp against this {what} (or point --db at another one)"
        ),
        source: None,
    }
}

/// A failure as its typed [`StoreError`] (for `map_err`).
pub(crate) fn backend(e: impl IntoStoreError) -> StoreError {
    e.into_store_error()
}

/// An instant as stored: microseconds since the epoch.
pub(crate) fn micros(t: &DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The inverse of [`micros`] (the epoch for a value out of range).
pub(crate) fn from_micros(m: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(m).unwrap_or(DateTime::UNIX_EPOCH)
}

/// The incident columns every read selects, in this order (see [`StoredIncident`]).
pub(crate) const INCIDENT_COLUMNS: &str =
    "id, body, occurrences, last_seen_at, updated_at_exact, repeat_logged_at";

/// An incident row as read: its body and the counter columns kept beside it; its evidence rows
/// are read separately ([`StoredIncident::assemble`]).
#[derive(Debug)]
pub(crate) struct StoredIncident {
    pub id: String,
    pub body: String,
    pub occurrences: i64,
    pub last_seen_at: String,
    pub updated_at_exact: String,
    pub repeat_logged_at: Option<String>,
}

impl StoredIncident {
    /// The domain incident: the body with the counters and `evidence` (the rows' JSON, in
    /// ordinal order) put back.
    pub(crate) fn assemble(self, evidence: &[String]) -> Result<Incident, StoreError> {
        let id = &self.id;
        let mut inc: Incident = serde_json::from_str(&self.body).map_err(backend)?;
        let time = |what: &str, s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    backend(format!(
                        "incident {id}: {what} '{}' is not a time",
                        trunc(s)
                    ))
                })
        };
        let counters = Counters {
            occurrences: u32::try_from(self.occurrences).map_err(|_| {
                backend(format!(
                    "incident {id}: occurrences {} out of range",
                    self.occurrences
                ))
            })?,
            last_seen_at: time("last_seen_at", &self.last_seen_at)?,
            updated_at: time("updated_at_exact", &self.updated_at_exact)?,
            repeat_logged_at: self
                .repeat_logged_at
                .as_deref()
                .map(|s| time("repeat_logged_at", s))
                .transpose()?,
        };
        let evidence = evidence
            .iter()
            .map(|e| serde_json::from_str::<Evidence>(e).map_err(backend))
            .collect::<Result<Vec<_>, _>>()?;
        inc.restore_stored(counters, evidence);
        Ok(inc)
    }
}

/// An instant as the counter columns keep it: RFC 3339 with every digit it has, as in the
/// body's serde form, so an incident reads back exactly as it was written.
pub(crate) fn exact_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// The counter columns of `inc` as written: `(occurrences, last_seen_at, updated_at_exact,
/// repeat_logged_at)`.
pub(crate) fn counter_columns(inc: &Incident) -> (i64, String, String, Option<String>) {
    let c = inc.counters();
    (
        i64::from(c.occurrences),
        exact_time(&c.last_seen_at),
        exact_time(&c.updated_at),
        c.repeat_logged_at.as_ref().map(exact_time),
    )
}

/// The stored body of `inc`: its serde form without the evidence (kept as rows).
pub(crate) fn body_without_evidence(inc: &mut Incident) -> Result<String, StoreError> {
    let evidence = inc.take_evidence();
    let body = serde_json::to_string(&*inc);
    inc.put_evidence(evidence);
    body.map_err(backend)
}

/// The rows of one piece of evidence.
pub(crate) fn evidence_json(e: &Evidence) -> Result<String, StoreError> {
    serde_json::to_string(e).map_err(backend)
}

/// How an incident's evidence rows change from `before` to `after`: keep the first `keep`
/// rows, delete the `delete` rows after them, and append `append` (new ordinals). The domain
/// only drops evidence from the middle and appends (keep the first half, rotate the rest), so
/// a repeat costs one DELETE of the rotated-out rows and one INSERT per new piece; any other
/// change is still expressed exactly (at worst: delete all, append all).
#[derive(Debug, PartialEq)]
pub(crate) struct EvidenceDiff<'a> {
    pub keep: usize,
    pub delete: usize,
    pub append: &'a [Evidence],
}

pub(crate) fn evidence_diff<'a>(before: &[Evidence], after: &'a [Evidence]) -> EvidenceDiff<'a> {
    let keep = before.iter().zip(after).take_while(|(a, b)| a == b).count();
    let (rest_before, rest_after) = (&before[keep..], &after[keep..]);
    // The longest tail of `before` that `after` continues with right after the kept rows.
    let tail = (0..=rest_before.len().min(rest_after.len()))
        .rev()
        .find(|&k| rest_after[..k] == rest_before[rest_before.len() - k..])
        .unwrap_or(0);
    EvidenceDiff {
        keep,
        delete: rest_before.len() - tail,
        append: &rest_after[tail..],
    }
}

/// One stored event row: `(seq, incident_id, at, actor, data, prev_hash, hash)`.
pub(crate) type EventRow = (i64, String, String, String, String, String, String);

/// An event row as an [`Event`]; a row that cannot be read is [`StoreError::Corrupt`].
pub(crate) fn to_event(row: EventRow) -> Result<Event, StoreError> {
    let seq = row.0;
    audit_event(row).map_err(|why| backend(format!("event {seq}: {why}")))
}

/// An event row as an [`Event`], or why it cannot be read (an edited time or incident id):
/// the audit reports that as a broken chain rather than failing.
pub(crate) fn audit_event(
    (seq, incident_id, at, actor, data, prev_hash, hash): EventRow,
) -> Result<Event, String> {
    Ok(Event {
        seq,
        incident_id: incident_id
            .parse()
            .map_err(|_| format!("incident id '{}' is not valid", trunc(&incident_id)))?,
        at: DateTime::parse_from_rfc3339(&at)
            .map_err(|_| format!("time '{}' is not an RFC 3339 timestamp", trunc(&at)))?
            .with_timezone(&Utc),
        actor,
        data,
        prev_hash,
        hash,
    })
}

fn trunc(s: &str) -> String {
    crate::domain::incident::truncate_chars(s, 40)
}

/// An outbox row (its payload is the `notification_queued` event) as an [`OutboxItem`].
pub(crate) fn outbox_item(
    notification_id: String,
    channel: String,
    incident_id: String,
    payload: String,
    attempts: i64,
    created_at: i64,
) -> Result<OutboxItem, StoreError> {
    let incident_id: IncidentId = incident_id
        .parse()
        .map_err(|e| backend(format!("outbox row {notification_id}: {e}")))?;
    match serde_json::from_str::<EventKind>(&payload).map_err(backend)? {
        EventKind::NotificationQueued {
            event,
            level,
            severity,
            title,
            body,
            ..
        } => Ok(OutboxItem {
            notification_id,
            channel,
            incident_id,
            event,
            level,
            severity,
            title,
            body,
            created_at: from_micros(created_at),
            attempts: u32::try_from(attempts).unwrap_or(0),
        }),
        _ => Err(backend(format!(
            "outbox row {notification_id} does not hold a queued notification"
        ))),
    }
}

/// The fields of a stored incident body the projection check compares (`None`: not an object).
/// The reference for `audit_scan::stored_body_fast`, which the audit uses.
#[cfg(test)]
pub(crate) fn stored_body(body: &str) -> Option<crate::domain::projection::StoredBody> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .filter(|b| b.is_object())
        .map(|b| {
            let s = |k: &str| b.get(k).and_then(|v| v.as_str()).map(String::from);
            crate::domain::projection::StoredBody {
                status: s("status"),
                severity: s("severity"),
                level: b.get("escalation_level").and_then(|v| v.as_i64()),
                owner: s("owner"),
                resolution: s("resolution"),
            }
        })
}

/// Containments in force for a user or session, folded from their `contained` /
/// `containment_lifted` event rows `(seq, incident_id, at, data)` in `seq` order. `rows` is the
/// `containments` table's view of the same subjects: a disagreement is logged (screening follows
/// the events; `verify_audit_log` reports it).
pub(crate) fn implied_containments(
    events: Vec<(i64, String, String, String)>,
    user: &Option<String>,
    session: &Option<String>,
    rows: &BTreeSet<(String, String, String)>,
) -> Result<Vec<ActiveContainment>, StoreError> {
    let mut fold = ContainmentFold::default();
    let mut bodies = BTreeMap::new();
    for (seq, inc, at, data) in events {
        let wanted = match serde_json::from_str::<EventKind>(&data) {
            Ok(EventKind::Contained {
                subject_kind,
                subject,
                ..
            })
            | Ok(EventKind::ContainmentLifted {
                subject_kind,
                subject,
                ..
            }) => {
                (subject_kind == "user" && Some(&subject) == user.as_ref())
                    || (subject_kind == "session" && Some(&subject) == session.as_ref())
            }
            _ => false,
        };
        if wanted {
            fold.push(seq, &inc, &data);
            bodies.insert(seq, (at, data));
        }
    }
    let mut out = Vec::new();
    for (inc, kind, subject, seq) in fold.in_force() {
        let Some((at, data)) = bodies.get(&seq) else {
            continue;
        };
        let Ok(EventKind::Contained { action, reason, .. }) = serde_json::from_str(data) else {
            continue;
        };
        let since = DateTime::parse_from_rfc3339(at)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|_| from_micros(0));
        out.push(ActiveContainment {
            incident_id: inc
                .parse()
                .map_err(|e| backend(format!("containment event {seq}: {e}")))?,
            subject_kind: kind,
            subject,
            action,
            reason,
            since,
        });
    }
    let implied: BTreeSet<_> = out
        .iter()
        .map(|c| {
            (
                c.incident_id.as_str().to_string(),
                c.subject_kind.clone(),
                c.subject.clone(),
            )
        })
        .collect();
    if *rows != implied {
        tracing::warn!(
            implied = implied.len(),
            rows = rows.len(),
            "the containments table disagrees with the timeline; screening follows the timeline (run verify-audit)"
        );
    }
    Ok(out)
}

/// Checks that an imported event continues the chain whose head is `(seq, hash)`.
pub(crate) fn check_link(head: &(i64, String), e: &Event) -> Result<(), StoreError> {
    let bad = |why: String| {
        StoreError::Domain(crate::domain::incident::DomainError::Invalid {
            field: "event",
            message: format!(
                "event {} {why}; import a complete export, in its order",
                e.seq
            ),
        })
    };
    if e.seq != head.0 + 1 {
        return Err(bad(format!("does not follow event {}", head.0)));
    }
    if e.prev_hash != head.1 {
        return Err(bad("does not link to the event before it".into()));
    }
    let at = crate::domain::audit::hash_time(&e.at);
    let h = crate::domain::audit::event_hash(
        e.seq,
        e.incident_id.as_str(),
        &at,
        &e.actor,
        &e.data,
        &e.prev_hash,
    );
    if h != e.hash {
        return Err(bad("does not match its hash (it was edited)".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::incident::MAX_EVIDENCE;

    fn ev(n: usize) -> Evidence {
        Evidence {
            rule: format!("r{n}"),
            category: "jailbreak".into(),
            start: n,
            end: n + 1,
            excerpt: format!("e{n}"),
        }
    }

    /// Applying a diff to `before` as the stores do (keep, delete, append) gives `after`.
    fn replay(before: &[Evidence], d: &EvidenceDiff<'_>) -> Vec<Evidence> {
        let mut v = before.to_vec();
        v.drain(d.keep..d.keep + d.delete);
        v.extend_from_slice(d.append);
        v
    }

    #[test]
    fn a_rotating_repeat_deletes_only_the_rotated_rows() {
        let before: Vec<_> = (0..MAX_EVIDENCE).map(ev).collect();
        let mut after = before.clone();
        for n in 100..103 {
            after.remove(MAX_EVIDENCE / 2);
            after.push(ev(n));
        }
        let d = evidence_diff(&before, &after);
        assert_eq!((d.keep, d.delete, d.append.len()), (MAX_EVIDENCE / 2, 3, 3));
        assert_eq!(replay(&before, &d), after);
    }

    #[test]
    fn evidence_diffs_replay_to_the_new_list() {
        let cases: Vec<(Vec<usize>, Vec<usize>)> = vec![
            (vec![], vec![]),
            (vec![], vec![1, 2]),
            (vec![1, 2], vec![1, 2, 3]),
            (vec![1, 2, 3], vec![]),
            (vec![1, 2, 3], vec![4, 5]),
            (vec![1, 2, 3, 4], vec![1, 4, 9]),
            (vec![1, 1, 1], vec![1, 1, 1, 1]),
            (vec![1, 2, 1, 2], vec![1, 2, 2]),
        ];
        for (b, a) in cases {
            let (b, a): (Vec<_>, Vec<_>) = (
                b.into_iter().map(ev).collect(),
                a.into_iter().map(ev).collect(),
            );
            let d = evidence_diff(&b, &a);
            assert_eq!(replay(&b, &d), a, "{b:?} -> {a:?}");
        }
    }
}
