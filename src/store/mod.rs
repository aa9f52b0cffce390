//! The storage port: what the service needs from a database, as a trait.
//! SQLite ([`sqlite::SqliteStore`]) is the embedded default; a PostgreSQL
//! adapter implements the same trait with the same schema.
//!
//! Every write appends its events to the hash-chained timeline in the same
//! transaction, and returns only after the transaction is committed.
//! May import: `crate::incident`, `crate::audit`, std, async-trait, chrono.

pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::audit::AuditReport;
use crate::incident::{
    DomainError, Event, EventKind, Incident, IncidentId, IncidentType, Severity, Status,
};

/// A storage failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No incident with that id.
    #[error("no incident with id {0}")]
    NotFound(IncidentId),
    /// The change was refused by a domain rule (nothing was written).
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The database failed; the message is for logs, not for callers.
    #[error("database error: {0}")]
    Backend(String),
}

/// A change to one incident, run inside the store's transaction on the
/// freshly loaded incident. Returning `Err` rolls the change back.
pub type Mutation = Box<dyn FnOnce(&mut Incident) -> Result<Vec<EventKind>, DomainError> + Send>;

/// Filters for [`Store::list`].
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub status: Option<Status>,
    pub severity: Option<Severity>,
    pub incident_type: Option<IncidentType>,
    /// Only incidents created at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only statuses other than resolved/closed.
    pub open_only: bool,
    /// At most this many (the caller clamps it).
    pub limit: u32,
    /// Continue after this position (from a previous page).
    pub cursor: Option<Cursor>,
}

/// A position in the (created_at desc, id desc) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at_micros: i64,
    pub id: String,
}

impl Cursor {
    /// Opaque text form.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.created_at_micros, self.id)
    }
    /// Parses the text form.
    ///
    /// # Errors
    /// [`DomainError::Invalid`] for text not made by [`Cursor::encode`].
    pub fn decode(s: &str) -> Result<Cursor, DomainError> {
        let bad = || DomainError::Invalid {
            field: "cursor",
            message:
                "not a cursor from a previous list_incidents page; omit it to start from the newest"
                    .into(),
        };
        let (ts, id) = s.split_once('.').ok_or_else(bad)?;
        let created_at_micros = ts.parse::<i64>().map_err(|_| bad())?;
        let id: IncidentId = id.parse().map_err(|_| bad())?;
        Ok(Cursor {
            created_at_micros,
            id: id.as_str().to_string(),
        })
    }
}

/// One page of incidents.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Incident>,
    pub next_cursor: Option<Cursor>,
}

/// Result of [`Store::upsert_detection`].
#[derive(Debug, Clone)]
pub struct Upserted {
    pub incident: Incident,
    /// True when a new incident was opened, false when an open one was updated.
    pub created: bool,
}

/// The storage port.
#[async_trait]
pub trait Store: Send + Sync {
    /// Stores a new incident with its creation events.
    async fn insert(
        &self,
        incident: Incident,
        events: Vec<EventKind>,
        actor: String,
        now: DateTime<Utc>,
    ) -> Result<Incident, StoreError>;

    /// Loads an incident.
    async fn get(&self, id: &IncidentId) -> Result<Option<Incident>, StoreError>;

    /// The incident's events in order.
    async fn timeline(&self, id: &IncidentId) -> Result<Vec<Event>, StoreError>;

    /// A filtered page, newest first.
    async fn list(&self, q: ListQuery) -> Result<Page, StoreError>;

    /// Loads, changes and saves one incident atomically, appending the events
    /// the mutation returns.
    async fn update(
        &self,
        id: &IncidentId,
        actor: String,
        now: DateTime<Utc>,
        f: Mutation,
    ) -> Result<Incident, StoreError>;

    /// If an open incident has `dedup_key`, applies `on_repeat` to it;
    /// otherwise inserts `new` (whose `dedup_key` must be `dedup_key`).
    async fn upsert_detection(
        &self,
        dedup_key: String,
        new: (Incident, Vec<EventKind>),
        on_repeat: Mutation,
        actor: String,
        now: DateTime<Utc>,
    ) -> Result<Upserted, StoreError>;

    /// The open (not resolved/closed) incident with this dedup key, if any.
    async fn find_open_by_dedup(&self, dedup_key: &str) -> Result<Option<Incident>, StoreError>;

    /// Verifies the whole hash chain.
    async fn verify_audit_log(&self) -> Result<AuditReport, StoreError>;
}
