//! Both store backends for tests: a fresh SQLite file, or a fresh database on the PostgreSQL
//! server named by `AI_INCIDENT_TEST_PG` (a URL with rights to create databases;
//! `scripts/pg-test-server.sh` makes one). Without that variable a PostgreSQL test prints
//! "skipped: set AI_INCIDENT_TEST_PG" and passes locally, and FAILS when `CI=true`, so CI
//! cannot skip it silently.

use std::sync::atomic::{AtomicU32, Ordering};

/// One fresh database; dropped (PostgreSQL) or deleted (SQLite) at the end of the test.
pub enum TestDb {
    Sqlite {
        _dir: tempfile::TempDir,
        url: String,
    },
    Postgres {
        admin: String,
        name: String,
        url: String,
    },
}

impl TestDb {
    /// What `--db` / `AI_INCIDENT_DB` takes.
    pub fn url(&self) -> &str {
        match self {
            TestDb::Sqlite { url, .. } | TestDb::Postgres { url, .. } => url,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, TestDb::Postgres { .. })
    }

    /// The one integer a `SELECT COUNT(*) …` gives, read on a connection of its own (what
    /// another process would see).
    pub async fn count(&self, sql: String) -> i64 {
        match self {
            TestDb::Sqlite { url, .. } => rusqlite::Connection::open(url)
                .unwrap()
                .query_row(&sql, [], |r| r.get(0))
                .unwrap(),
            TestDb::Postgres { url, .. } => {
                let c = pg_connect(url).await;
                c.query_one(&sql, &[]).await.unwrap().get(0)
            }
        }
    }

    /// Runs one SQL statement directly on the database (to tamper with it, say); returns the
    /// rows changed.
    pub async fn exec(&self, sql: &str) -> u64 {
        match self {
            TestDb::Sqlite { url, .. } => rusqlite::Connection::open(url)
                .unwrap()
                .execute(sql, [])
                .unwrap() as u64,
            TestDb::Postgres { url, .. } => {
                let c = pg_connect(url).await;
                c.execute(sql, &[]).await.unwrap()
            }
        }
    }
}

/// An `allow` activity row of `user` at `at` (the store tests' queued writes).
pub fn allow_activity(
    user: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> ai_incident_mcp::store::Activity {
    ai_incident_mcp::store::Activity {
        at,
        user_id: Some(user.into()),
        session_id: None,
        source: "user".into(),
        verdict: "allow".into(),
        categories: vec![],
        risk: 0.1,
        incident_id: None,
    }
}

pub fn sqlite() -> TestDb {
    let dir = super::tempdir();
    let url = super::db_in(dir.path());
    TestDb::Sqlite { _dir: dir, url }
}

/// The server URL, or `None` (test skipped) when it is not set outside CI.
pub fn pg_admin_url() -> Option<String> {
    match std::env::var("AI_INCIDENT_TEST_PG") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "AI_INCIDENT_TEST_PG is not set but CI=true: PostgreSQL tests must run in CI (.ci/run starts a server with scripts/pg-test-server.sh)"
                );
            }
            eprintln!("skipped: set AI_INCIDENT_TEST_PG");
            None
        }
    }
}

pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL server: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

/// `url` with its database name replaced by `name`.
pub fn with_dbname(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{base}/{name}{query}")
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A fresh, empty database on the test server (`None`: skipped, see the module docs).
pub async fn postgres() -> Option<TestDb> {
    let admin = pg_admin_url()?;
    let name = format!(
        "aim_t_{}_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..8)
            .unwrap_or("0")
    );
    let c = pg_connect(&admin).await;
    c.batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = with_dbname(&admin, &name);
    Some(TestDb::Postgres { admin, name, url })
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { admin, name, .. } = self {
            let (admin, name) = (admin.clone(), name.clone());
            // Best effort, on a runtime of its own (Drop may run inside or outside one).
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    if let Ok((c, conn)) =
                        tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
                    {
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                        let _ = c
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

/// Runs the test body once on SQLite and once on PostgreSQL: writes module `$name` with tests
/// `sqlite` and `postgres`. The body gets the fresh database as `$db: &TestDb`.
macro_rules! on_both_backends {
    ($(#[$meta:meta])* async fn $name:ident($db:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($db: &$crate::common::backends::TestDb) $body
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::common::backends::sqlite();
                run(&db).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = $crate::common::backends::postgres().await {
                    run(&db).await;
                }
            }
        }
    };
}
pub(crate) use on_both_backends;
