//! Row mapping for SQLite: incidents to and from their rows, event appends on the hash chain
//! (with the side tables that follow from events), outbox and event rows back to values.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::audit;
use crate::domain::incident::{EventKind, Incident, IncidentId};
use crate::store::StoreError;
use crate::store::records::{EventRow, backend, micros};

pub(super) fn save_incident(
    conn: &Connection,
    inc: &Incident,
    insert: bool,
) -> Result<(), StoreError> {
    let body = serde_json::to_string(inc).map_err(backend)?;
    let sql = if insert {
        "INSERT INTO incidents (id, incident_type, severity, status, step, level, dedup_key, created_at, updated_at, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    } else {
        "UPDATE incidents SET incident_type=?2, severity=?3, status=?4, step=?5, level=?6, dedup_key=?7,
         created_at=?8, updated_at=?9, body=?10, version = version + 1 WHERE id=?1"
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
                body
            ])
        })
        .map_err(backend)?;
    Ok(())
}

pub(super) fn load_incident(conn: &Connection, id: &str) -> Result<Option<Incident>, StoreError> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM incidents WHERE id = ?1")
        .and_then(|mut st| st.query_row([id], |r| r.get(0)).optional())
        .map_err(backend)?;
    body.map(|b| serde_json::from_str(&b).map_err(backend))
        .transpose()
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
