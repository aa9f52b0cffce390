//! The SQLite schema: versioned migrations, each applied once, in order, in one transaction
//! at open.

use chrono::Utc;
use rusqlite::{Connection, TransactionBehavior, params};

use super::{audit_queries, backend};
use crate::store::StoreError;
use crate::store::records::schema_too_new;

/// Versioned migrations; each runs once, in order, in its own transaction.
pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE incidents (
    id            TEXT PRIMARY KEY,
    incident_type TEXT NOT NULL,
    severity      TEXT NOT NULL,
    status        TEXT NOT NULL,
    step          TEXT NOT NULL,
    level         INTEGER NOT NULL,
    dedup_key     TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    body          TEXT NOT NULL
);
CREATE INDEX incidents_created ON incidents (created_at DESC, id DESC);
CREATE INDEX incidents_status ON incidents (status, created_at DESC);
CREATE INDEX incidents_dedup_open ON incidents (dedup_key)
    WHERE dedup_key IS NOT NULL AND status NOT IN ('resolved', 'closed');
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    data        TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX events_incident ON events (incident_id, seq);
CREATE TABLE chain_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
"#,
    ),
    (2, MIGRATION_2_LIFECYCLE),
    (
        3,
        r#"
CREATE TABLE screen_activity (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    user_id     TEXT,
    session_id  TEXT,
    source      TEXT NOT NULL,
    verdict     TEXT NOT NULL,
    categories  TEXT NOT NULL,
    risk        REAL NOT NULL,
    incident_id TEXT
);
CREATE INDEX screen_activity_user ON screen_activity (user_id, at);
CREATE INDEX screen_activity_session ON screen_activity (session_id, at);
"#,
    ),
    // Every rewrite of an incident bumps its version, so the writer thread can tell
    // whether the copy it last wrote is still current (see `WRITE_CACHE`).
    (
        4,
        "ALTER TABLE incidents ADD COLUMN version INTEGER NOT NULL DEFAULT 0;",
    ),
    // Issue #10: `Idempotency-Key` of REST reports -> the incident the first request opened.
    (
        5,
        r#"
CREATE TABLE idempotency_keys (
    key         TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
"#,
    ),
    (6, audit_queries::MIGRATION_6_CONTAINMENT_EVENTS),
    // (7 is PostgreSQL's outbox queue order; SQLite has its rowid for that.)
    (8, MIGRATION_8_COUNTERS_AND_EVIDENCE),
];

/// Migration 8 (issue #13): a repeated detection no longer rewrites the body. The repeat
/// counters become columns (times as exact RFC 3339 text, as the body had them; the old
/// `updated_at` column stays the microseconds the indexes and filters use) and the evidence
/// becomes rows of `incident_evidence`, numbered in list order. The values are moved out of
/// the existing bodies in the migration's transaction; events are not touched (the hash chain
/// stays as it was).
const MIGRATION_8_COUNTERS_AND_EVIDENCE: &str = r#"
ALTER TABLE incidents ADD COLUMN occurrences INTEGER NOT NULL DEFAULT 1;
ALTER TABLE incidents ADD COLUMN last_seen_at TEXT NOT NULL DEFAULT '';
ALTER TABLE incidents ADD COLUMN updated_at_exact TEXT NOT NULL DEFAULT '';
ALTER TABLE incidents ADD COLUMN repeat_logged_at TEXT;
CREATE TABLE incident_evidence (
    incident_id TEXT NOT NULL,
    ordinal     INTEGER NOT NULL,
    data        TEXT NOT NULL,
    PRIMARY KEY (incident_id, ordinal)
) WITHOUT ROWID;
UPDATE incidents SET
    occurrences = COALESCE(json_extract(body, '$.occurrences'), 1),
    last_seen_at = json_extract(body, '$.last_seen_at'),
    updated_at_exact = json_extract(body, '$.updated_at'),
    repeat_logged_at = json_extract(body, '$.repeat_logged_at');
INSERT INTO incident_evidence (incident_id, ordinal, data)
    SELECT i.id, e.key + 1, e.value FROM incidents i, json_each(i.body, '$.evidence') e;
UPDATE incidents SET body = json_set(body, '$.evidence', json('[]'))
    WHERE json_array_length(body, '$.evidence') > 0;
"#;

/// Migration 2 (issue #4): the notification outbox and containments. Rows are written by
/// [`append_events`] in the transaction of the event that causes them.
const MIGRATION_2_LIFECYCLE: &str = r#"
CREATE TABLE outbox (
    id              TEXT NOT NULL,
    channel         TEXT NOT NULL,
    incident_id     TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (id, channel)
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE TABLE containments (
    id           INTEGER PRIMARY KEY,
    incident_id  TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject      TEXT NOT NULL,
    action       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    lifted_at    INTEGER
);
CREATE INDEX containments_active ON containments (subject_kind, subject) WHERE lifted_at IS NULL;
"#;

/// The newest schema version this binary knows.
fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

/// Applies the pending migrations; returns the versions applied. Refuses a file whose schema
/// is newer than this binary.
pub(super) fn migrate(conn: &mut Connection) -> Result<Vec<i64>, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    )
    .map_err(backend)?;
    let current: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(backend)?;
    if current > latest() {
        return Err(schema_too_new(current, latest(), "file"));
    }
    let mut applied = Vec::new();
    for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.execute_batch(sql).map_err(|e| StoreError::Migration {
            version: *v,
            source: std::sync::Arc::new(e),
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![v, Utc::now().to_rfc3339()],
        )
        .map_err(backend)?;
        applied.push(*v);
    }
    tx.commit().map_err(backend)?;
    Ok(applied)
}
