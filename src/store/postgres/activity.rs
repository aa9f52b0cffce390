//! Screening activity on PostgreSQL: rows nobody waits for, written in batches by a thread of
//! its own (one `INSERT … SELECT FROM UNNEST(…)` per batch, on a connection of its own).
//!
//! Before, every `screen_prompt` waited for its own `INSERT` (a round trip and a commit, so a
//! WAL flush with `synchronous_commit = on`). Now a row is queued and the caller goes on; the
//! writer commits what is queued 10 ms after the first row ([`LINGER`]) or when [`BATCH`] rows
//! wait. [`ActivityWriter::flush`] (what `activity_count` calls first) waits until every row
//! queued before it is committed, so counting repeated attempts sees them all. While the server
//! cannot be reached the rows are kept (up to [`KEEP`]) and tried again every second; closing
//! the store makes one last attempt.

use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use super::{Config, Tls, backend, connect_direct, pg_error};
use crate::store::records::micros;
use crate::store::{Activity, StoreError};

/// How long the first queued row waits for company before a commit of its own.
const LINGER: Duration = crate::store::ACTIVITY_LINGER;
/// Most rows in one commit while rows keep coming.
const BATCH: usize = crate::store::ACTIVITY_BATCH;
/// Most rows kept while PostgreSQL cannot be reached; the oldest go first (with a warning).
const KEEP: usize = 100_000;
/// How long a batch may take (connecting included) before it counts as failed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time between attempts while rows wait after a failure.
const RETRY: Duration = Duration::from_secs(1);

const INSERT: &str =
    "INSERT INTO screen_activity (at, user_id, session_id, source, verdict, categories, risk, incident_id)
     SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::REAL[], $8::TEXT[])";

/// Answered once every row sent before it is committed (or the attempt failed).
type Flush = tokio::sync::oneshot::Sender<Result<(), StoreError>>;

enum Msg {
    Row(Activity),
    Flush(Flush),
}

/// The queue and its writer thread.
pub(super) struct ActivityWriter {
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn closed() -> StoreError {
    StoreError::unavailable("the store is closed", None)
}

fn stopped() -> StoreError {
    StoreError::unavailable("the activity writer stopped", None)
}

impl ActivityWriter {
    /// Starts the writer thread (it connects on its first batch).
    ///
    /// # Errors
    /// The thread cannot be started.
    pub(super) fn start(cfg: Config, tls: Tls) -> Result<ActivityWriter, StoreError> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("pg-activity".into())
            .spawn(move || run(&rx, &cfg, &tls))
            .map_err(backend)?;
        Ok(ActivityWriter {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn send(&self, m: Msg) -> Result<(), StoreError> {
        let tx = self.tx.lock().map_err(backend)?;
        let tx = tx.as_ref().ok_or_else(closed)?;
        tx.send(m).map_err(|_| stopped())
    }

    /// Queues one row; returns at once.
    ///
    /// # Errors
    /// The store is closed.
    pub(super) fn queue(&self, a: Activity) -> Result<(), StoreError> {
        self.send(Msg::Row(a))
    }

    /// Waits until every row queued before this call is committed.
    ///
    /// # Errors
    /// The batch could not be written (the rows stay queued), or the store is closed.
    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Msg::Flush(tx))?;
        rx.await.map_err(|_| stopped())?
    }

    /// Stops the writer after one last attempt at the queued rows.
    pub(super) fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(h) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = h.join();
        }
    }
}

/// The writer thread: batches of rows, one transaction each, on a current-thread runtime.
fn run(rx: &mpsc::Receiver<Msg>, cfg: &Config, tls: &Tls) {
    use mpsc::RecvTimeoutError;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "no runtime for the PostgreSQL activity writer; activity rows are not recorded");
            return;
        }
    };
    let mut conn: Option<(tokio_postgres::Client, tokio_postgres::Statement)> = None;
    let mut rows: Vec<Activity> = Vec::new();
    // After a failed attempt: no new attempt before this (unless a flush waits for one), so an
    // unreachable server is not asked again for every incoming row.
    let mut retry_at: Option<Instant> = None;
    let mut open = true;
    while open {
        let mut flushes = Vec::new();
        let take = |m: Msg, rows: &mut Vec<Activity>, flushes: &mut Vec<Flush>| match m {
            Msg::Row(a) => rows.push(a),
            Msg::Flush(f) => flushes.push(f),
        };
        // Rows left by a failed attempt are tried again at `retry_at` even if nothing comes.
        let first = match retry_at.filter(|_| !rows.is_empty()) {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(t) => rx.recv_timeout(t.saturating_duration_since(Instant::now())),
        };
        match first {
            Ok(m) => take(m, &mut rows, &mut flushes),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        let deadline = Instant::now() + LINGER;
        while open && flushes.is_empty() && rows.len() < BATCH {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(m) => take(m, &mut rows, &mut flushes),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        let due = !open || !flushes.is_empty() || retry_at.is_none_or(|t| Instant::now() >= t);
        if !due {
            continue;
        }
        let r = if rows.is_empty() {
            Ok(())
        } else {
            rt.block_on(write(&mut conn, cfg, tls, &rows))
        };
        match &r {
            Ok(()) => {
                rows.clear();
                retry_at = None;
            }
            Err(e) => {
                conn = None;
                retry_at = Some(Instant::now() + RETRY);
                if rows.len() > KEEP {
                    let dropped = rows.len() - KEEP;
                    rows.drain(..dropped);
                    tracing::warn!(
                        dropped,
                        "PostgreSQL unreachable for long: the oldest queued activity rows are dropped"
                    );
                }
                if open {
                    tracing::warn!(rows = rows.len(), error = %e, "activity rows not written yet; trying again");
                } else {
                    tracing::warn!(lost = rows.len(), error = %e, "activity rows not written at close");
                }
            }
        }
        for f in flushes {
            let _ = f.send(r.clone());
        }
    }
}

/// Writes `rows` in one transaction (connecting first if needed), within [`WRITE_TIMEOUT`].
async fn write(
    conn: &mut Option<(tokio_postgres::Client, tokio_postgres::Statement)>,
    cfg: &Config,
    tls: &Tls,
    rows: &[Activity],
) -> Result<(), StoreError> {
    let attempt = async {
        if conn.as_ref().is_none_or(|(c, _)| c.is_closed()) {
            let c = connect_direct(cfg, tls).await?;
            let st = c.prepare(INSERT).await.map_err(pg_error)?;
            *conn = Some((c, st));
        }
        let (c, st) = conn
            .as_mut()
            .ok_or_else(|| StoreError::unavailable("no PostgreSQL connection", None))?;
        let tx = c.transaction().await.map_err(pg_error)?;
        for chunk in rows.chunks(4 * BATCH) {
            let at: Vec<i64> = chunk.iter().map(|a| micros(&a.at)).collect();
            let user: Vec<Option<&str>> = chunk.iter().map(|a| a.user_id.as_deref()).collect();
            let session: Vec<Option<&str>> =
                chunk.iter().map(|a| a.session_id.as_deref()).collect();
            let source: Vec<&str> = chunk.iter().map(|a| a.source.as_str()).collect();
            let verdict: Vec<&str> = chunk.iter().map(|a| a.verdict.as_str()).collect();
            let categories: Vec<String> = chunk.iter().map(|a| a.categories.join(",")).collect();
            let risk: Vec<f32> = chunk.iter().map(|a| a.risk).collect();
            let incident: Vec<Option<&str>> =
                chunk.iter().map(|a| a.incident_id.as_deref()).collect();
            tx.execute(
                &*st,
                &[
                    &at,
                    &user,
                    &session,
                    &source,
                    &verdict,
                    &categories,
                    &risk,
                    &incident,
                ],
            )
            .await
            .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)
    };
    tokio::time::timeout(WRITE_TIMEOUT, attempt)
        .await
        .map_err(|_| {
            StoreError::unavailable("PostgreSQL did not take the activity rows within 5 s", None)
        })?
}
