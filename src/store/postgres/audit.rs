//! The PostgreSQL side of auditing: the chain (with checkpoint pins) and the projection check
//! in one repeatable-read snapshot, streamed so a long chain is verified in constant memory;
//! verifying only what follows a signed head; containments as the events imply them. The event
//! rows go through the parallel scan of [`crate::store::audit_scan`].
//!
//! May import: `crate::domain`, `crate::store`.

use futures::{TryStreamExt, pin_mut};
use tokio_postgres::IsolationLevel;
use tokio_postgres::types::ToSql;

use super::pg_error;
use crate::domain::audit::{AuditReport, ChainVerifier, Pins};
use crate::domain::projection::{self, StoredContainment, StoredIncident};
use crate::store::audit_scan::{Scan, stored_body_fast};
use crate::store::records::implied_containments;
use crate::store::{ActiveContainment, HeadCheck, StoreError};

type Client = deadpool_postgres::Object;

/// The driver's client (a pooled one dereferences to it).
type PgClient = tokio_postgres::Client;

fn no_params() -> impl ExactSizeIterator<Item = &'static (dyn ToSql + Sync)> {
    std::iter::empty()
}

/// Streams every event row (after `from`, when given) in `seq` order into the parallel scan
/// (the text is borrowed from the row, not copied into per-row strings).
async fn scan_events(
    tx: &tokio_postgres::Transaction<'_>,
    from: Option<i64>,
    scan: &mut Scan,
) -> Result<(), StoreError> {
    // Without `from`, every row: an event inserted with seq 0 or below must fail the chain.
    const COLS: &str = "SELECT seq, incident_id, at, actor, data, prev_hash, hash FROM events";
    let rows = match from {
        Some(f) => {
            tx.query_raw(
                &format!("{COLS} WHERE seq > $1 ORDER BY seq"),
                [&f as &(dyn ToSql + Sync)],
            )
            .await
        }
        None => {
            tx.query_raw(&format!("{COLS} ORDER BY seq"), no_params())
                .await
        }
    }
    .map_err(pg_error)?;
    pin_mut!(rows);
    while let Some(r) = rows.try_next().await.map_err(pg_error)? {
        let text = |i: usize| r.try_get::<_, &str>(i).map_err(pg_error);
        let seq: i64 = r.try_get(0).map_err(pg_error)?;
        scan.push(
            seq,
            [text(1)?, text(2)?, text(3)?, text(4)?, text(5)?, text(6)?],
        )
        .await?;
    }
    Ok(())
}

async fn head(tx: &tokio_postgres::Transaction<'_>) -> Result<Option<(i64, String)>, StoreError> {
    Ok(tx
        .query_opt("SELECT seq, hash FROM chain_head WHERE id = 1", &[])
        .await
        .map_err(pg_error)?
        .map(|r| (r.get(0), r.get(1))))
}

/// The whole audit in one snapshot: the chain (and `pins`), then the projection check.
pub(super) async fn verify(c: &mut PgClient, pins: Pins) -> Result<AuditReport, StoreError> {
    let tx = c
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg_error)?;
    let head = head(&tx).await?;
    let mut scan = Scan::start(ChainVerifier::with_pins(pins.clone()), pins, true);
    scan_events(&tx, None, &mut scan).await?;
    let scanned = scan.finish().await?;
    let p = scanned.projector.unwrap_or_default();
    let report = scanned
        .verifier
        .finish(head.as_ref().map(|(s, h)| (*s, h.as_str())));
    let mut incidents = Vec::new();
    {
        let rows = tx
            .query_raw(
                "SELECT id, status, severity, level, body FROM incidents ORDER BY id",
                no_params(),
            )
            .await
            .map_err(pg_error)?;
        pin_mut!(rows);
        while let Some(r) = rows.try_next().await.map_err(pg_error)? {
            incidents.push(StoredIncident {
                id: r.get(0),
                status_column: r.get(1),
                severity_column: r.get(2),
                level_column: i64::from(r.get::<_, i32>(3)),
                body: stored_body_fast(r.get::<_, &str>(4)),
            });
        }
    }
    let containments = tx
        .query(
            "SELECT DISTINCT incident_id, subject_kind, subject FROM containments WHERE lifted_at IS NULL",
            &[],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| StoredContainment {
            incident_id: r.get(0),
            subject_kind: r.get(1),
            subject: r.get(2),
        })
        .collect::<Vec<_>>();
    tx.commit().await.map_err(pg_error)?;
    Ok(report.with_projection(projection::compare(&p, &incidents, &containments)))
}

/// Verifies the chain from `after` (an already signed `(seq, hash)`) to the head.
pub(super) async fn verified_head(
    c: &mut Client,
    after: Option<(i64, String)>,
) -> Result<HeadCheck, StoreError> {
    let tx = c
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg_error)?;
    let head = head(&tx).await?;
    let v = match &after {
        None => ChainVerifier::default(),
        Some((seq, hash)) => {
            let stored: Option<String> = tx
                .query_opt("SELECT hash FROM events WHERE seq = $1", &[seq])
                .await
                .map_err(pg_error)?
                .map(|r| r.get(0));
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
    scan_events(&tx, Some(from), &mut scan).await?;
    let v = scan.finish().await?.verifier;
    tx.commit().await.map_err(pg_error)?;
    let last = v.last().map(|(s, h)| (s, h.to_string()));
    let report = v.finish(head.as_ref().map(|(s, h)| (*s, h.as_str())));
    Ok(match (report.ok, last) {
        (false, _) => HeadCheck::Broken(report),
        (true, None) => HeadCheck::Empty,
        (true, Some((seq, hash))) => HeadCheck::Head { seq, hash },
    })
}

/// Containments in force for a user or session, as the events imply them.
pub(super) async fn active_containments(
    c: &Client,
    user: Option<String>,
    session: Option<String>,
) -> Result<Vec<ActiveContainment>, StoreError> {
    let st = c
        .prepare_cached(
            "SELECT seq, incident_id, at, data FROM events
             WHERE ((data::jsonb) ->> 'kind') IN ('contained', 'containment_lifted')
               AND ((data::jsonb) ->> 'subject') IN ($1, $2)
             ORDER BY seq",
        )
        .await
        .map_err(pg_error)?;
    let events = c
        .query(&st, &[&user, &session])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let st = c
        .prepare_cached(
            "SELECT incident_id, subject_kind, subject FROM containments
             WHERE lifted_at IS NULL AND ((subject_kind = 'user' AND subject = $1)
                OR (subject_kind = 'session' AND subject = $2))",
        )
        .await
        .map_err(pg_error)?;
    let rows = c
        .query(&st, &[&user, &session])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    implied_containments(events, &user, &session, &rows)
}
