//! The storage port: what the service needs from a database, as a trait.
//! SQLite ([`sqlite::SqliteStore`]) is the embedded default; PostgreSQL
//! ([`postgres::PgStore`]) implements the same trait with the same schema, for several
//! instances on one database. [`transfer`] moves a database between them.
//!
//! Every write appends its events to the hash-chained timeline in the same
//! transaction, and returns only after the transaction is committed.
//!
//! Both backends keep an incident as a JSON body (without its evidence) plus columns: the
//! indexed ones, and the repeat counters (`occurrences`, `last_seen_at`, the exact
//! `updated_at_exact`, `repeat_logged_at`); its evidence is rows of `incident_evidence`. Loading
//! assembles the domain [`Incident`] from all three, so every reader sees one whole incident.
//! May import: `crate::domain::incident`, `crate::domain::audit`, std, async-trait, chrono, serde_json (codec errors).

pub(crate) mod audit_scan;
pub mod postgres;
pub(crate) mod records;
pub mod sqlite;
pub mod transfer;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::audit::{AuditReport, Pins};
use crate::domain::incident::{
    DomainError, Event, EventKind, Evidence, Incident, IncidentId, IncidentType, Severity, Status,
};

/// The cause of a storage fault, kept whole for the error chain (shared, because one failed
/// group commit answers every caller in the batch).
pub type Cause = std::sync::Arc<dyn std::error::Error + Send + Sync>;

/// A storage failure. Faults keep their cause as the error's `source()`; their own message
/// says what the store was doing, so a chain printer shows each part once.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No incident with that id.
    #[error("no incident with id {0}")]
    NotFound(IncidentId),
    /// The change was refused by a domain rule (nothing was written).
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The database (driver, SQL, constraint) failed.
    #[error("database error")]
    Database(#[source] Cause),
    /// A stored record could not be encoded or decoded.
    #[error("a stored record cannot be encoded or decoded")]
    Codec(#[source] std::sync::Arc<serde_json::Error>),
    /// The database cannot be opened, created or connected to as configured; `what` says what
    /// to fix (the path, the URL, the credentials, TLS, a schema newer than this binary).
    #[error("{what}")]
    Open {
        /// What failed and what to change, naming the file or `host:port/dbname` (never a
        /// password).
        what: String,
        /// The driver's or the system's answer, when there is one.
        #[source]
        source: Option<Cause>,
    },
    /// A schema migration failed.
    #[error("migration {version} failed")]
    Migration {
        /// The migration's number.
        version: i64,
        /// The database's answer.
        #[source]
        source: Cause,
    },
    /// The operating system failed the store (a file, starting a thread).
    #[error("store I/O failed")]
    Io(#[source] std::sync::Arc<std::io::Error>),
    /// The database cannot be reached now: the server is down or restarting, the connection
    /// was refused or closed, the pool timed out, the file stayed locked, or the store was
    /// closed. Nothing of the call was applied; the same call may succeed later (surfaces
    /// answer "try again later": REST 503 with `Retry-After`).
    #[error("{what}")]
    Unavailable {
        /// What could not be reached (`host:port/dbname` at most, never a password).
        what: String,
        /// The driver's answer, when there is one.
        #[source]
        source: Option<Cause>,
    },
    /// A store thread or task failed (panicked, was cancelled, or a lock it held was poisoned).
    #[error("{what}")]
    Task {
        /// Which.
        what: &'static str,
        /// The runtime's answer, when there is one.
        #[source]
        source: Option<Cause>,
    },
    /// A stored row breaks what the store guarantees (a vanished incident, a bad stored value);
    /// the message names it.
    #[error("{0}")]
    Corrupt(String),
}

impl StoreError {
    /// [`StoreError::Unavailable`] with `what` and its cause.
    pub fn unavailable(
        what: impl Into<String>,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::Unavailable {
            what: what.into(),
            source: source.map(Cause::from),
        }
    }

    /// Whether the database could not be reached (the call may succeed later).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Codec(std::sync::Arc::new(e))
    }
}

/// A change to one incident, run inside the store's transaction on the
/// freshly loaded incident. Returning `Err` rolls the change back.
pub type Mutation = Box<dyn FnOnce(&mut Incident) -> Result<Vec<EventKind>, DomainError> + Send>;

/// Builds the incident (and its opening events) that [`Store::upsert_detection`] inserts
/// when no open incident has the key; not called at all for a repeat.
pub type NewDetection = Box<dyn FnOnce() -> (Incident, Vec<EventKind>) + Send>;

/// A repeated detection of an open incident, which [`Store::upsert_detection`] applies itself
/// with the domain's rules ([`Incident::record_repeat`], [`Incident::record_repeat_throttled`]):
/// the store bumps the incident's counter columns (`occurrences = occurrences + 1`, last seen)
/// and appends evidence rows and the event, without rewriting the body — unless `escalate`
/// changes it.
#[derive(Debug, Clone, Default)]
pub struct RepeatDetection {
    /// Evidence of this detection (kept within [`crate::domain::incident::MAX_EVIDENCE`]).
    pub evidence: Vec<Evidence>,
    /// Put `detected_again` on the timeline at most once per this interval; `None`: on every
    /// repeat.
    pub log_every: Option<std::time::Duration>,
    /// Tag the incident with `tag` and raise its severity for `reason`, once (the tag says it was
    /// done): screening's repeated attempts. The one part of a repeat that rewrites the body.
    pub escalate: Option<(String, String)>,
}

impl RepeatDetection {
    /// Applies the repeat to `inc` (as loaded, or as the store last wrote it); returns the
    /// events to append and whether the body changed (anything beyond the counters and the
    /// evidence).
    pub fn apply(self, inc: &mut Incident, now: DateTime<Utc>) -> (Vec<EventKind>, bool) {
        let mut events: Vec<EventKind> = match self.log_every {
            None => vec![inc.record_repeat(self.evidence, now)],
            Some(every) => inc
                .record_repeat_throttled(self.evidence, every, now)
                .into_iter()
                .collect(),
        };
        let mut body_changed = false;
        if let Some((tag, reason)) = self.escalate
            && inc.add_tag(&tag)
        {
            body_changed = true;
            events.extend(inc.raise_severity(&reason, now));
        }
        (events, body_changed)
    }
}

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

/// How long a queued [`Activity`] row waits for company before a commit of its own, on
/// either backend ([`Store::record_activity`] does not wait for the commit).
pub(crate) const ACTIVITY_LINGER: std::time::Duration = std::time::Duration::from_millis(10);

/// How many queued [`Activity`] rows make a backend commit them at once.
pub(crate) const ACTIVITY_BATCH: usize = 512;

/// One screening verdict, as recorded activity (no prompt text).
#[derive(Debug, Clone)]
pub struct Activity {
    pub at: DateTime<Utc>,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub source: String,
    pub verdict: String,
    pub categories: Vec<String>,
    pub risk: f32,
    pub incident_id: Option<String>,
}

/// Result of [`Store::upsert_detection`].
#[derive(Debug, Clone)]
pub struct Upserted {
    pub incident: Incident,
    /// True when a new incident was opened, false when an open one was updated.
    pub created: bool,
}

/// Delivery state of an outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    /// Stored, not yet attempted.
    Pending,
    /// Failed with a retryable error; tried again at `next_attempt_at`.
    Retrying,
    /// Delivered.
    Sent,
    /// Given up (permanent error or attempts exhausted).
    Failed,
}

impl OutboxStatus {
    /// The stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Retrying => "retrying",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Failed => "failed",
        }
    }
}

/// One outbox row, claimed for delivery (see [`Store::claim_outbox`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    /// Notification id (the receiver's idempotency key).
    pub notification_id: String,
    /// Channel name.
    pub channel: String,
    /// Incident the notification is about.
    pub incident_id: IncidentId,
    /// `opened`, `escalated`, `acknowledged`, `resolved`, …
    pub event: String,
    /// Escalation level the message is for.
    pub level: u8,
    /// Severity when queued.
    pub severity: Severity,
    /// One-line summary.
    pub title: String,
    /// Plain-text body.
    pub body: String,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// Attempts made before this claim.
    pub attempts: u32,
}

/// The result of one delivery attempt, written by [`Store::finish_outbox`].
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxUpdate {
    /// New state.
    pub status: OutboxStatus,
    /// Attempts made including this one.
    pub attempts: u32,
    /// When to try again (retrying only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last error, for operators.
    pub last_error: Option<String>,
}

/// A containment in force (a blocked user or session).
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveContainment {
    /// The incident that imposed it.
    pub incident_id: IncidentId,
    /// `user` or `session`.
    pub subject_kind: String,
    /// The user id or session id.
    pub subject: String,
    /// The action, e.g. `block_user`.
    pub action: String,
    /// Why.
    pub reason: String,
    /// Since when.
    pub since: DateTime<Utc>,
}

/// One outbox row with its delivery state, as [`Store::export_outbox`] reads it and
/// [`Store::import`] writes it (times in microseconds since the epoch; leases are not moved).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OutboxRow {
    /// Notification id.
    pub id: String,
    pub channel: String,
    pub incident_id: String,
    /// The `notification_queued` event's data.
    pub payload: String,
    /// `pending`, `retrying`, `sent` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Rows for [`Store::import`]: incidents as stored, events that continue the chain exactly
/// (their own sequence numbers and hashes), and outbox rows.
#[derive(Debug, Clone, Default)]
pub struct ImportBatch {
    pub incidents: Vec<Incident>,
    pub events: Vec<Event>,
    pub outbox: Vec<OutboxRow>,
}

impl ImportBatch {
    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.incidents.len() + self.events.len() + self.outbox.len()
    }
    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The outcome of [`Store::verified_head`].
#[derive(Debug, Clone, PartialEq)]
pub enum HeadCheck {
    /// No events yet.
    Empty,
    /// The chain up to this head is intact.
    Head {
        /// Its sequence number.
        seq: i64,
        /// Its hash.
        hash: String,
    },
    /// The chain is broken (or no longer carries the hash signed before): do not sign.
    Broken(AuditReport),
}

/// One appended timeline event, as [`Store::changes_after`] reports it (for change feeds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its place in the global chain.
    pub seq: i64,
    /// The incident it belongs to.
    pub incident_id: String,
    /// The event kind (`created`, `escalated`, `notification_delivery`, …).
    pub kind: String,
    /// The event's `status` field, when it has one (a delivery's `sent`/`retrying`/`failed`).
    pub status: Option<String>,
}

/// The storage port.
///
/// Side tables follow the timeline: appending an [`EventKind::NotificationQueued`] also stores an
/// outbox row, [`EventKind::Contained`] / [`EventKind::ContainmentLifted`] add or lift a containment —
/// always in the same transaction as the event.
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

    /// As [`Store::insert`], once per idempotency `key`: if `key` was stored before, nothing is
    /// written and the incident it opened is returned (`created: false`); a stored key with a
    /// different `fingerprint` (another request body) is refused with [`DomainError::Invalid`].
    /// The key is stored in the transaction of the insert, so a retry can never open a second
    /// incident.
    async fn insert_idempotent(
        &self,
        key: String,
        fingerprint: String,
        incident: Incident,
        events: Vec<EventKind>,
        actor: String,
        now: DateTime<Utc>,
    ) -> Result<Upserted, StoreError>;

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

    /// If an open incident has `dedup_key`, applies `on_repeat` to it (see [`RepeatDetection`]:
    /// counters and evidence rows change in place, an atomic increment, so concurrent repeats
    /// from several processes are all counted); otherwise builds and inserts `new()` (whose
    /// `dedup_key` must be `dedup_key`).
    async fn upsert_detection(
        &self,
        dedup_key: String,
        new: NewDetection,
        on_repeat: RepeatDetection,
        actor: String,
        now: DateTime<Utc>,
    ) -> Result<Upserted, StoreError>;

    /// Records one screening verdict as activity (never the text itself). Returns before the
    /// row is committed: it is queued and committed with the next waited-for write or within
    /// about 10 ms (both backends batch these rows). Activity is never acknowledged to a
    /// caller, so it does not hold up the screening answer; [`Store::activity_count`] counts
    /// every row this process recorded before it.
    async fn record_activity(&self, a: Activity) -> Result<(), StoreError>;

    /// How many screening verdicts a user (or, without one, a session) had since `since`.
    async fn activity_count(
        &self,
        user_id: Option<String>,
        session_id: Option<String>,
        flagged_only: bool,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// The open (not resolved/closed) incident with this dedup key, if any.
    async fn find_open_by_dedup(&self, dedup_key: &str) -> Result<Option<Incident>, StoreError>;

    /// Verifies the whole hash chain against the signed checkpoint `pins` (may be empty), and
    /// compares the incident and containment rows with the state the events imply (one
    /// snapshot). An unreadable event is a failed report, not an error.
    async fn verify_audit_log(&self, pins: Pins) -> Result<AuditReport, StoreError>;

    /// The change sequence: the current head `seq` (0 when empty) and up to `limit` events after
    /// `after` in chain order (none when `after` is `None`). Cheap; polled by change feeds,
    /// including for changes other processes made on the same database.
    async fn changes_after(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<(i64, Vec<Change>), StoreError>;

    /// The chain head, after verifying every event from `after` (a `(seq, hash)` this process
    /// signed before; `None`: from the start) — what may be signed next.
    async fn verified_head(&self, after: Option<(i64, String)>) -> Result<HeadCheck, StoreError>;

    /// Claims one escalation step with a conditional update: only if the incident is still at
    /// `from_level` and open does it apply `f` (which must move it to a higher level). Returns
    /// `None` when another process (or a person) got there first; safe across processes.
    async fn claim_escalation(
        &self,
        id: &IncidentId,
        from_level: u8,
        actor: String,
        now: DateTime<Utc>,
        f: Mutation,
    ) -> Result<Option<Incident>, StoreError>;

    /// Claims up to `limit` due outbox rows for `owner` for `lease` (a conditional update), so two
    /// processes never deliver the same row at once. Expired leases can be claimed again.
    async fn claim_outbox(
        &self,
        owner: String,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError>;

    /// Records a delivery attempt of a row `owner` holds, applying `f` to its incident (the
    /// delivery event) in the same transaction. `None` when the lease was lost.
    async fn finish_outbox(
        &self,
        item: &OutboxItem,
        owner: String,
        update: OutboxUpdate,
        now: DateTime<Utc>,
        f: Mutation,
    ) -> Result<Option<Incident>, StoreError>;

    /// Containments in force for this user id or session id, as the timeline implies them (a
    /// containment row without its event blocks nobody; a deleted row still blocks).
    async fn active_containments(
        &self,
        user: Option<String>,
        session: Option<String>,
    ) -> Result<Vec<ActiveContainment>, StoreError>;

    /// Containments in force that match every filter given: subject kind (`key`, `upstream`,
    /// `principal`, `user`, …), subject, and the incident that imposed them.
    async fn active_containments_where(
        &self,
        subject_kind: Option<String>,
        subject: Option<String>,
        incident: Option<IncidentId>,
    ) -> Result<Vec<ActiveContainment>, StoreError>;

    /// Up to `limit` incidents with ids after `after` (in id order), for export.
    async fn export_incidents(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<Incident>, StoreError>;

    /// Up to `limit` events with `seq > after_seq`, in chain order, for export.
    async fn export_events(&self, after_seq: i64, limit: u32) -> Result<Vec<Event>, StoreError>;

    /// Every outbox row, for export.
    async fn export_outbox(&self) -> Result<Vec<OutboxRow>, StoreError>;

    /// Writes exported rows as they were, in one transaction: incidents, then events, each of
    /// which must continue the stored chain (next `seq`, linked `prev_hash`, a `hash` that
    /// matches its content; else [`DomainError::Invalid`] and nothing is written) and brings
    /// its containment rows, then outbox rows (replacing the pending rows the events queued).
    async fn import(&self, batch: ImportBatch) -> Result<(), StoreError>;
}
