//! PostgreSQL adapter of [`Store`], for several server instances on one shared database.
//!
//! Selected by a `postgres://` or `postgresql://` URL. A connection pool (deadpool) serves
//! every call; TLS (native-tls, the system's trust store plus `AI_INCIDENT_PG_CA_FILE`) is used
//! when the URL says `sslmode=require` (or `prefer`). The schema is the SQLite one, applied
//! by versioned migrations on open (and by `ai-incident-mcp migrate`).
//!
//! Concurrency across instances: every change to an incident loads it `FOR UPDATE` in the
//! transaction that saves it; appends to the hash chain take a transaction-scoped advisory
//! lock, so the chain stays one chain and its order is commit order; a detection's dedup key
//! and a REST idempotency key take their own advisory locks, so two instances never open two
//! incidents for one key; an escalation step is claimed by a conditional `UPDATE` (level still
//! `from_level`), and outbox rows by `FOR UPDATE SKIP LOCKED` with a lease. Each call is one
//! transaction and returns after its commit.
//!
//! May import: `crate::domain`, `crate::store`.

mod activity;
mod audit;
mod schema;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Transaction};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Config, NoTls};

use crate::domain::audit::{self as chain, AuditReport, Pins};
use crate::domain::incident::Evidence;
use crate::domain::incident::{DomainError, Event, EventKind, Incident, IncidentId};
use crate::store::records::{
    INCIDENT_COLUMNS, StoredIncident, backend, body_without_evidence, check_link, counter_columns,
    evidence_diff, evidence_json, from_micros, micros, outbox_item, to_event,
};
use crate::store::{
    ActiveContainment, Cursor, HeadCheck, ImportBatch, ListQuery, Mutation, NewDetection,
    OutboxItem, OutboxRow, OutboxUpdate, Page, RepeatDetection, Store, StoreError, Upserted,
};

/// First key of this program's advisory locks (`pg_advisory_xact_lock(LOCK_NS, n)`): "AIM".
pub(super) const LOCK_NS: i32 = 0x0041_494d;
/// Second key of the hash-chain lock.
const CHAIN_LOCK: i32 = 1;
/// First keys of the per-key locks (the second key is `hashtext(key)`).
const DEDUP_NS: i32 = LOCK_NS + 1;
const IDEMPOTENCY_NS: i32 = LOCK_NS + 2;

/// Most connections one instance opens.
const POOL_SIZE: usize = 16;

/// Does `db` name a PostgreSQL database?
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// The PostgreSQL store.
pub struct PgStore {
    pool: Pool,
    /// The parsed URL and its connector, for the audit's connection of its own.
    cfg: Config,
    tls: Tls,
    /// `host:port/dbname`, for messages (never the password).
    target: String,
    /// Screening activity, written in batches by a thread of its own.
    activity: activity::ActivityWriter,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.activity.close();
    }
}

/// The connector the URL asks for.
#[derive(Clone)]
enum Tls {
    None,
    Native(postgres_native_tls::MakeTlsConnector),
}

fn tls_for(cfg: &Config) -> Result<Tls, StoreError> {
    if cfg.get_ssl_mode() == SslMode::Disable {
        return Ok(Tls::None);
    }
    let mut b = native_tls::TlsConnector::builder();
    if let Ok(path) = std::env::var("AI_INCIDENT_PG_CA_FILE") {
        let pem = std::fs::read(&path).map_err(|e| {
            open_error(format!(
                "cannot read AI_INCIDENT_PG_CA_FILE {path}; point it at the PEM file of the CA that signed the server's certificate"
            ), e)
        })?;
        let cert = native_tls::Certificate::from_pem(&pem).map_err(|e| {
            open_error(
                format!("AI_INCIDENT_PG_CA_FILE {path} is not a PEM certificate"),
                e,
            )
        })?;
        b.add_root_certificate(cert);
    }
    let c = b
        .build()
        .map_err(|e| open_error("cannot set up TLS for PostgreSQL", e))?;
    Ok(Tls::Native(postgres_native_tls::MakeTlsConnector::new(c)))
}

/// `host:port/dbname` of a config (no credentials).
fn describe(cfg: &Config) -> String {
    let host = match cfg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", cfg.get_dbname().unwrap_or("(default)"))
}

fn parse_url(url: &str) -> Result<Config, StoreError> {
    let mut cfg: Config = url.parse().map_err(|e| {
        open_error(
            "the PostgreSQL URL is not valid; write it as postgres://USER:PASSWORD@HOST:PORT/DBNAME?sslmode=require",
            e,
        )
    })?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(5));
    }
    if cfg.get_application_name().is_none() {
        cfg.application_name("ai-incident-mcp");
    }
    Ok(cfg)
}

/// [`StoreError::Open`]: `what` to fix, with the cause.
fn open_error(
    what: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError::Open {
        what: what.into(),
        source: Some(Arc::new(source)),
    }
}

/// Whether `e` says the server cannot be reached now rather than that the call is wrong: a
/// connection that could not be opened, broke or was closed, a timeout, or a server answer of
/// SQLSTATE class 08 (connection exception) or 57P01–57P03 (shutting down, crashed, starting).
fn unreachable(e: &tokio_postgres::Error) -> bool {
    if let Some(code) = e.code() {
        let c = code.code();
        return c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03");
    }
    if e.is_closed() {
        return true;
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if s.is::<std::io::Error>() {
            return true;
        }
        src = s.source();
    }
    // The client's own connect and timeout errors carry no source to tell them by.
    let text = e.to_string();
    text == "error connecting to server" || text == "timeout waiting for server"
}

/// A PostgreSQL error, its driver error kept as the source: [`StoreError::Unavailable`] when
/// the server cannot be reached now ([`unreachable`]), [`StoreError::Database`] otherwise.
pub(super) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    if unreachable(&e) {
        StoreError::Unavailable {
            what: "PostgreSQL cannot be reached".into(),
            source: Some(Arc::new(e)),
        }
    } else {
        StoreError::Database(Arc::new(e))
    }
}

/// A failed connection attempt, saying what to fix: refused credentials, a missing database
/// or a TLS failure are [`StoreError::Open`]; a server that cannot be reached is
/// [`StoreError::Unavailable`]. The driver's error is the source.
fn connect_error(e: tokio_postgres::Error, cfg: &Config) -> StoreError {
    let target = describe(cfg);
    let user = cfg.get_user().unwrap_or("(default)");
    let what = if let Some(code) = e.code() {
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            format!(
                "PostgreSQL at {target} refused the credentials of user '{user}'; check the user name and password in the URL"
            )
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            format!(
                "PostgreSQL at {target} has no such database; create the database first (createdb) or fix its name in the URL"
            )
        } else if unreachable(&e) {
            return StoreError::Unavailable {
                what: format!("PostgreSQL at {target} cannot take connections now"),
                source: Some(Arc::new(e)),
            };
        } else {
            format!("PostgreSQL at {target} refused the connection")
        }
    } else if root_cause(&e).contains("certificate") {
        format!(
            "PostgreSQL at {target}: TLS failed; the server's certificate must be signed by a trusted CA \
             for the host name in the URL: set AI_INCIDENT_PG_CA_FILE to the CA's PEM file, or fix the host name"
        )
    } else {
        return StoreError::Unavailable {
            what: format!(
                "cannot reach PostgreSQL at {target}; is the server running, and are the host, port and sslmode in the URL right?"
            ),
            source: Some(Arc::new(e)),
        };
    };
    StoreError::Open {
        what,
        source: Some(Arc::new(e)),
    }
}

/// The innermost cause's text (where a TLS failure names the certificate).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    cause
}

async fn connect_direct(cfg: &Config, tls: &Tls) -> Result<tokio_postgres::Client, StoreError> {
    match tls {
        Tls::None => {
            let (client, conn) = cfg
                .connect(NoTls)
                .await
                .map_err(|e| connect_error(e, cfg))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(client)
        }
        Tls::Native(t) => {
            let (client, conn) = cfg
                .connect(t.clone())
                .await
                .map_err(|e| connect_error(e, cfg))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(client)
        }
    }
}

/// Runs `f` on a current-thread runtime of its own on a thread named `name`, so a synchronous
/// caller (inside or outside a runtime) can wait for it; `panicked` is the error if it panics.
fn block_on_own_runtime<T: Send + 'static>(
    name: &str,
    panicked: &'static str,
    f: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(backend)?
                .block_on(f)
        })
        .map_err(backend)?
        .join()
        .map_err(|_| StoreError::Task {
            what: panicked,
            source: None,
        })?
}

/// Applies the pending migrations to the database at `url`; returns the versions applied
/// (empty when it was up to date).
///
/// # Errors
/// [`StoreError::Unavailable`] for a server that cannot be reached; [`StoreError::Open`] saying
/// what to fix for a bad URL, refused credentials, a missing database, TLS, or a schema newer
/// than this binary; [`StoreError::Migration`] when a migration fails.
pub fn migrate(url: &str) -> Result<Vec<i64>, StoreError> {
    let cfg = parse_url(url)?;
    let tls = tls_for(&cfg)?;
    block_on_own_runtime(
        "pg-open",
        "the PostgreSQL migration thread panicked",
        async move {
            let mut client = connect_direct(&cfg, &tls).await?;
            schema::migrate(&mut client).await
        },
    )
}

impl PgStore {
    /// Connects to `url`, applies pending migrations and returns the store (its pool opens
    /// connections as calls need them).
    ///
    /// # Errors
    /// As [`migrate`].
    pub fn open(url: &str) -> Result<Arc<PgStore>, StoreError> {
        let applied = migrate(url)?;
        let cfg = parse_url(url)?;
        let target = describe(&cfg);
        if !applied.is_empty() {
            tracing::info!(db = %target, ?applied, "applied PostgreSQL migrations");
        }
        let mc = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let tls = tls_for(&cfg)?;
        let mgr = match &tls {
            Tls::None => Manager::from_config(cfg.clone(), NoTls, mc),
            Tls::Native(t) => Manager::from_config(cfg.clone(), t.clone(), mc),
        };
        let pool = Pool::builder(mgr)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| open_error("cannot set up the PostgreSQL connection pool", e))?;
        let activity = activity::ActivityWriter::start(cfg.clone(), tls.clone())?;
        Ok(Arc::new(PgStore {
            pool,
            target,
            cfg,
            tls,
            activity,
        }))
    }

    /// A pooled connection. A server that cannot be reached, a closed pool or a pool timeout
    /// is [`StoreError::Unavailable`] (nothing of the call was applied; the pool error is
    /// the source).
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        use deadpool_postgres::PoolError;
        self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(pe) if !unreachable(&pe) => StoreError::Database(Arc::new(pe)),
            PoolError::Backend(_) | PoolError::Timeout(_) | PoolError::Closed => {
                StoreError::Unavailable {
                    what: format!("PostgreSQL at {} cannot be reached", self.target),
                    source: Some(Arc::new(e)),
                }
            }
            other => StoreError::Database(Arc::new(other)),
        })
    }
}

type Params<'a> = [&'a (dyn ToSql + Sync)];

async fn exec(tx: &Transaction<'_>, sql: &str, p: &Params<'_>) -> Result<u64, StoreError> {
    let st = tx.prepare_cached(sql).await.map_err(pg_error)?;
    tx.execute(&st, p).await.map_err(pg_error)
}

async fn query(
    tx: &Transaction<'_>,
    sql: &str,
    p: &Params<'_>,
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let st = tx.prepare_cached(sql).await.map_err(pg_error)?;
    tx.query(&st, p).await.map_err(pg_error)
}

async fn query_opt(
    tx: &Transaction<'_>,
    sql: &str,
    p: &Params<'_>,
) -> Result<Option<tokio_postgres::Row>, StoreError> {
    let st = tx.prepare_cached(sql).await.map_err(pg_error)?;
    tx.query_opt(&st, p).await.map_err(pg_error)
}

/// The stored parts of an incident row selected as [`INCIDENT_COLUMNS`].
fn stored_of(r: &tokio_postgres::Row) -> StoredIncident {
    StoredIncident {
        id: r.get(0),
        body: r.get(1),
        occurrences: r.get(2),
        last_seen_at: r.get(3),
        updated_at_exact: r.get(4),
        repeat_logged_at: r.get(5),
    }
}

/// The domain incidents of `rows` (selected as [`INCIDENT_COLUMNS`]), with their evidence
/// rows read in one query.
async fn assemble<C: deadpool_postgres::GenericClient>(
    c: &C,
    rows: &[tokio_postgres::Row],
) -> Result<Vec<Incident>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let stored: Vec<StoredIncident> = rows.iter().map(stored_of).collect();
    let ids: Vec<&str> = stored.iter().map(|s| s.id.as_str()).collect();
    let st = c
        .prepare_cached(
            "SELECT incident_id, data FROM incident_evidence WHERE incident_id = ANY($1)
             ORDER BY incident_id, ordinal",
        )
        .await
        .map_err(pg_error)?;
    let mut by_id: std::collections::HashMap<String, Vec<String>> = Default::default();
    for r in c.query(&st, &[&ids]).await.map_err(pg_error)? {
        by_id.entry(r.get(0)).or_default().push(r.get(1));
    }
    stored
        .into_iter()
        .map(|s| {
            let ev = by_id.remove(&s.id).unwrap_or_default();
            s.assemble(&ev)
        })
        .collect()
}

/// Loads an incident, locking its row until the transaction ends when `lock`.
async fn load_incident(
    tx: &Transaction<'_>,
    id: &str,
    lock: bool,
) -> Result<Option<Incident>, StoreError> {
    let sql = if lock {
        format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1 FOR UPDATE")
    } else {
        format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1")
    };
    let rows = query(tx, &sql, &[&id]).await?;
    Ok(assemble(tx, &rows).await?.into_iter().next())
}

/// Writes an incident's row: its body (without the evidence), the indexed columns and the
/// counter columns. An insert also writes its evidence rows; an update leaves them to
/// [`sync_evidence`].
async fn save_incident(
    tx: &Transaction<'_>,
    inc: &mut Incident,
    insert: bool,
) -> Result<(), StoreError> {
    let body = body_without_evidence(inc)?;
    let (occurrences, last_seen, updated_exact, repeat_logged) = counter_columns(inc);
    let sql = if insert {
        "INSERT INTO incidents (id, incident_type, severity, status, step, level, dedup_key, created_at, updated_at, body,
            occurrences, last_seen_at, updated_at_exact, repeat_logged_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    } else {
        "UPDATE incidents SET incident_type=$2, severity=$3, status=$4, step=$5, level=$6, dedup_key=$7,
         created_at=$8, updated_at=$9, body=$10, occurrences=$11, last_seen_at=$12, updated_at_exact=$13,
         repeat_logged_at=$14, version = version + 1 WHERE id=$1"
    };
    exec(
        tx,
        sql,
        &[
            &inc.id().as_str(),
            &inc.incident_type().as_str(),
            &inc.severity().as_str(),
            &inc.status().as_str(),
            &inc.step().as_str(),
            &i32::from(inc.escalation_level()),
            &inc.dedup_key(),
            &micros(&inc.created_at()),
            &micros(&inc.updated_at()),
            &body,
            &occurrences,
            &last_seen,
            &updated_exact,
            &repeat_logged,
        ],
    )
    .await?;
    if insert {
        sync_evidence(tx, inc.id().as_str(), &[], inc.evidence()).await?;
    }
    Ok(())
}

/// A repeat's write (issue #13): the counter columns in place — an atomic
/// `occurrences = occurrences + 1`, last seen, updated — no body. `inc` is the incident after
/// the repeat.
async fn save_counters(tx: &Transaction<'_>, inc: &Incident) -> Result<(), StoreError> {
    let (_, last_seen, updated_exact, repeat_logged) = counter_columns(inc);
    let n = exec(
        tx,
        "UPDATE incidents SET occurrences = occurrences + 1, last_seen_at = $2, updated_at = $3,
         updated_at_exact = $4, repeat_logged_at = $5, version = version + 1 WHERE id = $1",
        &[
            &inc.id().as_str(),
            &last_seen,
            &micros(&inc.updated_at()),
            &updated_exact,
            &repeat_logged,
        ],
    )
    .await?;
    if n != 1 {
        return Err(backend(format!("incident {} vanished", inc.id())));
    }
    Ok(())
}

/// Changes the evidence rows of incident `id` from `before` to `after` (see
/// [`evidence_diff`]): one DELETE of the dropped rows, one INSERT of the new ones.
async fn sync_evidence(
    tx: &Transaction<'_>,
    id: &str,
    before: &[Evidence],
    after: &[Evidence],
) -> Result<(), StoreError> {
    let d = evidence_diff(before, after);
    if d.delete > 0 {
        exec(
            tx,
            "DELETE FROM incident_evidence WHERE incident_id = $1 AND ordinal IN (
                SELECT ordinal FROM incident_evidence WHERE incident_id = $1 ORDER BY ordinal LIMIT $2 OFFSET $3)",
            &[&id, &(d.delete as i64), &(d.keep as i64)],
        )
        .await?;
    }
    if !d.append.is_empty() {
        let data = d
            .append
            .iter()
            .map(evidence_json)
            .collect::<Result<Vec<_>, _>>()?;
        exec(
            tx,
            "INSERT INTO incident_evidence (incident_id, ordinal, data)
             SELECT $1, COALESCE((SELECT MAX(ordinal) FROM incident_evidence WHERE incident_id = $1), 0) + n, d
             FROM UNNEST($2::TEXT[]) WITH ORDINALITY AS u(d, n)",
            &[&id, &data],
        )
        .await?;
    }
    Ok(())
}

/// Runs `f` on the stored (locked) incident `inc` and saves the result: body, columns, and the
/// evidence rows that changed.
async fn change(
    tx: &Transaction<'_>,
    inc: &mut Incident,
    f: Mutation,
) -> Result<Vec<EventKind>, StoreError> {
    let before = inc.evidence().to_vec();
    let events = f(inc)?;
    save_changed(tx, inc, &before, true).await?;
    Ok(events)
}

/// Saves a changed stored (locked) incident: the whole row when `body_changed`, else only the
/// counter columns (a repeat); then the evidence rows that differ from `before`.
async fn save_changed(
    tx: &Transaction<'_>,
    inc: &mut Incident,
    before: &[Evidence],
    body_changed: bool,
) -> Result<(), StoreError> {
    if body_changed {
        save_incident(tx, inc, false).await?;
    } else {
        save_counters(tx, inc).await?;
    }
    sync_evidence(tx, inc.id().as_str(), before, inc.evidence()).await
}

/// Appends `events` to the chain under the chain lock (held until the transaction ends), with
/// the side tables that follow from them.
async fn append_events(
    tx: &Transaction<'_>,
    id: &IncidentId,
    actor: &str,
    at: &DateTime<Utc>,
    events: &[EventKind],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    exec(
        tx,
        "SELECT pg_advisory_xact_lock($1, $2)::TEXT",
        &[&LOCK_NS, &CHAIN_LOCK],
    )
    .await?;
    let head = query_opt(tx, "SELECT seq, hash FROM chain_head WHERE id = 1", &[]).await?;
    let (mut seq, mut prev) = head
        .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
        .unwrap_or((0, chain::GENESIS_HASH.to_string()));
    let at_s = chain::hash_time(at);
    let ins = tx
        .prepare_cached(
            "INSERT INTO events (seq, incident_id, at, actor, data, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await
        .map_err(pg_error)?;
    for ev in events {
        seq += 1;
        let data = serde_json::to_string(ev).map_err(backend)?;
        let hash = chain::event_hash(seq, id.as_str(), &at_s, actor, &data, &prev);
        tx.execute(
            &ins,
            &[&seq, &id.as_str(), &at_s, &actor, &data, &prev, &hash],
        )
        .await
        .map_err(pg_error)?;
        side_tables(tx, id, at, ev, &data).await?;
        prev = hash;
    }
    exec(
        tx,
        "INSERT INTO chain_head (id, seq, hash) VALUES (1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        &[&seq, &prev],
    )
    .await?;
    Ok(())
}

/// Outbox and containment rows that follow from an event (same transaction).
async fn side_tables(
    tx: &Transaction<'_>,
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
            exec(
                tx,
                "INSERT INTO outbox (id, channel, incident_id, payload, status, attempts, next_attempt_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5) ON CONFLICT DO NOTHING",
                &[notification_id, channel, &id.as_str(), &data, &t],
            )
            .await?;
        }
        EventKind::Contained {
            action,
            subject_kind,
            subject,
            reason,
        } => {
            exec(
                tx,
                "INSERT INTO containments (incident_id, subject_kind, subject, action, reason, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&id.as_str(), subject_kind, subject, action, reason, &t],
            )
            .await?;
        }
        EventKind::ContainmentLifted {
            subject_kind,
            subject,
            ..
        } => {
            exec(
                tx,
                "UPDATE containments SET lifted_at = $4
                 WHERE incident_id = $1 AND subject_kind = $2 AND subject = $3 AND lifted_at IS NULL",
                &[&id.as_str(), subject_kind, subject, &t],
            )
            .await?;
        }
        _ => {}
    }
    Ok(())
}

fn event_of(r: &tokio_postgres::Row) -> crate::store::records::EventRow {
    (
        r.get(0),
        r.get(1),
        r.get(2),
        r.get(3),
        r.get(4),
        r.get(5),
        r.get(6),
    )
}

/// Incident columns for a multi-row INSERT (what [`save_incident`] writes, as arrays).
#[derive(Default)]
struct IncidentCols {
    id: Vec<String>,
    incident_type: Vec<&'static str>,
    severity: Vec<&'static str>,
    status: Vec<&'static str>,
    step: Vec<&'static str>,
    level: Vec<i32>,
    dedup_key: Vec<Option<String>>,
    created_at: Vec<i64>,
    updated_at: Vec<i64>,
    body: Vec<String>,
    occurrences: Vec<i64>,
    last_seen_at: Vec<String>,
    updated_at_exact: Vec<String>,
    repeat_logged_at: Vec<Option<String>>,
    /// Evidence rows: incident id, ordinal, JSON.
    ev_incident: Vec<String>,
    ev_ordinal: Vec<i64>,
    ev_data: Vec<String>,
}

impl IncidentCols {
    fn push(&mut self, inc: &mut Incident) -> Result<(), StoreError> {
        self.body.push(body_without_evidence(inc)?);
        let (occurrences, last_seen, updated_exact, repeat_logged) = counter_columns(inc);
        self.occurrences.push(occurrences);
        self.last_seen_at.push(last_seen);
        self.updated_at_exact.push(updated_exact);
        self.repeat_logged_at.push(repeat_logged);
        for (n, e) in inc.evidence().iter().enumerate() {
            self.ev_incident.push(inc.id().as_str().to_string());
            self.ev_ordinal.push(n as i64 + 1);
            self.ev_data.push(evidence_json(e)?);
        }
        self.id.push(inc.id().as_str().to_string());
        self.incident_type.push(inc.incident_type().as_str());
        self.severity.push(inc.severity().as_str());
        self.status.push(inc.status().as_str());
        self.step.push(inc.step().as_str());
        self.level.push(i32::from(inc.escalation_level()));
        self.dedup_key.push(inc.dedup_key().map(str::to_string));
        self.created_at.push(micros(&inc.created_at()));
        self.updated_at.push(micros(&inc.updated_at()));
        Ok(())
    }
}

/// Runs a transaction body: `$body` is an async block using `tx`; commits when it returns
/// `Ok`, rolls back otherwise.
macro_rules! in_tx {
    ($self:ident, |$tx:ident| $body:expr) => {{
        let mut client = $self.client().await?;
        let $tx = client.transaction().await.map_err(pg_error)?;
        let out = $body;
        match out {
            Ok(v) => {
                $tx.commit().await.map_err(pg_error)?;
                Ok(v)
            }
            Err(e) => {
                let _ = $tx.rollback().await;
                Err(e)
            }
        }
    }};
}

#[async_trait]
impl Store for PgStore {
    async fn insert(
        &self,
        mut incident: Incident,
        events: Vec<EventKind>,
        actor: String,
        now: DateTime<Utc>,
    ) -> Result<Incident, StoreError> {
        in_tx!(self, |tx| async {
            save_incident(&tx, &mut incident, true).await?;
            append_events(&tx, incident.id(), &actor, &now, &events).await?;
            Ok::<_, StoreError>(())
        }
        .await)?;
        Ok(incident)
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
        in_tx!(self, |tx| {
            async {
            exec(
                &tx,
                "SELECT pg_advisory_xact_lock($1, hashtext($2))::TEXT",
                &[&IDEMPOTENCY_NS, &key],
            )
            .await?;
            let seen = query_opt(
                &tx,
                "SELECT fingerprint, incident_id FROM idempotency_keys WHERE key = $1",
                &[&key],
            )
            .await?;
            if let Some(r) = seen {
                let (fp, id): (String, String) = (r.get(0), r.get(1));
                if fp != fingerprint {
                    return Err(StoreError::Domain(DomainError::Invalid {
                        field: "Idempotency-Key",
                        message: format!(
                            "was already used for a different report (incident {id}); send a new key for a new report"
                        ),
                    }));
                }
                let inc = load_incident(&tx, &id, false).await?.ok_or_else(|| {
                    backend(format!("incident {id} of an idempotency key vanished"))
                })?;
                return Ok(Upserted {
                    incident: inc,
                    created: false,
                });
            }
            save_incident(&tx, &mut incident, true).await?;
            append_events(&tx, incident.id(), &actor, &now, &events).await?;
            exec(
                &tx,
                "INSERT INTO idempotency_keys (key, fingerprint, incident_id, created_at) VALUES ($1, $2, $3, $4)",
                &[&key, &fingerprint, &incident.id().as_str(), &micros(&now)],
            )
            .await?;
            Ok(Upserted {
                incident: incident.clone(),
                created: true,
            })
        }
        .await
        })
    }

    async fn get(&self, id: &IncidentId) -> Result<Option<Incident>, StoreError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1"
            ))
            .await
            .map_err(pg_error)?;
        let rows = c.query(&st, &[&id.as_str()]).await.map_err(pg_error)?;
        Ok(assemble(&c, &rows).await?.into_iter().next())
    }

    async fn timeline(&self, id: &IncidentId) -> Result<Vec<Event>, StoreError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT seq, incident_id, at, actor, data, prev_hash, hash FROM events WHERE incident_id = $1 ORDER BY seq",
            )
            .await
            .map_err(pg_error)?;
        c.query(&st, &[&id.as_str()])
            .await
            .map_err(pg_error)?
            .iter()
            .map(|r| to_event(event_of(r)))
            .collect()
    }

    async fn list(&self, q: ListQuery) -> Result<Page, StoreError> {
        let mut sql = format!("SELECT {INCIDENT_COLUMNS}, created_at FROM incidents WHERE TRUE");
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut arg = |sql: &mut String, frag: &str, v: Box<dyn ToSql + Sync + Send>| {
            args.push(v);
            sql.push_str(&frag.replace('?', &format!("${}", args.len())));
        };
        if let Some(s) = q.status {
            arg(
                &mut sql,
                " AND status = ?",
                Box::new(s.as_str().to_string()),
            );
        }
        if q.open_only {
            sql.push_str(" AND status NOT IN ('resolved', 'closed')");
        }
        if let Some(s) = q.severity {
            arg(
                &mut sql,
                " AND severity = ?",
                Box::new(s.as_str().to_string()),
            );
        }
        if let Some(t) = q.incident_type {
            arg(
                &mut sql,
                " AND incident_type = ?",
                Box::new(t.as_str().to_string()),
            );
        }
        if let Some(since) = q.since {
            arg(&mut sql, " AND created_at >= ?", Box::new(micros(&since)));
        }
        if let Some(c) = &q.cursor {
            arg(
                &mut sql,
                " AND (created_at, id) < (?",
                Box::new(c.created_at_micros),
            );
            arg(&mut sql, ", ?)", Box::new(c.id.clone()));
        }
        let limit = i64::from(q.limit.max(1));
        arg(
            &mut sql,
            " ORDER BY created_at DESC, id DESC LIMIT ?",
            Box::new(limit + 1),
        );
        let c = self.client().await?;
        let st = c.prepare_cached(&sql).await.map_err(pg_error)?;
        let refs: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let mut rows = c.query(&st, &refs).await.map_err(pg_error)?;
        let more = rows.len() as i64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let last = rows.last().map(|r| Cursor {
            created_at_micros: r.get(6),
            id: r.get(0),
        });
        let items = assemble(&c, &rows).await?;
        Ok(Page {
            items,
            next_cursor: if more { last } else { None },
        })
    }

    async fn update(
        &self,
        id: &IncidentId,
        actor: String,
        now: DateTime<Utc>,
        f: Mutation,
    ) -> Result<Incident, StoreError> {
        in_tx!(self, |tx| async {
            let mut inc = load_incident(&tx, id.as_str(), true)
                .await?
                .ok_or_else(|| StoreError::NotFound(id.clone()))?;
            let events = change(&tx, &mut inc, f).await?;
            append_events(&tx, inc.id(), &actor, &now, &events).await?;
            Ok(inc)
        }
        .await)
    }

    async fn upsert_detection(
        &self,
        dedup_key: String,
        new: NewDetection,
        on_repeat: RepeatDetection,
        actor: String,
        now: DateTime<Utc>,
    ) -> Result<Upserted, StoreError> {
        in_tx!(self, |tx| {
            async {
            // One opener per key across instances: the lock ends with the transaction.
            exec(
                &tx,
                "SELECT pg_advisory_xact_lock($1, hashtext($2))::TEXT",
                &[&DEDUP_NS, &dedup_key],
            )
            .await?;
            let existing = query(
                &tx,
                &format!(
                    "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE dedup_key = $1 AND status NOT IN ('resolved', 'closed')
                     ORDER BY created_at DESC LIMIT 1 FOR UPDATE"
                ),
                &[&dedup_key],
            )
            .await?;
            match assemble(&tx, &existing).await?.into_iter().next() {
                Some(mut inc) => {
                    // The row is locked until commit; the counter UPDATE is an atomic
                    // increment either way.
                    let before = inc.evidence().to_vec();
                    let (events, body_changed) = on_repeat.apply(&mut inc, now);
                    save_changed(&tx, &mut inc, &before, body_changed).await?;
                    append_events(&tx, inc.id(), &actor, &now, &events).await?;
                    Ok(Upserted {
                        incident: inc,
                        created: false,
                    })
                }
                None => {
                    let (mut inc, events) = new();
                    save_incident(&tx, &mut inc, true).await?;
                    append_events(&tx, inc.id(), &actor, &now, &events).await?;
                    Ok(Upserted {
                        incident: inc,
                        created: true,
                    })
                }
            }
        }
        .await
        })
    }

    async fn record_activity(&self, a: crate::store::Activity) -> Result<(), StoreError> {
        // Queued: the activity thread commits it with the rows around it (see `activity`).
        self.activity.queue(a)
    }

    async fn activity_count(
        &self,
        user_id: Option<String>,
        session_id: Option<String>,
        flagged_only: bool,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        // Every row this process queued before the count is committed first.
        self.activity.flush().await?;
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
        let sql =
            format!("SELECT COUNT(*) FROM screen_activity WHERE {col} = $1 AND at >= $2{flagged}");
        let c = self.client().await?;
        let st = c.prepare_cached(&sql).await.map_err(pg_error)?;
        let n: i64 = c
            .query_one(&st, &[&v, &micros(&since)])
            .await
            .map_err(pg_error)?
            .get(0);
        Ok(n.max(0) as u64)
    }

    async fn find_open_by_dedup(&self, dedup_key: &str) -> Result<Option<Incident>, StoreError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE dedup_key = $1 AND status NOT IN ('resolved', 'closed')
                 ORDER BY created_at DESC LIMIT 1"
            ))
            .await
            .map_err(pg_error)?;
        let rows = c.query(&st, &[&dedup_key]).await.map_err(pg_error)?;
        Ok(assemble(&c, &rows).await?.into_iter().next())
    }

    async fn verify_audit_log(&self, pins: Pins) -> Result<AuditReport, StoreError> {
        // A connection of its own on a thread of its own: the driver's connection task and
        // the row stream then share one thread, so the millions of rows of a long chain are
        // handed over without a cross-thread wake-up per network read.
        let (cfg, tls) = (self.cfg.clone(), self.tls.clone());
        tokio::task::spawn_blocking(move || {
            block_on_own_runtime("pg-audit", "the audit thread panicked", async move {
                let mut c = connect_direct(&cfg, &tls).await?;
                audit::verify(&mut c, pins).await
            })
        })
        .await
        .map_err(|_| StoreError::Task {
            what: "the audit thread stopped",
            source: None,
        })?
    }

    async fn changes_after(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<(i64, Vec<super::Change>), StoreError> {
        let c = self.client().await?;
        let head: i64 = c
            .query_one("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM events", &[])
            .await
            .map_err(pg_error)?
            .get(0);
        let Some(after) = after else {
            return Ok((head, Vec::new()));
        };
        let st = c
            .prepare_cached(
                "SELECT seq, incident_id, data::jsonb->>'kind', data::jsonb->>'status'
                 FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .await
            .map_err(pg_error)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = c
            .query(&st, &[&after, &limit])
            .await
            .map_err(pg_error)?
            .iter()
            .map(|r| super::Change {
                seq: r.get(0),
                incident_id: r.get(1),
                kind: r.get::<_, Option<String>>(2).unwrap_or_default(),
                status: r.get(3),
            })
            .collect();
        Ok((head, rows))
    }

    async fn verified_head(&self, after: Option<(i64, String)>) -> Result<HeadCheck, StoreError> {
        let mut c = self.client().await?;
        audit::verified_head(&mut c, after).await
    }

    async fn claim_escalation(
        &self,
        id: &IncidentId,
        from_level: u8,
        actor: String,
        now: DateTime<Utc>,
        f: Mutation,
    ) -> Result<Option<Incident>, StoreError> {
        in_tx!(self, |tx| async {
            // The claim: only one transaction can move the level away from `from_level`
            // (a concurrent one waits for the row, then finds the level changed).
            let claimed = exec(
                &tx,
                "UPDATE incidents SET level = level + 1
                 WHERE id = $1 AND level = $2 AND status NOT IN ('resolved', 'closed')",
                &[&id.as_str(), &i32::from(from_level)],
            )
            .await?;
            if claimed != 1 {
                return Ok(None);
            }
            let mut inc = load_incident(&tx, id.as_str(), true)
                .await?
                .ok_or_else(|| StoreError::NotFound(id.clone()))?;
            let events = change(&tx, &mut inc, f).await?;
            if inc.escalation_level() <= from_level {
                return Err(StoreError::Corrupt(format!(
                    "escalation claim on {id} did not raise the level"
                )));
            }
            append_events(&tx, inc.id(), &actor, &now, &events).await?;
            Ok(Some(inc))
        }
        .await)
    }

    async fn claim_outbox(
        &self,
        owner: String,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let t = micros(&now);
        let until = t.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 2));
        in_tx!(self, |tx| {
            async {
            let rows = query(
                &tx,
                "WITH claimed AS (
                    UPDATE outbox SET lease_owner = $1, lease_until = $2, updated_at = $3
                    WHERE (id, channel) IN (
                       SELECT id, channel FROM outbox
                       WHERE status IN ('pending', 'retrying') AND next_attempt_at <= $3
                         AND (lease_until IS NULL OR lease_until < $3)
                       ORDER BY next_attempt_at, queued LIMIT $4
                       FOR UPDATE SKIP LOCKED)
                    RETURNING id, channel, incident_id, payload, attempts, created_at, next_attempt_at, queued)
                 SELECT id, channel, incident_id, payload, attempts, created_at FROM claimed
                 ORDER BY next_attempt_at, queued",
                &[&owner, &until, &t, &i64::from(limit)],
            )
            .await?;
            rows.iter()
                .map(|r| {
                    outbox_item(
                        r.get(0),
                        r.get(1),
                        r.get(2),
                        r.get(3),
                        i64::from(r.get::<_, i32>(4)),
                        r.get(5),
                    )
                })
                .collect::<Result<Vec<_>, _>>()
        }
        .await
        })
    }

    async fn finish_outbox(
        &self,
        item: &OutboxItem,
        owner: String,
        update: OutboxUpdate,
        now: DateTime<Utc>,
        f: Mutation,
    ) -> Result<Option<Incident>, StoreError> {
        let t = micros(&now);
        let attempts = i32::try_from(update.attempts).unwrap_or(i32::MAX);
        let next = update.next_attempt_at.as_ref().map(micros).unwrap_or(t);
        in_tx!(self, |tx| {
            async {
            let changed = exec(
                &tx,
                "UPDATE outbox SET status = $4, attempts = $5, next_attempt_at = $6, last_error = $7,
                    lease_owner = NULL, lease_until = NULL, updated_at = $8
                 WHERE id = $1 AND channel = $2 AND lease_owner = $3 AND status IN ('pending', 'retrying')",
                &[
                    &item.notification_id,
                    &item.channel,
                    &owner,
                    &update.status.as_str(),
                    &attempts,
                    &next,
                    &update.last_error,
                    &t,
                ],
            )
            .await?;
            if changed != 1 {
                return Ok(None);
            }
            let id = &item.incident_id;
            let mut inc = load_incident(&tx, id.as_str(), true)
                .await?
                .ok_or_else(|| StoreError::NotFound(id.clone()))?;
            let events = change(&tx, &mut inc, f).await?;
            append_events(&tx, inc.id(), "notifier", &now, &events).await?;
            Ok(Some(inc))
        }
        .await
        })
    }

    async fn active_containments(
        &self,
        user: Option<String>,
        session: Option<String>,
    ) -> Result<Vec<ActiveContainment>, StoreError> {
        let c = self.client().await?;
        audit::active_containments(&c, user, session).await
    }

    async fn active_containments_where(
        &self,
        subject_kind: Option<String>,
        subject: Option<String>,
        incident: Option<IncidentId>,
    ) -> Result<Vec<ActiveContainment>, StoreError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT incident_id, subject_kind, subject, action, reason, created_at FROM containments
                 WHERE lifted_at IS NULL AND ($1::TEXT IS NULL OR subject_kind = $1)
                    AND ($2::TEXT IS NULL OR subject = $2) AND ($3::TEXT IS NULL OR incident_id = $3)
                 ORDER BY created_at",
            )
            .await
            .map_err(pg_error)?;
        let inc = incident.as_ref().map(|i| i.as_str().to_string());
        let rows = c
            .query(&st, &[&subject_kind, &subject, &inc])
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|r| {
                Ok(ActiveContainment {
                    incident_id: r
                        .get::<_, String>(0)
                        .parse()
                        .map_err(|e| backend(format!("containment: {e}")))?,
                    subject_kind: r.get(1),
                    subject: r.get(2),
                    action: r.get(3),
                    reason: r.get(4),
                    since: from_micros(r.get(5)),
                })
            })
            .collect()
    }

    async fn export_incidents(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<Incident>, StoreError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE ($1::TEXT IS NULL OR id > $1) ORDER BY id LIMIT $2"
            ))
            .await
            .map_err(pg_error)?;
        let rows = c
            .query(&st, &[&after, &i64::from(limit)])
            .await
            .map_err(pg_error)?;
        assemble(&c, &rows).await
    }

    async fn export_events(&self, after_seq: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT seq, incident_id, at, actor, data, prev_hash, hash FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .await
            .map_err(pg_error)?;
        c.query(&st, &[&after_seq, &i64::from(limit)])
            .await
            .map_err(pg_error)?
            .iter()
            .map(|r| to_event(event_of(r)))
            .collect()
    }

    async fn export_outbox(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT id, channel, incident_id, payload, status, attempts, next_attempt_at, last_error, created_at, updated_at
                 FROM outbox ORDER BY created_at, id, channel",
                &[],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|r| OutboxRow {
                id: r.get(0),
                channel: r.get(1),
                incident_id: r.get(2),
                payload: r.get(3),
                status: r.get(4),
                attempts: i64::from(r.get::<_, i32>(5)),
                next_attempt_at: r.get(6),
                last_error: r.get(7),
                created_at: r.get(8),
                updated_at: r.get(9),
            })
            .collect())
    }

    async fn import(&self, mut batch: ImportBatch) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            async {
            // Incidents and events go in as one multi-row INSERT each (UNNEST of arrays):
            // a batch is a few round trips, not one per row.
            if !batch.incidents.is_empty() {
                let mut cols: IncidentCols = Default::default();
                for inc in &mut batch.incidents {
                    cols.push(inc)?;
                }
                exec(
                    &tx,
                    "INSERT INTO incidents (id, incident_type, severity, status, step, level, dedup_key, created_at, updated_at, body,
                        occurrences, last_seen_at, updated_at_exact, repeat_logged_at)
                     SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::INTEGER[], $7::TEXT[], $8::BIGINT[], $9::BIGINT[], $10::TEXT[],
                        $11::BIGINT[], $12::TEXT[], $13::TEXT[], $14::TEXT[])",
                    &[&cols.id, &cols.incident_type, &cols.severity, &cols.status, &cols.step,
                      &cols.level, &cols.dedup_key, &cols.created_at, &cols.updated_at, &cols.body,
                      &cols.occurrences, &cols.last_seen_at, &cols.updated_at_exact, &cols.repeat_logged_at],
                )
                .await?;
                exec(
                    &tx,
                    "INSERT INTO incident_evidence (incident_id, ordinal, data)
                     SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[])",
                    &[&cols.ev_incident, &cols.ev_ordinal, &cols.ev_data],
                )
                .await?;
            }
            if !batch.events.is_empty() {
                exec(
                    &tx,
                    "SELECT pg_advisory_xact_lock($1, $2)::TEXT",
                    &[&LOCK_NS, &CHAIN_LOCK],
                )
                .await?;
                let mut head = query_opt(&tx, "SELECT seq, hash FROM chain_head WHERE id = 1", &[])
                    .await?
                    .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
                    .unwrap_or((0, chain::GENESIS_HASH.to_string()));
                let n = batch.events.len();
                let (mut seq, mut inc, mut at, mut actor, mut data, mut prev, mut hash) = (
                    Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n),
                    Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n),
                    Vec::with_capacity(n),
                );
                let mut kinds = Vec::with_capacity(n);
                for e in &batch.events {
                    check_link(&head, e)?;
                    let kind: EventKind = serde_json::from_str(&e.data).map_err(|err| {
                        StoreError::Domain(DomainError::Invalid {
                            field: "event",
                            message: format!("event {} data is not an event ({err})", e.seq),
                        })
                    })?;
                    kinds.push(kind);
                    seq.push(e.seq);
                    inc.push(e.incident_id.as_str());
                    at.push(chain::hash_time(&e.at));
                    actor.push(e.actor.as_str());
                    data.push(e.data.as_str());
                    prev.push(e.prev_hash.as_str());
                    hash.push(e.hash.as_str());
                    head = (e.seq, e.hash.clone());
                }
                exec(
                    &tx,
                    "INSERT INTO events (seq, incident_id, at, actor, data, prev_hash, hash)
                     SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[])",
                    &[&seq, &inc, &at, &actor, &data, &prev, &hash],
                )
                .await?;
                // Side tables in chain order (a lift must follow its containment).
                for (e, kind) in batch.events.iter().zip(&kinds) {
                    side_tables(&tx, &e.incident_id, &e.at, kind, &e.data).await?;
                }
                exec(
                    &tx,
                    "INSERT INTO chain_head (id, seq, hash) VALUES (1, $1, $2)
                     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                    &[&head.0, &head.1],
                )
                .await?;
            }
            for o in &batch.outbox {
                let attempts = i32::try_from(o.attempts).unwrap_or(i32::MAX);
                exec(
                    &tx,
                    "INSERT INTO outbox (id, channel, incident_id, payload, status, attempts, next_attempt_at, last_error, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (id, channel) DO UPDATE SET incident_id = excluded.incident_id,
                        payload = excluded.payload, status = excluded.status, attempts = excluded.attempts,
                        next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error,
                        created_at = excluded.created_at, updated_at = excluded.updated_at,
                        lease_owner = NULL, lease_until = NULL",
                    &[&o.id, &o.channel, &o.incident_id, &o.payload, &o.status, &attempts,
                      &o.next_attempt_at, &o.last_error, &o.created_at, &o.updated_at],
                )
                .await?;
            }
            Ok(())
        }
        .await
        })
    }
}
