//! SQLite adapter of [`Store`]: one file in WAL mode, versioned migrations,
//! safe for several server processes on one host.
//!
//! Writes go to one writer thread that groups whatever is queued into a
//! single `BEGIN IMMEDIATE` transaction (group commit, one savepoint per job so
//! a refused change rolls back alone) and answers each caller only after the
//! commit. `synchronous=NORMAL` in WAL mode keeps every committed transaction
//! across a killed process (the OS holds the written pages); set
//! `AI_INCIDENT_SQLITE_SYNC=full` to also survive power loss.
//! Reads use a small pool of read-only connections on the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;

use super::{
    ActiveContainment, Cursor, ImportBatch, ListQuery, Mutation, OutboxItem, OutboxRow,
    OutboxUpdate, Page, RepeatDetection, Store, StoreError, Upserted,
};
use crate::domain::audit::{AuditReport, Pins};

use crate::domain::incident::{Event, EventKind, Evidence, Incident, IncidentId};

mod audit_queries;
mod rows;
mod schema;
mod writer;

use crate::store::records::{
    INCIDENT_COLUMNS, IntoStoreError, backend, check_link, from_micros, micros, outbox_item,
    to_event,
};
use rows::{
    append_events, assemble, load_incident, query_incidents, row_event, row_incident,
    save_counters, save_incident, side_tables, sync_evidence,
};
use schema::migrate;
#[cfg(test)]
use writer::CACHE_HITS;
use writer::{Job, LINGER_MAX, Lingering, Msg, cache_put, cache_take, in_savepoint, writer_loop};

/// A SQLite failure: a busy or locked database (after the busy timeout) is
/// [`StoreError::Unavailable`], anything else [`StoreError::Database`]; the driver's error is
/// the source either way.
impl IntoStoreError for rusqlite::Error {
    fn into_store_error(self) -> StoreError {
        let busy = matches!(
            self.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        if busy {
            StoreError::Unavailable {
                what: "the SQLite database stayed locked by another process".into(),
                source: Some(Arc::new(self)),
            }
        } else {
            StoreError::Database(Arc::new(self))
        }
    }
}

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    /// Unacknowledged writes waiting for the writer's next commit (see [`Self::enqueue`]).
    lingering: Lingering,
    readers: Arc<Mutex<Vec<Connection>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn configure(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(Duration::from_secs(10))?;
    let sync = match std::env::var("AI_INCIDENT_SQLITE_SYNC").as_deref() {
        Ok("full") | Ok("FULL") => "FULL",
        _ => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON;"
    ))?;
    Ok(())
}

/// Applies pending migrations to the file at `path` (creating it if needed); returns the
/// versions applied.
///
/// # Errors
/// [`StoreError::Open`] when the file cannot be created or opened, or its schema is newer than
/// this binary; [`StoreError::Migration`] when a migration fails.
pub fn migrate_file(path: impl AsRef<Path>) -> Result<Vec<i64>, StoreError> {
    let mut conn = open_file(path.as_ref())?;
    migrate(&mut conn)
}

/// The read-write connection to `path`, its folder and file created if needed, configured.
fn open_file(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
            what: format!("cannot create the folder {}", dir.display()),
            source: Some(Arc::new(e)),
        })?;
    }
    let conn = Connection::open(path).map_err(|e| StoreError::Open {
        what: format!("cannot open or create the SQLite file {}", path.display()),
        source: Some(Arc::new(e)),
    })?;
    configure(&conn).map_err(backend)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    ///
    /// # Errors
    /// As [`migrate_file`].
    pub fn open(path: impl AsRef<Path>) -> Result<Arc<SqliteStore>, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut conn = open_file(&path)?;
        let applied = migrate(&mut conn)?;
        if !applied.is_empty() {
            tracing::info!(db = %path.display(), ?applied, "applied SQLite migrations");
        }
        let (tx, rx) = mpsc::channel::<Msg>();
        let lingering = Lingering::default();
        let queue = lingering.clone();
        let handle = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, queue))
            .map_err(backend)?;
        Ok(Arc::new(SqliteStore {
            path,
            tx: Mutex::new(Some(tx)),
            lingering,
            readers: Arc::new(Mutex::new(Vec::new())),
            writer: Mutex::new(Some(handle)),
        }))
    }

    /// Stops the writer after the queued jobs are committed.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(h) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = h.join();
        }
    }

    async fn submit<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply_tx, reply_rx) = oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(move |conn: &Connection| {
            let r = in_savepoint(conn, op);
            Box::new(move |commit_err: Option<&StoreError>| {
                let out = match (commit_err, r) {
                    (Some(e), _) => Err(e.clone()),
                    (None, r) => r,
                };
                let _ = reply_tx.send(out);
            })
        });
        let sent = self.send_job(job)?;
        if !sent {
            return Err(StoreError::unavailable("the store is closed", None));
        }
        reply_rx.await.map_err(|_| {
            StoreError::unavailable("the SQLite writer stopped before the commit", None)
        })?
    }

    /// Hands a job to the writer thread; false when the store is closed.
    fn send_job(&self, job: Job) -> Result<bool, StoreError> {
        Ok(self
            .tx
            .lock()
            .map_err(backend)?
            .as_ref()
            .map(|tx| tx.send(Msg::Job(job)).is_ok())
            .unwrap_or(false))
    }

    /// Queues a write for the next group commit without waiting for it.
    /// Only for records the caller is never told were stored (activity):
    /// a process killed before the commit may lose them (at most [`writer::LINGER`] of them,
    /// or [`LINGER_MAX`] rows); an error is logged; closing the store commits them.
    ///
    /// The write waits in the lingering queue: it is committed with the next waited-for write,
    /// or within [`writer::LINGER`] — the writer is woken once per batch of such writes, not
    /// once per write (at one screening at a time, that wake-up and a commit per row were
    /// about a quarter of a benign `screen_prompt`'s time).
    ///
    /// `op` must be a single statement: it runs without a savepoint of its own (SQLite undoes
    /// a failed statement by itself, leaving the rest of the batch intact), which saves two
    /// statements per record on the hottest write.
    fn enqueue(
        &self,
        op: impl FnOnce(&Connection) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<(), StoreError> {
        let job: Job = Box::new(move |conn: &Connection| {
            let r = op(conn);
            Box::new(move |commit_err: Option<&StoreError>| {
                if let Some(e) = commit_err.cloned().or(r.err()) {
                    tracing::warn!(error = %e, "queued write failed");
                }
            })
        });
        // Under the sender's lock, so that nothing joins the queue after `close` took the
        // sender (the writer's last commit would miss it).
        let tx = self.tx.lock().map_err(backend)?;
        let Some(tx) = tx.as_ref() else {
            return Err(StoreError::unavailable("the store is closed", None));
        };
        let queued = {
            let mut q = self.lingering.lock().map_err(backend)?;
            q.push(job);
            q.len()
        };
        let wake = match queued {
            1 => Some(Msg::Queued),
            n if n == LINGER_MAX => Some(Msg::Full),
            _ => None,
        };
        if let Some(m) = wake
            && tx.send(m).is_err()
        {
            return Err(StoreError::unavailable("the SQLite writer stopped", None));
        }
        Ok(())
    }

    async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pool = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match pool.lock().map_err(backend)?.pop() {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(backend)?;
                    c.busy_timeout(Duration::from_secs(10)).map_err(backend)?;
                    c
                }
            };
            let r = op(&conn);
            if let Ok(mut p) = pool.lock()
                && p.len() < 8
            {
                p.push(conn);
            }
            r
        })
        .await
        .map_err(backend)?
    }
}

/// Runs `f` on the stored incident `inc` and saves the result: body, columns, and the evidence
/// rows that changed.
fn change(
    conn: &Connection,
    inc: &mut Incident,
    f: Mutation,
) -> Result<Vec<EventKind>, StoreError> {
    let before = inc.evidence().to_vec();
    let events = f(inc)?;
    save_changed(conn, inc, &before, true)?;
    Ok(events)
}

/// Saves a changed stored incident: the whole row when `body_changed`, else only the counter
/// columns (a repeat); then the evidence rows that differ from `before`.
fn save_changed(
    conn: &Connection,
    inc: &mut Incident,
    before: &[Evidence],
    body_changed: bool,
) -> Result<(), StoreError> {
    if body_changed {
        save_incident(conn, inc, false)?;
    } else {
        save_counters(conn, inc)?;
    }
    sync_evidence(conn, inc.id().as_str(), before, inc.evidence())
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert(
        &self,
        mut incident: Incident,
        events: Vec<EventKind>,
        actor: String,
        now: DateTime<Utc>,
    ) -> Result<Incident, StoreError> {
        self.submit(move |conn| {
            save_incident(conn, &mut incident, true)?;
            append_events(conn, incident.id(), &actor, &now, &events)?;
            Ok(incident)
        })
        .await
    }

    async fn insert_idempotent(
        &self,
        key: String,
        fingerprint: String,
        mut incident: Incident,
        events: Vec<EventKind>,
        actor: String,
        now: DateTime<Utc>,
    ) -> Result<Upserted, StoreError> {
        self.submit(move |conn| {
            let seen: Option<(String, String)> = conn
                .prepare_cached("SELECT fingerprint, incident_id FROM idempotency_keys WHERE key = ?1")
                .and_then(|mut st| {
                    st.query_row([&key], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(backend)?;
            if let Some((fp, id)) = seen {
                if fp != fingerprint {
                    return Err(StoreError::Domain(crate::domain::incident::DomainError::Invalid {
                        field: "Idempotency-Key",
                        message: format!(
                            "was already used for a different report (incident {id}); send a new key for a new report"
                        ),
                    }));
                }
                let inc = load_incident(conn, &id)?
                    .ok_or_else(|| backend(format!("incident {id} of an idempotency key vanished")))?;
                return Ok(Upserted {
                    incident: inc,
                    created: false,
                });
            }
            save_incident(conn, &mut incident, true)?;
            append_events(conn, incident.id(), &actor, &now, &events)?;
            conn.prepare_cached(
                "INSERT INTO idempotency_keys (key, fingerprint, incident_id, created_at) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut st| st.execute(params![key, fingerprint, incident.id().as_str(), micros(&now)]))
            .map_err(backend)?;
            Ok(Upserted {
                incident,
                created: true,
            })
        })
        .await
    }

    async fn get(&self, id: &IncidentId) -> Result<Option<Incident>, StoreError> {
        let id = id.as_str().to_string();
        self.read(move |conn| load_incident(conn, &id)).await
    }

    async fn timeline(&self, id: &IncidentId) -> Result<Vec<Event>, StoreError> {
        let id = id.as_str().to_string();
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT seq, incident_id, at, actor, data, prev_hash, hash FROM events WHERE incident_id = ?1 ORDER BY seq",
                )
                .map_err(backend)?;
            let rows = st.query_map([id], row_event).map_err(backend)?;
            rows.map(|r| r.map_err(backend).and_then(to_event)).collect()
        })
        .await
    }

    async fn list(&self, q: ListQuery) -> Result<Page, StoreError> {
        self.read(move |conn| {
            let mut sql = format!("SELECT {INCIDENT_COLUMNS}, created_at FROM incidents WHERE 1=1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(s) = q.status {
                sql.push_str(" AND status = ?");
                args.push(s.as_str().to_string().into());
            }
            if q.open_only {
                sql.push_str(" AND status NOT IN ('resolved', 'closed')");
            }
            if let Some(s) = q.severity {
                sql.push_str(" AND severity = ?");
                args.push(s.as_str().to_string().into());
            }
            if let Some(t) = q.incident_type {
                sql.push_str(" AND incident_type = ?");
                args.push(t.as_str().to_string().into());
            }
            if let Some(since) = q.since {
                sql.push_str(" AND created_at >= ?");
                args.push(micros(&since).into());
            }
            if let Some(c) = &q.cursor {
                // The plain `created_at <= ?` bound lets SQLite seek the index to the cursor;
                // the OR alone made it scan from the newest row (41 ms at 200k incidents, half
                // way down; 0.1 ms with the bound).
                sql.push_str(
                    " AND created_at <= ? AND (created_at < ? OR (created_at = ? AND id < ?))",
                );
                args.push(c.created_at_micros.into());
                args.push(c.created_at_micros.into());
                args.push(c.created_at_micros.into());
                args.push(c.id.clone().into());
            }
            sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?");
            let limit = i64::from(q.limit.max(1));
            args.push((limit + 1).into());
            let mut st = conn.prepare(&sql).map_err(backend)?;
            let rows = st
                .query_map(rusqlite::params_from_iter(args), |r| {
                    Ok((row_incident(r)?, r.get::<_, i64>(6)?))
                })
                .map_err(backend)?;
            let mut items = Vec::new();
            let mut last = None;
            let mut more = false;
            for row in rows {
                let (stored, created) = row.map_err(backend)?;
                if items.len() as i64 == limit {
                    more = true;
                    break;
                }
                let id = stored.id.clone();
                items.push(assemble(conn, stored)?);
                last = Some(Cursor {
                    created_at_micros: created,
                    id,
                });
            }
            Ok(Page {
                items,
                next_cursor: if more { last } else { None },
            })
        })
        .await
    }

    async fn update(
        &self,
        id: &IncidentId,
        actor: String,
        now: DateTime<Utc>,
        f: Mutation,
    ) -> Result<Incident, StoreError> {
        let id = id.clone();
        self.submit(move |conn| {
            let mut inc = load_incident(conn, id.as_str())?
                .ok_or_else(|| StoreError::NotFound(id.clone()))?;
            let events = change(conn, &mut inc, f)?;
            append_events(conn, inc.id(), &actor, &now, &events)?;
            Ok(inc)
        })
        .await
    }

    async fn upsert_detection(
        &self,
        dedup_key: String,
        new: super::NewDetection,
        on_repeat: RepeatDetection,
        actor: String,
        now: DateTime<Utc>,
    ) -> Result<Upserted, StoreError> {
        self.submit(move |conn| {
            let existing: Option<(String, i64)> = conn
                .prepare_cached(
                    "SELECT id, version FROM incidents WHERE dedup_key = ?1 AND status NOT IN ('resolved', 'closed')
                     ORDER BY created_at DESC LIMIT 1",
                )
                .and_then(|mut st| {
                    st.query_row([&dedup_key], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(backend)?;
            match existing {
                Some((id, version)) => {
                    let mut inc = match cache_take(&id, version) {
                        Some(inc) => inc,
                        None => load_incident(conn, &id)?
                            .ok_or_else(|| backend(format!("incident {id} vanished")))?,
                    };
                    let before = inc.evidence().to_vec();
                    let (events, body_changed) = on_repeat.apply(&mut inc, now);
                    save_changed(conn, &mut inc, &before, body_changed)?;
                    append_events(conn, inc.id(), &actor, &now, &events)?;
                    cache_put(&id, version + 1, &inc);
                    Ok(Upserted {
                        incident: inc,
                        created: false,
                    })
                }
                None => {
                    let (mut inc, events) = new();
                    save_incident(conn, &mut inc, true)?;
                    append_events(conn, inc.id(), &actor, &now, &events)?;
                    cache_put(inc.id().as_str(), 0, &inc);
                    Ok(Upserted {
                        incident: inc,
                        created: true,
                    })
                }
            }
        })
        .await
    }

    async fn record_activity(&self, a: super::Activity) -> Result<(), StoreError> {
        // Enqueued for the next group commit; the caller does not wait for it.
        self.enqueue(move |conn| {
            conn.prepare_cached(
                "INSERT INTO screen_activity (at, user_id, session_id, source, verdict, categories, risk, incident_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    micros(&a.at),
                    a.user_id,
                    a.session_id,
                    a.source,
                    a.verdict,
                    a.categories.join(","),
                    f64::from(a.risk),
                    a.incident_id
                ])
            })
            .map_err(backend)?;
            Ok(())
        })
    }

    async fn activity_count(
        &self,
        user_id: Option<String>,
        session_id: Option<String>,
        flagged_only: bool,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        // On the writer, after the activity records this process queued (they are not waited
        // for): a read connection could count before the previous screening's record commits.
        self.submit(move |conn| {
            let flagged = if flagged_only {
                " AND verdict <> 'allow'"
            } else {
                ""
            };
            let (col, v) = match (user_id, session_id) {
                (Some(u), _) => ("user_id", u),
                (None, Some(s)) => ("session_id", s),
                (None, None) => return Ok(0),
            };
            let sql = format!(
                "SELECT COUNT(*) FROM screen_activity WHERE {col} = ?1 AND at >= ?2{flagged}"
            );
            conn.prepare_cached(&sql)
                .and_then(|mut st| st.query_row(params![v, micros(&since)], |r| r.get::<_, i64>(0)))
                .map(|n| n.max(0) as u64)
                .map_err(backend)
        })
        .await
    }

    async fn find_open_by_dedup(&self, dedup_key: &str) -> Result<Option<Incident>, StoreError> {
        let key = dedup_key.to_string();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE dedup_key = ?1 AND status NOT IN ('resolved', 'closed')
                 ORDER BY created_at DESC LIMIT 1"
            );
            Ok(query_incidents(conn, &sql, [&key])?.into_iter().next())
        })
        .await
    }

    async fn changes_after(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<(i64, Vec<super::Change>), StoreError> {
        self.read(move |conn| {
            let head: i64 = conn
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
                .map_err(backend)?;
            let Some(after) = after else {
                return Ok((head, Vec::new()));
            };
            let mut st = conn
                .prepare_cached(
                    "SELECT seq, incident_id, json_extract(data, '$.kind'), json_extract(data, '$.status')
                     FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(params![after, limit as i64], |r| {
                    Ok(super::Change {
                        seq: r.get(0)?,
                        incident_id: r.get(1)?,
                        kind: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                        status: r.get(3)?,
                    })
                })
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            Ok((head, rows))
        })
        .await
    }

    async fn verify_audit_log(&self, pins: Pins) -> Result<AuditReport, StoreError> {
        self.read(move |conn| audit_queries::verify(conn, pins))
            .await
    }

    async fn verified_head(
        &self,
        after: Option<(i64, String)>,
    ) -> Result<super::HeadCheck, StoreError> {
        self.read(move |conn| audit_queries::verified_head(conn, after))
            .await
    }

    async fn claim_escalation(
        &self,
        id: &IncidentId,
        from_level: u8,
        actor: String,
        now: DateTime<Utc>,
        f: Mutation,
    ) -> Result<Option<Incident>, StoreError> {
        let id = id.clone();
        self.submit(move |conn| {
            // The claim: only one writer can move the level away from `from_level`.
            let claimed = conn
                .prepare_cached(
                    "UPDATE incidents SET level = level + 1
                     WHERE id = ?1 AND level = ?2 AND status NOT IN ('resolved', 'closed')",
                )
                .and_then(|mut st| st.execute(params![id.as_str(), from_level]))
                .map_err(backend)?;
            if claimed != 1 {
                return Ok(None);
            }
            let mut inc = load_incident(conn, id.as_str())?
                .ok_or_else(|| StoreError::NotFound(id.clone()))?;
            let events = change(conn, &mut inc, f)?;
            if inc.escalation_level() <= from_level {
                return Err(StoreError::Corrupt(format!(
                    "escalation claim on {id} did not raise the level"
                )));
            }
            append_events(conn, inc.id(), &actor, &now, &events)?;
            Ok(Some(inc))
        })
        .await
    }

    async fn claim_outbox(
        &self,
        owner: String,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let t = micros(&now);
        let until = t.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 2));
        self.submit(move |conn| {
            let mut st = conn
                .prepare_cached(
                    "UPDATE outbox SET lease_owner = ?1, lease_until = ?2, updated_at = ?3
                     WHERE rowid IN (
                        SELECT rowid FROM outbox
                        WHERE status IN ('pending', 'retrying') AND next_attempt_at <= ?3
                          AND (lease_until IS NULL OR lease_until < ?3)
                        ORDER BY next_attempt_at, rowid LIMIT ?4)
                     RETURNING id, channel, incident_id, payload, attempts, created_at, next_attempt_at, rowid",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(params![owner, until, t, i64::from(limit)], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, i64>(6)?,
                        r.get::<_, i64>(7)?,
                    ))
                })
                .map_err(backend)?;
            // RETURNING has no defined order: queue order, as the claim picked them.
            let mut claimed = rows.collect::<Result<Vec<_>, _>>().map_err(backend)?;
            claimed.sort_by_key(|r| (r.6, r.7));
            let mut out = Vec::with_capacity(claimed.len());
            for (nid, ch, inc, payload, attempts, created, _, _) in claimed {
                out.push(outbox_item(nid, ch, inc, payload, attempts, created)?);
            }
            Ok(out)
        })
        .await
    }

    async fn finish_outbox(
        &self,
        item: &OutboxItem,
        owner: String,
        update: OutboxUpdate,
        now: DateTime<Utc>,
        f: Mutation,
    ) -> Result<Option<Incident>, StoreError> {
        let (nid, channel, id) = (
            item.notification_id.clone(),
            item.channel.clone(),
            item.incident_id.clone(),
        );
        self.submit(move |conn| {
            let t = micros(&now);
            let changed = conn
                .prepare_cached(
                    "UPDATE outbox SET status = ?4, attempts = ?5, next_attempt_at = ?6, last_error = ?7,
                        lease_owner = NULL, lease_until = NULL, updated_at = ?8
                     WHERE id = ?1 AND channel = ?2 AND lease_owner = ?3 AND status IN ('pending', 'retrying')",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        nid,
                        channel,
                        owner,
                        update.status.as_str(),
                        update.attempts,
                        update.next_attempt_at.as_ref().map(micros).unwrap_or(t),
                        update.last_error,
                        t
                    ])
                })
                .map_err(backend)?;
            if changed != 1 {
                return Ok(None);
            }
            let mut inc = load_incident(conn, id.as_str())?
                .ok_or_else(|| StoreError::NotFound(id.clone()))?;
            let events = change(conn, &mut inc, f)?;
            append_events(conn, inc.id(), "notifier", &now, &events)?;
            Ok(Some(inc))
        })
        .await
    }

    async fn active_containments(
        &self,
        user: Option<String>,
        session: Option<String>,
    ) -> Result<Vec<ActiveContainment>, StoreError> {
        self.read(move |conn| audit_queries::active_containments(conn, user, session))
            .await
    }

    async fn active_containments_where(
        &self,
        subject_kind: Option<String>,
        subject: Option<String>,
        incident: Option<IncidentId>,
    ) -> Result<Vec<ActiveContainment>, StoreError> {
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT incident_id, subject_kind, subject, action, reason, created_at FROM containments
                     WHERE lifted_at IS NULL AND (?1 IS NULL OR subject_kind = ?1)
                        AND (?2 IS NULL OR subject = ?2) AND (?3 IS NULL OR incident_id = ?3)
                     ORDER BY created_at",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(params![subject_kind, subject, incident.as_ref().map(|i| i.as_str().to_string())], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, i64>(5)?,
                    ))
                })
                .map_err(backend)?;
            let mut out = Vec::new();
            for row in rows {
                let (inc, kind, subject, action, reason, at) = row.map_err(backend)?;
                out.push(ActiveContainment {
                    incident_id: inc.parse().map_err(|e| backend(format!("containment: {e}")))?,
                    subject_kind: kind,
                    subject,
                    action,
                    reason,
                    since: from_micros(at),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn export_incidents(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<Incident>, StoreError> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2"
            );
            query_incidents(conn, &sql, params![after, i64::from(limit)])
        })
        .await
    }

    async fn export_events(&self, after_seq: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT seq, incident_id, at, actor, data, prev_hash, hash FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(params![after_seq, i64::from(limit)], row_event)
                .map_err(backend)?;
            rows.map(|r| r.map_err(backend).and_then(to_event)).collect()
        })
        .await
    }

    async fn export_outbox(&self) -> Result<Vec<OutboxRow>, StoreError> {
        self.read(move |conn| {
            let mut st = conn
                .prepare(
                    "SELECT id, channel, incident_id, payload, status, attempts, next_attempt_at, last_error, created_at, updated_at
                     FROM outbox ORDER BY created_at, id, channel",
                )
                .map_err(backend)?;
            let rows = st
                .query_map([], |r| {
                    Ok(OutboxRow {
                        id: r.get(0)?,
                        channel: r.get(1)?,
                        incident_id: r.get(2)?,
                        payload: r.get(3)?,
                        status: r.get(4)?,
                        attempts: r.get(5)?,
                        next_attempt_at: r.get(6)?,
                        last_error: r.get(7)?,
                        created_at: r.get(8)?,
                        updated_at: r.get(9)?,
                    })
                })
                .map_err(backend)?;
            rows.map(|r| r.map_err(backend)).collect()
        })
        .await
    }

    async fn import(&self, mut batch: ImportBatch) -> Result<(), StoreError> {
        self.submit(move |conn| {
            for inc in &mut batch.incidents {
                save_incident(conn, inc, true)?;
            }
            if !batch.events.is_empty() {
                let mut head: (i64, String) = conn
                    .query_row("SELECT seq, hash FROM chain_head WHERE id = 1", [], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()
                    .map_err(backend)?
                    .unwrap_or((0, crate::domain::audit::GENESIS_HASH.to_string()));
                let mut ins = conn
                    .prepare_cached(
                        "INSERT INTO events (seq, incident_id, at, actor, data, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .map_err(backend)?;
                for e in &batch.events {
                    check_link(&head, e)?;
                    let at_s = crate::domain::audit::hash_time(&e.at);
                    ins.execute(params![
                        e.seq,
                        e.incident_id.as_str(),
                        at_s,
                        e.actor,
                        e.data,
                        e.prev_hash,
                        e.hash
                    ])
                    .map_err(backend)?;
                    let kind: EventKind = serde_json::from_str(&e.data).map_err(|err| {
                        StoreError::Domain(crate::domain::incident::DomainError::Invalid {
                            field: "event",
                            message: format!("event {} data is not an event ({err})", e.seq),
                        })
                    })?;
                    side_tables(conn, &e.incident_id, &e.at, &kind, &e.data)?;
                    head = (e.seq, e.hash.clone());
                }
                conn.execute(
                    "INSERT INTO chain_head (id, seq, hash) VALUES (1, ?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                    params![head.0, head.1],
                )
                .map_err(backend)?;
            }
            for o in &batch.outbox {
                conn.prepare_cached(
                    "INSERT INTO outbox (id, channel, incident_id, payload, status, attempts, next_attempt_at, last_error, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (id, channel) DO UPDATE SET incident_id = excluded.incident_id,
                        payload = excluded.payload, status = excluded.status, attempts = excluded.attempts,
                        next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error,
                        created_at = excluded.created_at, updated_at = excluded.updated_at,
                        lease_owner = NULL, lease_until = NULL",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        o.id,
                        o.channel,
                        o.incident_id,
                        o.payload,
                        o.status,
                        o.attempts,
                        o.next_attempt_at,
                        o.last_error,
                        o.created_at,
                        o.updated_at
                    ])
                })
                .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Activity, Store};

    fn activity(user: &str) -> Activity {
        Activity {
            at: Utc::now(),
            user_id: Some(user.into()),
            session_id: None,
            source: "user".into(),
            verdict: "flag".into(),
            categories: vec!["jailbreak".into()],
            risk: 0.8,
            incident_id: None,
        }
    }

    fn detection(key: &str, now: DateTime<Utc>) -> crate::store::NewDetection {
        use crate::domain::incident::*;
        let key = key.to_owned();
        Box::new(move || {
            Incident::open(
                NewIncident {
                    severity: crate::domain::incident::Severity::Medium,
                    detection_method: DetectionMethod::Screening,
                    confidence: Some(0.712_345_7),
                    evidence: vec![Evidence {
                        rule: "r".into(),
                        category: "jailbreak".into(),
                        start: 1,
                        end: 5,
                        excerpt: "é excerpt \u{1F600}".into(),
                    }],
                    dedup_key: Some(key),
                    ..sample_new_incident()
                },
                now,
            )
        })
    }

    fn repeat(_now: DateTime<Utc>) -> RepeatDetection {
        RepeatDetection {
            evidence: vec![crate::domain::incident::Evidence {
                rule: "again".into(),
                category: "jailbreak".into(),
                start: 0,
                end: 3,
                excerpt: "again".into(),
            }],
            ..RepeatDetection::default()
        }
    }

    /// Repeats served from the writer's copy of an incident give exactly what re-reading
    /// the stored body gives, and a change by any other writer is seen by the next repeat.
    #[tokio::test]
    async fn repeat_detections_match_the_stored_incident() {
        let dir = std::env::temp_dir().join(format!("aim-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = SqliteStore::open(dir.join("t.db")).unwrap();
        let now = Utc::now();
        let up = |store: Arc<SqliteStore>| async move {
            store
                .upsert_detection(
                    "k".into(),
                    detection("k", now),
                    repeat(now),
                    "t".into(),
                    now,
                )
                .await
                .unwrap()
        };
        let hits_before = CACHE_HITS.load(std::sync::atomic::Ordering::Relaxed);
        let first = up(store.clone()).await;
        assert!(first.created);
        let id = first.incident.id().clone();
        for n in 2..=4u32 {
            let r = up(store.clone()).await;
            assert!(!r.created);
            assert_eq!(r.incident.occurrences(), n);
            let stored = store.get(&id).await.unwrap().unwrap();
            assert_eq!(
                stored, r.incident,
                "repeat {n} differs from the stored body"
            );
        }
        assert!(
            CACHE_HITS.load(std::sync::atomic::Ordering::Relaxed) >= hits_before + 3,
            "the three repeats should have used the writer's copy"
        );
        // Another writer changes the incident (tags + version bump) ...
        store
            .update(
                &id,
                "someone".into(),
                now,
                Box::new(|inc| {
                    inc.add_tag("changed-elsewhere");
                    Ok(Vec::new())
                }),
            )
            .await
            .unwrap();
        // ... and the next repeat starts from that change, not from the writer's copy.
        let r = up(store.clone()).await;
        assert!(r.incident.tags().iter().any(|t| t == "changed-elsewhere"));
        assert_eq!(r.incident.occurrences(), 5);
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A queued single-statement write that fails (no savepoint of its own) costs only
    /// itself: the records queued around it in the same batch are committed.
    #[tokio::test]
    async fn a_failing_queued_write_does_not_spoil_its_batch() {
        let (dir, path) = fresh_dir("enqueue");
        let store = SqliteStore::open(&path).unwrap();
        store.record_activity(activity("u1")).await.unwrap();
        // Its first row is valid, its second breaks NOT NULL: SQLite must undo both.
        let now = micros(&Utc::now());
        store
            .enqueue(move |conn| {
                conn.execute(
                    "INSERT INTO screen_activity (at, user_id, source, verdict, categories, risk)
                     VALUES (?1, 'u1', 'user', 'flag', '', 0.5), (NULL, 'u1', 'user', 'flag', '', 0.5)",
                    [now],
                )
                .map(|_| ())
                .map_err(backend)
            })
            .unwrap();
        store.record_activity(activity("u1")).await.unwrap();
        // A waited-for write after them: once it is committed, so are they.
        store.submit(|_| Ok(())).await.unwrap();
        let n = store
            .activity_count(
                Some("u1".into()),
                None,
                true,
                Utc::now() - chrono::Duration::hours(1),
            )
            .await
            .unwrap();
        assert_eq!(n, 2);
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An empty folder of this test process (`aim-TAG-PID`) and the database path in it.
    fn fresh_dir(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("aim-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("t.db");
        (dir, path)
    }

    fn rows_seen_by_another_connection(path: &std::path::Path, user: &str) -> i64 {
        Connection::open(path)
            .and_then(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM screen_activity WHERE user_id = ?1",
                    [user],
                    |r| r.get(0),
                )
            })
            .unwrap()
    }

    /// A queued write that no waited-for write follows is committed on its own, within the
    /// linger time (seen from another connection, as another process would see it).
    #[tokio::test]
    async fn a_lone_queued_write_is_committed_within_the_linger_time() {
        let (dir, path) = fresh_dir("linger1");
        let store = SqliteStore::open(&path).unwrap();
        let t = std::time::Instant::now();
        store.record_activity(activity("lone")).await.unwrap();
        let mut seen = 0;
        while seen == 0 && t.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(2)).await;
            seen = rows_seen_by_another_connection(&path, "lone");
        }
        assert_eq!(seen, 1, "not committed after {:?}", t.elapsed());
        // The writer waits for company first: not before the linger time (minus the sleep step).
        assert!(
            t.elapsed() >= writer::LINGER - Duration::from_millis(3),
            "committed after {:?}, before the linger time",
            t.elapsed()
        );
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Queued writes go out with the next waited-for write, at once (an `activity_count`
    /// counts every row recorded before it), and more than a full queue's worth all land;
    /// closing the store commits whatever still waits.
    #[tokio::test]
    async fn queued_writes_join_the_next_commit_and_closing_commits_the_rest() {
        let (dir, path) = fresh_dir("linger2");
        let store = SqliteStore::open(&path).unwrap();
        let n = 3 * LINGER_MAX + 7;
        for _ in 0..n {
            store.record_activity(activity("many")).await.unwrap();
        }
        let since = Utc::now() - chrono::Duration::hours(1);
        let counted = store
            .activity_count(Some("many".into()), None, true, since)
            .await
            .unwrap();
        assert_eq!(counted, n as u64);
        for _ in 0..5 {
            store.record_activity(activity("last")).await.unwrap();
        }
        store.close();
        assert_eq!(rows_seen_by_another_connection(&path, "last"), 5);
        assert!(store.record_activity(activity("late")).await.is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
