//! The PostgreSQL schema: the same tables and columns as SQLite's (times as microseconds,
//! event data as the exact text that was hashed), as versioned migrations applied once, in
//! order, in one transaction under an advisory lock, so instances starting together migrate
//! once.

use tokio_postgres::Client;

use super::{LOCK_NS, pg_error};
use crate::store::StoreError;
use crate::store::records::schema_too_new;

/// Versioned migrations. Version numbers follow SQLite's where a step exists in both, so a
/// `schema_migrations` row means the same thing on either backend.
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
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    body          TEXT NOT NULL
);
CREATE INDEX incidents_created ON incidents (created_at DESC, id DESC);
CREATE INDEX incidents_status ON incidents (status, created_at DESC);
CREATE INDEX incidents_dedup_open ON incidents (dedup_key)
    WHERE dedup_key IS NOT NULL AND status NOT IN ('resolved', 'closed');
CREATE TABLE events (
    seq         BIGINT PRIMARY KEY,
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
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
"#,
    ),
    (
        2,
        r#"
CREATE TABLE outbox (
    id              TEXT NOT NULL,
    channel         TEXT NOT NULL,
    incident_id     TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (id, channel)
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE TABLE containments (
    id           BIGSERIAL PRIMARY KEY,
    incident_id  TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject      TEXT NOT NULL,
    action       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    lifted_at    BIGINT
);
CREATE INDEX containments_active ON containments (subject_kind, subject) WHERE lifted_at IS NULL;
"#,
    ),
    (
        3,
        r#"
CREATE TABLE screen_activity (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
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
    (
        4,
        "ALTER TABLE incidents ADD COLUMN version BIGINT NOT NULL DEFAULT 0;",
    ),
    (
        5,
        r#"
CREATE TABLE idempotency_keys (
    key         TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
"#,
    ),
    (
        6,
        r#"
CREATE INDEX events_containment_subject ON events (((data::jsonb) ->> 'subject'))
    WHERE ((data::jsonb) ->> 'kind') IN ('contained', 'containment_lifted');
"#,
    ),
    // Outbox rows in the order they were queued (SQLite has its rowid for this): deliveries
    // of one due time go out in queue order, not in whatever order an UPDATE returns them.
    (7, "ALTER TABLE outbox ADD COLUMN queued BIGSERIAL;"),
    // Issue #13, as SQLite's migration 8: the repeat counters become columns and the evidence
    // rows of `incident_evidence`, moved out of the existing bodies (jsonb), so a repeated
    // detection is an UPDATE of the counters plus appends, not a body rewrite. Events are not
    // touched.
    (
        8,
        r#"
ALTER TABLE incidents
    ADD COLUMN occurrences BIGINT NOT NULL DEFAULT 1,
    ADD COLUMN last_seen_at TEXT NOT NULL DEFAULT '',
    ADD COLUMN updated_at_exact TEXT NOT NULL DEFAULT '',
    ADD COLUMN repeat_logged_at TEXT;
CREATE TABLE incident_evidence (
    incident_id TEXT NOT NULL,
    ordinal     BIGINT NOT NULL,
    data        TEXT NOT NULL,
    PRIMARY KEY (incident_id, ordinal)
);
UPDATE incidents SET
    occurrences = COALESCE((body::jsonb ->> 'occurrences')::BIGINT, 1),
    last_seen_at = body::jsonb ->> 'last_seen_at',
    updated_at_exact = body::jsonb ->> 'updated_at',
    repeat_logged_at = body::jsonb ->> 'repeat_logged_at';
INSERT INTO incident_evidence (incident_id, ordinal, data)
    SELECT i.id, e.ord, e.value::TEXT
    FROM incidents i, jsonb_array_elements(i.body::jsonb -> 'evidence') WITH ORDINALITY AS e(value, ord);
UPDATE incidents SET body = jsonb_set(body::jsonb, '{evidence}', '[]'::jsonb)::TEXT
    WHERE jsonb_array_length(body::jsonb -> 'evidence') > 0;
"#,
    ),
];

/// The newest schema version this binary knows.
pub(super) fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

/// Applies the pending migrations; returns the versions applied. Refuses a database whose
/// schema is newer than this binary.
pub(super) async fn migrate(client: &mut Client) -> Result<Vec<i64>, StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    // One migrator at a time across instances; the lock ends with the transaction.
    tx.execute("SELECT pg_advisory_xact_lock($1, 0)::TEXT", &[&LOCK_NS])
        .await
        .map_err(pg_error)?;
    // No "already exists, skipping" notice in the log on every start.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
    )
    .await
    .map_err(pg_error)?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
            &[],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    if current > latest() {
        return Err(schema_too_new(current, latest(), "database"));
    }
    let mut applied = Vec::new();
    for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).await.map_err(|e| match pg_error(e) {
            StoreError::Database(source) => StoreError::Migration {
                version: *v,
                source,
            },
            unavailable => unavailable,
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[v, &chrono::Utc::now().to_rfc3339()],
        )
        .await
        .map_err(pg_error)?;
        applied.push(*v);
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    //! Migration 8 on a database that an older binary left at version 7, with incident bodies
    //! as that release wrote them (taken from the export of `tests/fixtures/schema6`, whose
    //! incident lines are those bodies). Needs `AI_INCIDENT_TEST_PG` (fails without it when
    //! `CI=true`, like the integration suite).
    use super::MIGRATIONS;
    use crate::domain::incident::{Incident, IncidentId};
    use crate::store::postgres::PgStore;
    use crate::store::{RepeatDetection, Store};

    fn admin_url() -> Option<String> {
        match std::env::var("AI_INCIDENT_TEST_PG") {
            Ok(u) if !u.is_empty() => Some(u),
            _ => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "AI_INCIDENT_TEST_PG is not set but CI=true"
                );
                eprintln!("skipped: set AI_INCIDENT_TEST_PG");
                None
            }
        }
    }

    fn with_db(url: &str, name: &str) -> String {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let cut = base.rfind('/').unwrap();
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        format!("{}/{name}{q}", &base[..cut])
    }

    async fn connect(url: &str) -> tokio_postgres::Client {
        let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        c
    }

    #[tokio::test]
    async fn migration_8_moves_counters_and_evidence_out_of_version_7_bodies() {
        let Some(admin) = admin_url() else { return };
        let name = format!("aim_m8_{}", uuid::Uuid::new_v4().simple());
        connect(&admin)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = with_db(&admin, &name);
        let c = connect(&url).await;
        c.batch_execute(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
        )
        .await
        .unwrap();
        for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= 7) {
            c.batch_execute(sql).await.unwrap();
            c.execute("INSERT INTO schema_migrations VALUES ($1, 'old')", &[v])
                .await
                .unwrap();
        }
        let export = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/schema6/expected/export.jsonl"
        ))
        .unwrap();
        let mut old: Vec<Incident> = Vec::new();
        for line in export.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let Some(inc) = v.get("incident") else {
                continue;
            };
            let body = serde_json::to_string(inc).unwrap();
            let i: Incident = serde_json::from_value(inc.clone()).unwrap();
            // The row as version 7 wrote it: the whole incident in the body.
            c.execute(
                "INSERT INTO incidents (id, incident_type, severity, status, step, level, dedup_key, created_at, updated_at, body)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[&i.id().as_str(), &i.incident_type().as_str(), &i.severity().as_str(),
                  &i.status().as_str(), &i.step().as_str(), &i32::from(i.escalation_level()),
                  &i.dedup_key(), &i.created_at().timestamp_micros(),
                  &i.updated_at().timestamp_micros(), &body],
            )
            .await
            .unwrap();
            old.push(i);
        }
        assert!(old.iter().any(
            |i| i.evidence().len() == crate::domain::incident::MAX_EVIDENCE && i.occurrences() > 1
        ));
        let u = url.clone();
        let store = tokio::task::spawn_blocking(move || PgStore::open(&u))
            .await
            .unwrap()
            .unwrap();
        // Every incident reads back as the old binary wrote it; bodies no longer hold evidence.
        for i in &old {
            assert_eq!(
                store.get(i.id()).await.unwrap().as_ref(),
                Some(i),
                "{}",
                i.id()
            );
        }
        let in_bodies: i64 = c
            .query_one("SELECT COALESCE(SUM(jsonb_array_length(body::jsonb -> 'evidence')), 0)::BIGINT FROM incidents", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(in_bodies, 0);
        let rows: i64 = c
            .query_one("SELECT COUNT(*) FROM incident_evidence", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            rows,
            old.iter().map(|i| i.evidence().len() as i64).sum::<i64>()
        );
        // A repeat after the migration counts on from the moved values and rotates the rows.
        let full = old
            .iter()
            .find(|i| {
                i.evidence().len() == crate::domain::incident::MAX_EVIDENCE
                    && i.dedup_key().is_some()
            })
            .unwrap();
        let id: IncidentId = full.id().clone();
        let now = chrono::Utc::now();
        let ev = full.evidence()[0].clone();
        let up = store
            .upsert_detection(
                full.dedup_key().unwrap().to_string(),
                Box::new(|| unreachable!("the incident is open")),
                RepeatDetection {
                    evidence: vec![ev],
                    ..Default::default()
                },
                "t".into(),
                now,
            )
            .await
            .unwrap();
        assert!(!up.created);
        let mut expected = full.clone();
        expected.record_repeat(vec![full.evidence()[0].clone()], now);
        assert_eq!(up.incident, expected);
        assert_eq!(store.get(&id).await.unwrap().unwrap(), expected);
        drop(store);
        drop(c);
        let _ = connect(&admin)
            .await
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
    }
}
