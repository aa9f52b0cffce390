//! The SQLite side of auditing: verifying the chain (with signed checkpoint pins) and the
//! projection check in one read transaction, verifying only the events after the last
//! checkpoint, and containments as the events imply them (the `containments` table is an
//! index, not the authority).
//!
//! May import: `crate::domain`, `crate::store`.

use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::audit::{AuditReport, ChainVerifier, Pins};
use crate::domain::projection::{self, StoredContainment, StoredIncident};
use crate::store::audit_scan::{Scan, stored_body_fast};
use crate::store::records::{backend, implied_containments};
use crate::store::{ActiveContainment, HeadCheck, StoreError};

/// Migration 5: finds the `contained` / `containment_lifted` events of a subject without a
/// scan, so screening can follow the events rather than the `containments` rows.
pub(super) const MIGRATION_6_CONTAINMENT_EVENTS: &str = "
CREATE INDEX IF NOT EXISTS events_containment_subject ON events (json_extract(data, '$.subject'))
    WHERE json_extract(data, '$.kind') IN ('contained', 'containment_lifted');
";

fn head(conn: &Connection) -> Result<Option<(i64, String)>, StoreError> {
    conn.query_row("SELECT seq, hash FROM chain_head WHERE id = 1", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()
    .map_err(backend)
}

/// Runs `f` in one read transaction (one snapshot of every table).
fn snapshot<T>(
    conn: &Connection,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.execute_batch("BEGIN").map_err(backend)?;
    let r = f();
    let _ = conn.execute_batch("COMMIT");
    r
}

/// Reads every event row (after `from`, when given) in `seq` order into the parallel scan (the
/// text is borrowed from SQLite's row buffer, not copied into per-row strings).
fn scan_events(conn: &Connection, from: Option<i64>, scan: &mut Scan) -> Result<(), StoreError> {
    const COLS: &str = "SELECT seq, incident_id, at, actor, data, prev_hash, hash FROM events";
    let mut st = conn
        .prepare(&match from {
            Some(_) => format!("{COLS} WHERE seq > ?1 ORDER BY seq"),
            None => format!("{COLS} ORDER BY seq"),
        })
        .map_err(backend)?;
    let mut rows = match from {
        Some(f) => st.query([f]),
        None => st.query([]),
    }
    .map_err(backend)?;
    while let Some(r) = rows.next().map_err(backend)? {
        let text = |i: usize| -> Result<&str, StoreError> {
            r.get_ref(i)
                .and_then(|v| {
                    v.as_str().map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(i, v.data_type(), Box::new(e))
                    })
                })
                .map_err(backend)
        };
        let seq: i64 = r.get(0).map_err(backend)?;
        scan.push_blocking(
            seq,
            [text(1)?, text(2)?, text(3)?, text(4)?, text(5)?, text(6)?],
        )?;
    }
    Ok(())
}

/// The whole audit: the chain (and the checkpoint `pins`), then the projection check.
pub(super) fn verify(conn: &Connection, pins: Pins) -> Result<AuditReport, StoreError> {
    snapshot(conn, || {
        let head = head(conn)?;
        let mut scan = Scan::start(ChainVerifier::with_pins(pins.clone()), pins, true);
        scan_events(conn, None, &mut scan)?;
        let scanned = scan.finish_blocking()?;
        let report = scanned
            .verifier
            .finish(head.as_ref().map(|(s, h)| (*s, h.as_str())));
        let p = scanned.projector.unwrap_or_default();
        let (incidents, containments) = stored_state(conn)?;
        Ok(report.with_projection(projection::compare(&p, &incidents, &containments)))
    })
}

fn stored_state(
    conn: &Connection,
) -> Result<(Vec<StoredIncident>, Vec<StoredContainment>), StoreError> {
    let mut st = conn
        .prepare("SELECT id, status, severity, level, body FROM incidents ORDER BY id")
        .map_err(backend)?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .map_err(backend)?;
    let mut incidents = Vec::new();
    for r in rows {
        let (id, status, severity, level, body) = r.map_err(backend)?;
        let body = stored_body_fast(&body);
        incidents.push(StoredIncident {
            id,
            status_column: status,
            severity_column: severity,
            level_column: level,
            body,
        });
    }
    let mut st = conn
        .prepare(
            "SELECT DISTINCT incident_id, subject_kind, subject FROM containments WHERE lifted_at IS NULL",
        )
        .map_err(backend)?;
    let rows = st
        .query_map([], |r| {
            Ok(StoredContainment {
                incident_id: r.get(0)?,
                subject_kind: r.get(1)?,
                subject: r.get(2)?,
            })
        })
        .map_err(backend)?;
    let containments = rows.collect::<Result<Vec<_>, _>>().map_err(backend)?;
    Ok((incidents, containments))
}

/// Verifies the chain from `after` (an already signed `(seq, hash)`) to the head: the event at
/// `after.0` must still carry `after.1`, and every later event must link and hash correctly.
pub(super) fn verified_head(
    conn: &Connection,
    after: Option<(i64, String)>,
) -> Result<HeadCheck, StoreError> {
    snapshot(conn, || {
        let head = head(conn)?;
        let v = match &after {
            None => ChainVerifier::default(),
            Some((seq, hash)) => {
                let stored: Option<String> = conn
                    .query_row("SELECT hash FROM events WHERE seq = ?1", [seq], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(backend)?;
                if stored.as_deref() != Some(hash.as_str()) {
                    return Ok(HeadCheck::Broken(AuditReport::bad(
                        0,
                        *seq,
                        format!(
                            "event {seq} no longer carries the hash this process signed: the chain was rewritten"
                        ),
                    )));
                }
                ChainVerifier::resume(*seq, hash)
            }
        };
        let from = after.as_ref().map_or(0, |a| a.0);
        let mut scan = Scan::start(v, Pins::new(), false);
        scan_events(conn, Some(from), &mut scan)?;
        let v = scan.finish_blocking()?.verifier;
        let last = v.last().map(|(s, h)| (s, h.to_string()));
        let report = v.finish(head.as_ref().map(|(s, h)| (*s, h.as_str())));
        Ok(match (report.ok, last) {
            (false, _) => HeadCheck::Broken(report),
            (true, None) => HeadCheck::Empty,
            (true, Some((seq, hash))) => HeadCheck::Head { seq, hash },
        })
    })
}

/// Containments in force for a user or session, as the events imply them. A `containments` row
/// that no event backs blocks nobody; a deleted row whose events say "contained" still blocks.
/// Disagreement with the rows is logged (and reported by `verify_audit_log`).
pub(super) fn active_containments(
    conn: &Connection,
    user: Option<String>,
    session: Option<String>,
) -> Result<Vec<ActiveContainment>, StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT seq, incident_id, at, data FROM events
             WHERE json_extract(data, '$.kind') IN ('contained', 'containment_lifted')
               AND json_extract(data, '$.subject') IN (?1, ?2)
             ORDER BY seq",
        )
        .map_err(backend)?;
    let rows = st
        .query_map(params![user, session], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .map_err(backend)?;
    let events = rows
        .map(|r| r.map_err(backend))
        .collect::<Result<Vec<_>, _>>()?;
    let rows = containment_rows(conn, &user, &session)?;
    implied_containments(events, &user, &session, &rows)
}

fn containment_rows(
    conn: &Connection,
    user: &Option<String>,
    session: &Option<String>,
) -> Result<std::collections::BTreeSet<(String, String, String)>, StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT incident_id, subject_kind, subject FROM containments
             WHERE lifted_at IS NULL AND ((subject_kind = 'user' AND subject = ?1)
                OR (subject_kind = 'session' AND subject = ?2))",
        )
        .map_err(backend)?;
    let rows = st
        .query_map(params![user, session], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}
