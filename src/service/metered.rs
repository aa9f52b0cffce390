//! Metrics through the service: [`MeteredStore`] wraps the `Store` port so every committed
//! write is timed and its timeline events are counted (incidents opened, acknowledged, resolved,
//! escalated, notification deliveries, regulatory deadlines missed) — one place that sees every
//! write, whichever use case made it. [`IncidentService::prometheus_text`] renders the
//! exposition with the open-incident gauge read from the store.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::audit::{AuditReport, Pins};
use crate::domain::incident::{Event, EventKind, Incident, IncidentId};
use crate::metrics::Metrics;
use crate::store::{
    ActiveContainment, Activity, HeadCheck, ImportBatch, ListQuery, Mutation, NewDetection,
    OutboxItem, OutboxRow, OutboxUpdate, Page, RepeatDetection, Store, StoreError, Upserted,
};

use super::{IncidentService, ServiceError};

/// What a committed event means for the metrics (copied out of the mutation, small).
#[derive(Debug, Clone)]
enum Seen {
    Created {
        incident_type: &'static str,
        severity: &'static str,
        source: &'static str,
    },
    Acknowledged,
    Resolved,
    Escalated(u8),
    Delivery {
        channel: String,
        outcome: String,
    },
    Overdue,
}

fn seen(events: &[EventKind]) -> Vec<Seen> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::Created {
                incident_type,
                severity,
                detection_method,
                ..
            } => Some(Seen::Created {
                incident_type: incident_type.as_str(),
                severity: severity.as_str(),
                source: detection_method.as_str(),
            }),
            EventKind::Acknowledged { .. } => Some(Seen::Acknowledged),
            EventKind::Resolved { .. } => Some(Seen::Resolved),
            EventKind::Escalated { to, .. } => Some(Seen::Escalated(*to)),
            EventKind::NotificationDelivery {
                channel, status, ..
            } => Some(Seen::Delivery {
                channel: channel.clone(),
                outcome: status.clone(),
            }),
            EventKind::Overdue { .. } => Some(Seen::Overdue),
            _ => None,
        })
        .collect()
}

type Slot = Arc<Mutex<Vec<Seen>>>;

fn put(slot: &Slot, v: Vec<Seen>) {
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = v;
}

fn take(slot: &Slot) -> Vec<Seen> {
    std::mem::take(&mut *slot.lock().unwrap_or_else(PoisonError::into_inner))
}

/// `f`, recording what its events mean into the returned slot when it succeeds.
fn capture(f: Mutation, slot: &Slot) -> Mutation {
    let slot = slot.clone();
    Box::new(move |inc| {
        let r = f(inc);
        if let Ok(ev) = &r {
            put(&slot, seen(ev));
        }
        r
    })
}

/// The `Store` port with metrics: times each write and counts its committed events.
pub(crate) struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    pub(crate) fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    fn committed(
        &self,
        op: &str,
        started: Instant,
        inc: &Incident,
        seen: Vec<Seen>,
        now: DateTime<Utc>,
    ) {
        self.metrics
            .store_write(op, started.elapsed().as_secs_f64());
        let since_open = (now - inc.created_at()).num_milliseconds() as f64 / 1000.0;
        let sev = inc.severity().as_str();
        for s in seen {
            match s {
                Seen::Created {
                    incident_type,
                    severity,
                    source,
                } => self
                    .metrics
                    .incident_opened(incident_type, severity, source),
                Seen::Acknowledged => self.metrics.acknowledged(sev, since_open),
                Seen::Resolved => self.metrics.resolved(sev, since_open),
                Seen::Escalated(level) => self.metrics.escalated(level),
                Seen::Delivery { channel, outcome } => self.metrics.delivery(&channel, &outcome),
                Seen::Overdue => self.metrics.sla_breach("regulatory", sev),
            }
        }
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn insert(
        &self,
        incident: Incident,
        events: Vec<EventKind>,
        actor: String,
        now: DateTime<Utc>,
    ) -> Result<Incident, StoreError> {
        let s = seen(&events);
        let t = Instant::now();
        let inc = self.inner.insert(incident, events, actor, now).await?;
        self.committed("insert", t, &inc, s, now);
        Ok(inc)
    }

    async fn insert_idempotent(
        &self,
        key: String,
        fingerprint: String,
        incident: Incident,
        events: Vec<EventKind>,
        actor: String,
        now: DateTime<Utc>,
    ) -> Result<Upserted, StoreError> {
        let s = seen(&events);
        let t = Instant::now();
        let up = self
            .inner
            .insert_idempotent(key, fingerprint, incident, events, actor, now)
            .await?;
        let s = if up.created { s } else { Vec::new() };
        self.committed("insert", t, &up.incident, s, now);
        Ok(up)
    }

    async fn get(&self, id: &IncidentId) -> Result<Option<Incident>, StoreError> {
        self.inner.get(id).await
    }

    async fn timeline(&self, id: &IncidentId) -> Result<Vec<Event>, StoreError> {
        self.inner.timeline(id).await
    }

    async fn list(&self, q: ListQuery) -> Result<Page, StoreError> {
        self.inner.list(q).await
    }

    async fn update(
        &self,
        id: &IncidentId,
        actor: String,
        now: DateTime<Utc>,
        f: Mutation,
    ) -> Result<Incident, StoreError> {
        let slot = Slot::default();
        let t = Instant::now();
        let inc = self.inner.update(id, actor, now, capture(f, &slot)).await?;
        self.committed("update", t, &inc, take(&slot), now);
        Ok(inc)
    }

    async fn upsert_detection(
        &self,
        dedup_key: String,
        new: NewDetection,
        on_repeat: RepeatDetection,
        actor: String,
        now: DateTime<Utc>,
    ) -> Result<Upserted, StoreError> {
        let slot = Slot::default();
        let s2 = slot.clone();
        let new: NewDetection = Box::new(move || {
            let (inc, ev) = new();
            put(&s2, seen(&ev));
            (inc, ev)
        });
        let t = Instant::now();
        let up = self
            .inner
            // A repeat's events (`detected_again`, a severity change) count for no metric.
            .upsert_detection(dedup_key, new, on_repeat, actor, now)
            .await?;
        self.committed("upsert_detection", t, &up.incident, take(&slot), now);
        Ok(up)
    }

    async fn record_activity(&self, a: Activity) -> Result<(), StoreError> {
        let t = Instant::now();
        self.inner.record_activity(a).await?;
        self.metrics
            .store_write("record_activity", t.elapsed().as_secs_f64());
        Ok(())
    }

    async fn activity_count(
        &self,
        user_id: Option<String>,
        session_id: Option<String>,
        flagged_only: bool,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.inner
            .activity_count(user_id, session_id, flagged_only, since)
            .await
    }

    async fn find_open_by_dedup(&self, dedup_key: &str) -> Result<Option<Incident>, StoreError> {
        self.inner.find_open_by_dedup(dedup_key).await
    }

    async fn verify_audit_log(&self, pins: Pins) -> Result<AuditReport, StoreError> {
        self.inner.verify_audit_log(pins).await
    }

    async fn verified_head(&self, after: Option<(i64, String)>) -> Result<HeadCheck, StoreError> {
        self.inner.verified_head(after).await
    }

    async fn claim_escalation(
        &self,
        id: &IncidentId,
        from_level: u8,
        actor: String,
        now: DateTime<Utc>,
        f: Mutation,
    ) -> Result<Option<Incident>, StoreError> {
        let slot = Slot::default();
        let t = Instant::now();
        let r = self
            .inner
            .claim_escalation(id, from_level, actor, now, capture(f, &slot))
            .await?;
        if let Some(inc) = &r {
            self.committed("claim_escalation", t, inc, take(&slot), now);
        }
        Ok(r)
    }

    async fn claim_outbox(
        &self,
        owner: String,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let t = Instant::now();
        let r = self.inner.claim_outbox(owner, now, lease, limit).await?;
        self.metrics
            .store_write("claim_outbox", t.elapsed().as_secs_f64());
        Ok(r)
    }

    async fn finish_outbox(
        &self,
        item: &OutboxItem,
        owner: String,
        update: OutboxUpdate,
        now: DateTime<Utc>,
        f: Mutation,
    ) -> Result<Option<Incident>, StoreError> {
        let slot = Slot::default();
        let t = Instant::now();
        let r = self
            .inner
            .finish_outbox(item, owner, update, now, capture(f, &slot))
            .await?;
        if let Some(inc) = &r {
            self.committed("finish_outbox", t, inc, take(&slot), now);
        }
        Ok(r)
    }

    async fn active_containments(
        &self,
        user: Option<String>,
        session: Option<String>,
    ) -> Result<Vec<ActiveContainment>, StoreError> {
        self.inner.active_containments(user, session).await
    }

    async fn active_containments_where(
        &self,
        subject_kind: Option<String>,
        subject: Option<String>,
        incident: Option<IncidentId>,
    ) -> Result<Vec<ActiveContainment>, StoreError> {
        self.inner
            .active_containments_where(subject_kind, subject, incident)
            .await
    }

    async fn changes_after(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<(i64, Vec<crate::store::Change>), StoreError> {
        self.inner.changes_after(after, limit).await
    }

    // Export and import move whole histories between stores; they are not counted as new
    // incidents or transitions.
    async fn export_incidents(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<Incident>, StoreError> {
        self.inner.export_incidents(after, limit).await
    }

    async fn export_events(&self, after_seq: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.inner.export_events(after_seq, limit).await
    }

    async fn export_outbox(&self) -> Result<Vec<OutboxRow>, StoreError> {
        self.inner.export_outbox().await
    }

    async fn import(&self, batch: ImportBatch) -> Result<(), StoreError> {
        self.inner.import(batch).await
    }
}

/// Largest number of open incidents the gauge counts (pages of [`super::LIST_MAX`]).
const OPEN_SCAN_MAX: usize = 100_000;

impl IncidentService {
    /// The metrics this service records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The Prometheus `/metrics` exposition (OpenMetrics text), with the open-incident gauge
    /// counted from the store now.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] if the store cannot list the open incidents.
    pub async fn prometheus_text(&self) -> Result<String, ServiceError> {
        let mut counts: Vec<(&str, i64)> =
            crate::metrics::SEVERITIES.iter().map(|s| (*s, 0)).collect();
        let mut cursor = None;
        let mut seen = 0usize;
        loop {
            let page = self
                .store
                .list(ListQuery {
                    open_only: true,
                    limit: super::LIST_MAX,
                    cursor,
                    ..ListQuery::default()
                })
                .await?;
            for inc in &page.items {
                if let Some(c) = counts
                    .iter_mut()
                    .find(|(s, _)| *s == inc.severity().as_str())
                {
                    c.1 += 1;
                }
            }
            seen += page.items.len();
            match page.next_cursor {
                Some(c) if seen < OPEN_SCAN_MAX => cursor = Some(c),
                _ => break,
            }
        }
        Ok(self.metrics.render(&counts))
    }
}
