//! The SQLite side of auditing: verifying the chain (with signed checkpoint pins) and the
//! projection check in one read transaction, verifying only the events after the last
//! checkpoint, and containments as the events imply them (the `containments` table is an
//! index, not the authority).
//!
//! May import: `crate::domain`, `crate::store`.

use rusqlite::{Connection, OptionalExtension, params};

use super::{backend, from_micros};
use crate::domain::audit::{AuditReport, ChainVerifier, Pins};
use crate::domain::incident::{Event, EventKind};
use crate::domain::projection::{
    self, ContainmentFold, Projector, StoredBody, StoredContainment, StoredIncident,
};
use crate::store::{ActiveContainment, HeadCheck, StoreError};

/// Migration 5: finds the `contained` / `containment_lifted` events of a subject without a
/// scan, so screening can follow the events rather than the `containments` rows.
pub(super) const MIGRATION_6_CONTAINMENT_EVENTS: &str = "
CREATE INDEX IF NOT EXISTS events_containment_subject ON events (json_extract(data, '$.subject'))
    WHERE json_extract(data, '$.kind') IN ('contained', 'containment_lifted');
";

type Row = (i64, String, String, String, String, String, String);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
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

/// The event, or why it cannot be read (an edited time or incident id).
fn event((seq, incident_id, at, actor, data, prev_hash, hash): Row) -> Result<Event, String> {
    Ok(Event {
        seq,
        incident_id: incident_id
            .parse()
            .map_err(|_| format!("incident id '{}' is not valid", trunc(&incident_id)))?,
        at: chrono::DateTime::parse_from_rfc3339(&at)
            .map_err(|_| format!("time '{}' is not an RFC 3339 timestamp", trunc(&at)))?
            .with_timezone(&chrono::Utc),
        actor,
        data,
        prev_hash,
        hash,
    })
}

fn trunc(s: &str) -> String {
    crate::domain::incident::truncate_chars(s, 40)
}

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

/// The whole audit: the chain (and the checkpoint `pins`), then the projection check.
pub(super) fn verify(conn: &Connection, pins: Pins) -> Result<AuditReport, StoreError> {
    snapshot(conn, || {
        let head = head(conn)?;
        let mut st = conn
            .prepare(
                "SELECT seq, incident_id, at, actor, data, prev_hash, hash FROM events ORDER BY seq",
            )
            .map_err(backend)?;
        let rows = st.query_map([], row).map_err(backend)?;
        let mut v = ChainVerifier::with_pins(pins);
        let mut p = Projector::default();
        let mut intact = true;
        for r in rows {
            let r = r.map_err(backend)?;
            let write = format!("{}|{}", r.2, r.3);
            p.push(r.0, &r.1, &write, &r.4);
            if intact {
                let seq = r.0;
                intact = match event(r) {
                    Ok(e) => v.push(&e),
                    Err(why) => v.push_unreadable(seq, &why),
                };
            }
        }
        let report = v.finish(head.as_ref().map(|(s, h)| (*s, h.as_str())));
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
        let body = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .filter(|b| b.is_object())
            .map(|b| {
                let s = |k: &str| b.get(k).and_then(|v| v.as_str()).map(String::from);
                StoredBody {
                    status: s("status"),
                    severity: s("severity"),
                    level: b.get("escalation_level").and_then(|v| v.as_i64()),
                    owner: s("owner"),
                    resolution: s("resolution"),
                }
            });
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
        let mut v = match &after {
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
        let mut st = conn
            .prepare(
                "SELECT seq, incident_id, at, actor, data, prev_hash, hash FROM events WHERE seq > ?1 ORDER BY seq",
            )
            .map_err(backend)?;
        let rows = st.query_map([from], row).map_err(backend)?;
        for r in rows {
            let r = r.map_err(backend)?;
            let seq = r.0;
            let ok = match event(r) {
                Ok(e) => v.push(&e),
                Err(why) => v.push_unreadable(seq, &why),
            };
            if !ok {
                break;
            }
        }
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
    let mut fold = ContainmentFold::default();
    let mut bodies = std::collections::BTreeMap::new();
    for r in rows {
        let (seq, inc, at, data) = r.map_err(backend)?;
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
        let since = chrono::DateTime::parse_from_rfc3339(at)
            .map(|t| t.with_timezone(&chrono::Utc))
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
    let rows = containment_rows(conn, &user, &session)?;
    let implied: std::collections::BTreeSet<_> = out
        .iter()
        .map(|c| {
            (
                c.incident_id.as_str().to_string(),
                c.subject_kind.clone(),
                c.subject.clone(),
            )
        })
        .collect();
    if rows != implied {
        tracing::warn!(
            implied = implied.len(),
            rows = rows.len(),
            "the containments table disagrees with the timeline; screening follows the timeline (run verify-audit)"
        );
    }
    Ok(out)
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
