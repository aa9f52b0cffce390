//! Row mapping for SQLite: incidents to and from their rows (body, counter columns, evidence
//! rows), event appends on the hash chain
//! (with the side tables that follow from events), outbox and event rows back to values.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::audit;
use crate::domain::incident::{EventKind, Evidence, Incident, IncidentId};
use crate::store::StoreError;
use crate::store::records::{
    EventRow, INCIDENT_COLUMNS, StoredIncident, backend, body_without_evidence, counter_columns,
    evidence_diff, evidence_json, micros,
};

/// Writes an incident's row: its body (without the evidence), the indexed columns and the
/// counter columns. An insert also writes its evidence rows; an update leaves them to
/// [`sync_evidence`].
pub(super) fn save_incident(
    conn: &Connection,
    inc: &mut Incident,
    insert: bool,
) -> Result<(), StoreError> {
    let body = body_without_evidence(inc)?;
    let (occurrences, last_seen, updated_exact, repeat_logged) = counter_columns(inc);
    let sql = if insert {
        "INSERT INTO incidents (id, incident_type, severity, status, step, level, dedup_key, created_at, updated_at, body,
            occurrences, last_seen_at, updated_at_exact, repeat_logged_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    } else {
        "UPDATE incidents SET incident_type=?2, severity=?3, status=?4, step=?5, level=?6, dedup_key=?7,
         created_at=?8, updated_at=?9, body=?10, occurrences=?11, last_seen_at=?12, updated_at_exact=?13,
         repeat_logged_at=?14, version = version + 1 WHERE id=?1"
    };
    conn.prepare_cached(sql)
        .and_then(|mut st| {
            st.execute(params![
                inc.id().as_str(),
                inc.incident_type().as_str(),
                inc.severity().as_str(),
                inc.status().as_str(),
                inc.step().as_str(),
                inc.escalation_level(),
                inc.dedup_key(),
                micros(&inc.created_at()),
                micros(&inc.updated_at()),
                body,
                occurrences,
                last_seen,
                updated_exact,
                repeat_logged
            ])
        })
        .map_err(backend)?;
    if insert {
        sync_evidence(conn, inc.id().as_str(), &[], inc.evidence())?;
    }
    Ok(())
}

/// A repeat's write (issue #13): the counter columns in place — `occurrences + 1`, last seen,
/// updated — no body. `inc` is the incident after the repeat.
pub(super) fn save_counters(conn: &Connection, inc: &Incident) -> Result<(), StoreError> {
    let (_, last_seen, updated_exact, repeat_logged) = counter_columns(inc);
    let n = conn
        .prepare_cached(
            "UPDATE incidents SET occurrences = occurrences + 1, last_seen_at = ?2, updated_at = ?3,
             updated_at_exact = ?4, repeat_logged_at = ?5, version = version + 1 WHERE id = ?1",
        )
        .and_then(|mut st| {
            st.execute(params![
                inc.id().as_str(),
                last_seen,
                micros(&inc.updated_at()),
                updated_exact,
                repeat_logged
            ])
        })
        .map_err(backend)?;
    if n != 1 {
        return Err(backend(format!("incident {} vanished", inc.id())));
    }
    Ok(())
}

/// Changes the evidence rows of incident `id` from `before` to `after` (see
/// [`evidence_diff`]): reads the incident's ordinals (an index-only scan of at most
/// [`MAX_EVIDENCE`](crate::domain::incident::MAX_EVIDENCE) keys), then deletes the dropped rows
/// and inserts the new ones by primary key.
///
/// Plain keyed statements on purpose: a `DELETE … WHERE ordinal IN (SELECT … LIMIT ? OFFSET ?)`
/// was re-prepared by SQLite on every run and was a third of the writer's time under
/// screening load.
pub(super) fn sync_evidence(
    conn: &Connection,
    id: &str,
    before: &[Evidence],
    after: &[Evidence],
) -> Result<(), StoreError> {
    let d = evidence_diff(before, after);
    if d.delete == 0 && d.append.is_empty() {
        return Ok(());
    }
    let ordinals: Vec<i64> = conn
        .prepare_cached(
            "SELECT ordinal FROM incident_evidence WHERE incident_id = ?1 ORDER BY ordinal",
        )
        .and_then(|mut st| {
            st.query_map([id], |r| r.get(0))?
                .collect::<Result<Vec<i64>, _>>()
        })
        .map_err(backend)?;
    if d.delete > 0 {
        let mut del = conn
            .prepare_cached("DELETE FROM incident_evidence WHERE incident_id = ?1 AND ordinal = ?2")
            .map_err(backend)?;
        for o in ordinals.iter().skip(d.keep).take(d.delete) {
            del.execute(params![id, o]).map_err(backend)?;
        }
    }
    if !d.append.is_empty() {
        let mut ins = conn
            .prepare_cached(
                "INSERT INTO incident_evidence (incident_id, ordinal, data) VALUES (?1, ?2, ?3)",
            )
            .map_err(backend)?;
        let mut next = ordinals.last().copied().unwrap_or(0);
        for e in d.append {
            next += 1;
            ins.execute(params![id, next, evidence_json(e)?])
                .map_err(backend)?;
        }
    }
    Ok(())
}

/// The incident row `r` (selected as [`INCIDENT_COLUMNS`]).
pub(super) fn row_incident(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredIncident> {
    Ok(StoredIncident {
        id: r.get(0)?,
        body: r.get(1)?,
        occurrences: r.get(2)?,
        last_seen_at: r.get(3)?,
        updated_at_exact: r.get(4)?,
        repeat_logged_at: r.get(5)?,
    })
}

/// The domain incident of a row read as [`INCIDENT_COLUMNS`], with its evidence rows.
pub(super) fn assemble(conn: &Connection, row: StoredIncident) -> Result<Incident, StoreError> {
    let evidence: Vec<String> = conn
        .prepare_cached(
            "SELECT data FROM incident_evidence WHERE incident_id = ?1 ORDER BY ordinal",
        )
        .and_then(|mut st| {
            st.query_map([&row.id], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()
        })
        .map_err(backend)?;
    row.assemble(&evidence)
}

pub(super) fn load_incident(conn: &Connection, id: &str) -> Result<Option<Incident>, StoreError> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1"
        ))
        .and_then(|mut st| st.query_row([id], row_incident).optional())
        .map_err(backend)?;
    row.map(|r| assemble(conn, r)).transpose()
}

/// Every incident of `sql` (selecting [`INCIDENT_COLUMNS`] first) with `args`.
pub(super) fn query_incidents<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    args: P,
) -> Result<Vec<Incident>, StoreError> {
    let rows = conn
        .prepare_cached(sql)
        .and_then(|mut st| {
            st.query_map(args, row_incident)?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(backend)?;
    rows.into_iter().map(|r| assemble(conn, r)).collect()
}

pub(super) fn append_events(
    conn: &Connection,
    id: &IncidentId,
    actor: &str,
    at: &DateTime<Utc>,
    events: &[EventKind],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let head: Option<(i64, String)> = conn
        .prepare_cached("SELECT seq, hash FROM chain_head WHERE id = 1")
        .and_then(|mut st| st.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(backend)?;
    let (mut seq, mut prev) = head.unwrap_or((0, audit::GENESIS_HASH.to_string()));
    let at_s = audit::hash_time(at);
    let mut ins = conn
        .prepare_cached(
            "INSERT INTO events (seq, incident_id, at, actor, data, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(backend)?;
    for ev in events {
        seq += 1;
        let data = serde_json::to_string(ev).map_err(backend)?;
        let hash = audit::event_hash(seq, id.as_str(), &at_s, actor, &data, &prev);
        ins.execute(params![seq, id.as_str(), at_s, actor, data, prev, hash])
            .map_err(backend)?;
        side_tables(conn, id, at, ev, &data)?;
        prev = hash;
    }
    conn.prepare_cached(
        "INSERT INTO chain_head (id, seq, hash) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    )
    .and_then(|mut st| st.execute(params![seq, prev]))
    .map_err(backend)?;
    Ok(())
}

/// Outbox and containment rows that follow from an event (same transaction).
pub(super) fn side_tables(
    conn: &Connection,
    id: &IncidentId,
    at: &DateTime<Utc>,
    ev: &EventKind,
    data: &str,
) -> Result<(), StoreError> {
    let t = micros(at);
    match ev {
        EventKind::NotificationQueued {
            notification_id,
            channel,
            ..
        } => {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO outbox (id, channel, incident_id, payload, status, attempts, next_attempt_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5, ?5)",
            )
            .and_then(|mut st| st.execute(params![notification_id, channel, id.as_str(), data, t]))
            .map_err(backend)?;
        }
        EventKind::Contained {
            action,
            subject_kind,
            subject,
            reason,
        } => {
            conn.prepare_cached(
                "INSERT INTO containments (incident_id, subject_kind, subject, action, reason, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut st| {
                st.execute(params![id.as_str(), subject_kind, subject, action, reason, t])
            })
            .map_err(backend)?;
        }
        EventKind::ContainmentLifted {
            subject_kind,
            subject,
            ..
        } => {
            conn.prepare_cached(
                "UPDATE containments SET lifted_at = ?4
                 WHERE incident_id = ?1 AND subject_kind = ?2 AND subject = ?3 AND lifted_at IS NULL",
            )
            .and_then(|mut st| st.execute(params![id.as_str(), subject_kind, subject, t]))
            .map_err(backend)?;
        }
        _ => {}
    }
    Ok(())
}

pub(super) fn row_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}
