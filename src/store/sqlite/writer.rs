//! The SQLite writer thread: group commit of queued jobs in one `BEGIN IMMEDIATE`
//! transaction, one savepoint per job, and the writer's cache of incidents it last wrote.

use std::sync::mpsc;

use rusqlite::Connection;

use super::backend;
use crate::domain::incident::Incident;
use crate::store::StoreError;

pub(super) type Completer = Box<dyn FnOnce(Option<&StoreError>) + Send>;
pub(super) type Job = Box<dyn FnOnce(&Connection) -> Completer + Send>;

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 512;

thread_local! {
    /// Writer thread only (jobs run there): incidents as this thread last wrote them, by
    /// id, with the `version` they were written at. A repeat detection on an incident whose
    /// stored version still matches skips re-reading and re-parsing its body. Any other
    /// writer (another process, a lifecycle update) bumps the version, so a stale copy is
    /// never used; a failed job or batch clears the cache.
    static WRITE_CACHE: std::cell::RefCell<std::collections::HashMap<String, (i64, Incident)>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Most incidents kept in [`WRITE_CACHE`].
const WRITE_CACHE_MAX: usize = 256;

pub(super) fn cache_put(id: &str, version: i64, inc: &Incident) {
    WRITE_CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= WRITE_CACHE_MAX && !c.contains_key(id) {
            c.clear();
        }
        c.insert(id.to_owned(), (version, inc.clone()));
    });
}

pub(super) fn cache_take(id: &str, version: i64) -> Option<Incident> {
    let hit = WRITE_CACHE.with(|c| {
        c.borrow_mut()
            .remove(id)
            .filter(|(v, _)| *v == version)
            .map(|(_, inc)| inc)
    });
    #[cfg(test)]
    if hit.is_some() {
        CACHE_HITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    hit
}

#[cfg(test)]
pub(super) static CACHE_HITS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

pub(super) fn cache_clear() {
    WRITE_CACHE.with(|c| c.borrow_mut().clear());
}

/// What the store hands the writer thread.
pub(super) enum Msg {
    /// A write whose caller waits for it: committed at once, with everything queued.
    Job(Job),
    /// The first unacknowledged write went into the [`Lingering`] queue: commit it within
    /// [`LINGER`], or with the next [`Msg::Job`] if one comes first.
    Queued,
    /// The [`Lingering`] queue holds [`MAX_BATCH`] writes: commit them now.
    Full,
}

/// Writes nobody waits for (activity rows), queued by the store without waking the writer for
/// each one: one [`Msg::Queued`] per batch instead of one wake-up per row.
pub(super) type Lingering = std::sync::Arc<std::sync::Mutex<Vec<Job>>>;

/// How long a queued unacknowledged write may wait for company before a commit of its own.
/// Under load the next waited-for write takes it along much sooner; alone (a quiet server
/// screening benign texts) this many milliseconds of activity rows share one transaction
/// instead of one commit and two thread wake-ups per row.
pub(super) const LINGER: std::time::Duration = crate::store::ACTIVITY_LINGER;

/// Most queued unacknowledged writes before the store asks for a commit ([`Msg::Full`]).
pub(super) const LINGER_MAX: usize = crate::store::ACTIVITY_BATCH;

pub(super) fn writer_loop(conn: Connection, rx: mpsc::Receiver<Msg>, lingering: Lingering) {
    use mpsc::RecvTimeoutError;
    let mut deadline: Option<std::time::Instant> = None;
    let mut open = true;
    while open {
        let mut batch: Vec<Job> = Vec::new();
        let first = match deadline {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(d) => rx.recv_timeout(d.saturating_duration_since(std::time::Instant::now())),
        };
        match first {
            Ok(Msg::Job(j)) => batch.push(j),
            Ok(Msg::Queued) => {
                deadline.get_or_insert_with(|| std::time::Instant::now() + LINGER);
                continue;
            }
            Ok(Msg::Full) | Err(RecvTimeoutError::Timeout) => {}
            // The store is closed: commit what is left, then stop.
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        while open && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Job(j)) => batch.push(j),
                Ok(Msg::Queued | Msg::Full) => {}
                Err(_) => break,
            }
        }
        // The queued writes go first: they were queued before the jobs that find them here
        // (an `activity_count` job must count the rows recorded before it).
        let mut jobs = lingering
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default();
        deadline = None;
        if jobs.is_empty() && batch.is_empty() {
            continue;
        }
        jobs.append(&mut batch);
        commit_batch(&conn, jobs);
    }
}

/// Runs `batch` in one transaction, one job after the other, and then tells each job's
/// caller how the commit went.
fn commit_batch(conn: &Connection, mut batch: Vec<Job>) {
    let began = begin_immediate(conn);
    let mut completers = Vec::with_capacity(batch.len());
    let commit_err = match began {
        Err(e) => Some(e),
        Ok(()) => {
            for job in batch.drain(..) {
                completers.push(job(conn));
            }
            match exec_cached(conn, "COMMIT") {
                Ok(()) => None,
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Some(backend(e))
                }
            }
        }
    };
    if let Some(e) = &commit_err {
        cache_clear();
        let cause = std::error::Error::source(e)
            .map(ToString::to_string)
            .unwrap_or_default();
        tracing::error!(error = %e, %cause, "sqlite batch failed; callers get an error and nothing is acknowledged");
        // Jobs that never ran are dropped: their callers get an error.
        batch.clear();
    }
    for c in completers {
        c(commit_err.as_ref());
    }
}

/// Runs a prepared, cached statement (savepoint and transaction control are
/// parsed once per connection, not once per job).
pub(super) fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)
        .and_then(|mut st| st.execute([]).map(|_| ()))
}

/// Runs `op` inside a savepoint of the batch transaction: an error rolls back
/// only this job.
pub(super) fn in_savepoint<T>(
    conn: &Connection,
    op: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    exec_cached(conn, "SAVEPOINT job").map_err(backend)?;
    let r = op(conn);
    let end = if r.is_ok() {
        exec_cached(conn, "RELEASE job")
    } else {
        cache_clear();
        exec_cached(conn, "ROLLBACK TO job").and_then(|()| exec_cached(conn, "RELEASE job"))
    };
    if end.is_err() {
        cache_clear();
    }
    match end {
        Ok(()) => r,
        Err(e) => Err(backend(e)),
    }
}

pub(super) fn begin_immediate(conn: &Connection) -> Result<(), StoreError> {
    let mut last = None;
    for _ in 0..5 {
        match exec_cached(conn, "BEGIN IMMEDIATE") {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(
        || StoreError::unavailable("the SQLite database stayed locked", None),
        backend,
    ))
}
