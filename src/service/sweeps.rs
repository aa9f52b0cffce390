//! Background sweeps of the service: the escalation sweep (one claimed step per due incident)
//! and the notification outbox (claim, deliver through the notifier, record each attempt, open
//! the meta-incident after repeated failure). Safe with several processes on one database.
//!
//! May import: `crate::domain`, `crate::store`, `crate::notify`, `crate::service`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::incident::{
    self, DomainError, EventKind, Incident, IncidentType, NewIncident, Severity,
};
use crate::domain::opening::{self, StepReason};
use crate::notify::{self, Notification, RetryDecision};
use crate::service::{IncidentService, ServiceError};
use crate::store::{OutboxItem, OutboxStatus, OutboxUpdate, StoreError};

/// Most outbox rows one worker claims per tick.
const OUTBOX_BATCH: u32 = 32;

/// Outbox state held by the service: the worker id used for outbox leases.
#[derive(Debug)]
pub struct OutboxState {
    worker_id: String,
}

impl Default for OutboxState {
    fn default() -> Self {
        Self {
            worker_id: format!("worker-{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

impl IncidentService {
    // -----------------------------------------------------------------------------------------
    // Escalation sweep
    // -----------------------------------------------------------------------------------------

    /// Escalates every unacknowledged incident whose level's time has elapsed (one level per
    /// incident per sweep; the next sweep catches up), and escalates serious incidents whose
    /// reporting deadline is near. Each step is claimed with a conditional update, so with
    /// several processes on one database it happens exactly once. Returns the steps taken.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] if the store fails (the first failure, after every other
    /// incident of the sweep was tried).
    pub async fn escalation_sweep(&self) -> Result<usize, ServiceError> {
        let now = self.now();
        let cfg = self.config.clone();
        let mut taken = 0usize;
        let mut first_error: Option<ServiceError> = None;
        let mut cursor = None;
        loop {
            let page = self
                .store
                .list(crate::store::ListQuery {
                    open_only: true,
                    limit: crate::service::LIST_MAX,
                    cursor: cursor.clone(),
                    ..Default::default()
                })
                .await?;
            for inc in &page.items {
                // One incident's failure must not hold back the others' escalations: the sweep
                // goes on and reports the first error at the end.
                let steps = async {
                    let mut n = 0usize;
                    if inc.overdue_unrecorded(now) {
                        n += usize::from(self.record_overdue(inc, now).await?);
                    }
                    if let Some((from, reason)) = opening::due_step(inc, cfg.rules(), now) {
                        n += usize::from(self.claim_step(inc, from, reason, now).await?);
                    }
                    Ok::<usize, ServiceError>(n)
                };
                match steps.await {
                    Ok(n) => taken += n,
                    Err(e) => {
                        tracing::warn!(incident = %inc.id(), error = %e, "escalation step failed; the sweep goes on with the other incidents");
                        first_error.get_or_insert(e);
                    }
                }
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(taken),
        }
    }

    /// Records the passed regulatory deadline of `inc` (once) and notifies its level's channels.
    async fn record_overdue(
        &self,
        inc: &Incident,
        now: DateTime<Utc>,
    ) -> Result<bool, ServiceError> {
        let nb = self.notification_builder();
        let cfg = self.config.clone();
        let r = self
            .store
            .update(
                inc.id(),
                "escalation-sweep".into(),
                now,
                Box::new(move |inc| {
                    let mut ev = vec![inc.record_overdue(now)?];
                    let ch = cfg
                        .escalation
                        .level(inc.escalation_level())
                        .map(|l| l.channels.clone())
                        .unwrap_or_default();
                    ev.extend(nb.build(inc, "overdue", &ch, now));
                    Ok(ev)
                }),
            )
            .await;
        match r {
            Ok(_) => Ok(true),
            // Another process recorded it (or a report was filed) meanwhile.
            Err(StoreError::Domain(DomainError::Superseded(_))) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn claim_step(
        &self,
        inc: &Incident,
        from: u8,
        reason: StepReason,
        now: DateTime<Utc>,
    ) -> Result<bool, ServiceError> {
        let nb = self.notification_builder();
        let cfg = self.config.clone();
        let sla_breach = matches!(reason, StepReason::Timeout(_));
        let r = self
            .store
            .claim_escalation(
                inc.id(),
                from,
                "escalation-sweep".into(),
                now,
                Box::new(move |inc| {
                    if inc.escalation_level() != from {
                        return Err(DomainError::Superseded(format!(
                            "incident {} left level {from} meanwhile",
                            inc.id()
                        )));
                    }
                    let mut ev = match &reason {
                        StepReason::Timeout(t) => {
                            if inc.acknowledged_at().is_some() {
                                return Err(DomainError::Superseded(format!(
                                    "incident {} was acknowledged meanwhile",
                                    inc.id()
                                )));
                            }
                            vec![inc.escalate(t, "escalation-sweep", now)?]
                        }
                        StepReason::Deadline(t) => {
                            vec![inc.escalate_for_deadline(t, "escalation-sweep", now)?]
                        }
                    };
                    let ch = cfg
                        .escalation
                        .level(inc.escalation_level())
                        .map(|l| l.channels.clone())
                        .unwrap_or_default();
                    ev.extend(nb.build(inc, "escalated", &ch, now));
                    Ok(ev)
                }),
            )
            .await;
        let Some(inc) = claimed(r)? else {
            return Ok(false);
        };
        if sla_breach {
            self.metrics.sla_breach("response", inc.severity().as_str());
        }
        Ok(true)
    }

    // -----------------------------------------------------------------------------------------
    // Outbox
    // -----------------------------------------------------------------------------------------

    /// Delivers due notifications from the outbox: claims rows with a lease (so two processes
    /// never deliver the same row at once), delivers them concurrently, and records each attempt
    /// (sent / retrying with exponential backoff / failed) on the incident's timeline. A row that
    /// fails for good opens (or repeats) the meta-incident "notification delivery failing" for its
    /// channel. Returns how many deliveries were attempted.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] if the store fails.
    pub async fn drain_outbox(&self) -> Result<usize, ServiceError> {
        let now = self.now();
        let lease = self.config().notify.timeout + Duration::from_secs(30);
        let items = self
            .store
            .claim_outbox(self.outbox.worker_id.clone(), now, lease, OUTBOX_BATCH)
            .await?;
        let n = items.len();
        let results =
            futures::future::join_all(items.into_iter().map(|it| self.deliver_one(it))).await;
        for r in results {
            r?;
        }
        Ok(n)
    }

    async fn deliver_one(&self, it: OutboxItem) -> Result<(), ServiceError> {
        let cfg = self.config.clone();
        let n = Notification {
            id: it.notification_id.clone(),
            incident_id: it.incident_id.to_string(),
            event: it.event.clone(),
            severity: it.severity,
            level: it.level,
            title: it.title.clone(),
            body: it.body.clone(),
            created_at: it.created_at,
        };
        let result = self.notifier.deliver(&it.channel, &n).await;
        let now = self.now();
        let attempts = it.attempts.saturating_add(1);
        let (update, detail) = match &result {
            Ok(r) => (
                OutboxUpdate {
                    status: OutboxStatus::Sent,
                    attempts,
                    next_attempt_at: None,
                    last_error: None,
                },
                r.status.map(|s| format!("status {s}")),
            ),
            Err(e) => {
                let (status, next) = match notify::retry_decision(
                    e,
                    attempts,
                    &it.notification_id,
                    &cfg.notify,
                    now,
                ) {
                    RetryDecision::RetryAt(t) => (OutboxStatus::Retrying, Some(t)),
                    RetryDecision::GiveUp => (OutboxStatus::Failed, None),
                };
                (
                    OutboxUpdate {
                        status,
                        attempts,
                        next_attempt_at: next,
                        last_error: Some(e.to_string()),
                    },
                    Some(e.to_string()),
                )
            }
        };
        if let Err(e) = &result {
            tracing::warn!(notification_id = %it.notification_id, channel = %it.channel, attempt = attempts, error = %e, "notification delivery failed");
        }
        let status = update.status;
        let (nid, channel, next) = (
            it.notification_id.clone(),
            it.channel.clone(),
            update.next_attempt_at,
        );
        let done = self
            .store
            .finish_outbox(
                &it,
                self.outbox.worker_id.clone(),
                update,
                now,
                Box::new(move |_inc| {
                    Ok(vec![EventKind::NotificationDelivery {
                        notification_id: nid,
                        channel,
                        status: status.as_str().to_string(),
                        attempt: attempts,
                        detail: detail.map(|d| incident::truncate_chars(&d, 300)),
                        next_attempt_at: next,
                    }])
                }),
            )
            .await?;
        if done.is_some() && status == OutboxStatus::Failed {
            self.delivery_failing(&it, attempts, result.err()).await?;
        }
        Ok(())
    }

    /// Opens (or repeats) the meta-incident for a channel whose deliveries fail for good.
    async fn delivery_failing(
        &self,
        it: &OutboxItem,
        attempts: u32,
        err: Option<notify::DeliveryError>,
    ) -> Result<(), ServiceError> {
        let now = self.now();
        let reason = err.map(|e| e.to_string()).unwrap_or_default();
        let (mut inc, mut events) = Incident::open(
            NewIncident {
                affected_system: Some(format!("notify channel {}", it.channel)),
                tags: vec!["meta:notification-delivery".into()],
                dedup_key: Some(format!("notify-failing|{}", it.channel)),
                ..NewIncident::new(
                    IncidentType::Other,
                    Severity::High,
                    incident::DetectionMethod::Monitoring,
                    format!("Notification delivery failing on channel {}", it.channel),
                    format!(
                        "Notification {} about incident {} could not be delivered to channel {} after {attempts} attempt(s): {}",
                        it.notification_id,
                        it.incident_id,
                        it.channel,
                        incident::truncate_chars(&reason, 300)
                    ),
                )
            },
            now,
        );
        let key = format!("notify-failing|{}", it.channel);
        let cfg = self.config.clone();
        let channel = it.channel.clone();
        self.store
            .upsert_detection(
                key,
                Box::new(move || {
                    opening::open_events(cfg.rules(), &mut inc, &mut events, now, Some(&channel));
                    (inc, events)
                }),
                crate::store::RepeatDetection::default(),
                "notifier".into(),
                now,
            )
            .await?;
        Ok(())
    }
}

/// What a claimed escalation step came to: taken (the incident after it); not taken because
/// another process claimed it or the incident moved on (`None`: the expected races); any other
/// failure, including a domain rule the step broke, is an error for the caller to see.
fn claimed(r: Result<Option<Incident>, StoreError>) -> Result<Option<Incident>, ServiceError> {
    match r {
        Ok(inc) => Ok(inc),
        Err(StoreError::Domain(DomainError::Superseded(_))) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::detect::Engine;
    use crate::domain::clock::ManualClock;
    use crate::domain::incident::DomainError;
    use crate::notify::ChannelNotifier;
    use crate::service::{Limits, ReportInput};
    use crate::store::sqlite::SqliteStore;

    fn service(dir: &std::path::Path) -> IncidentService {
        let config = Arc::new(Config::load(None).unwrap());
        IncidentService::new(
            SqliteStore::open(dir.join("t.db")).unwrap(),
            Arc::new(Engine::builtin().unwrap()),
            Arc::new(ManualClock::new(Utc::now())),
            Arc::new(ChannelNotifier::new(config.notify.clone())),
            Limits::default(),
            config,
        )
    }

    async fn report(svc: &IncidentService) -> Incident {
        svc.report(ReportInput {
            incident_type: "performance".into(),
            description: "answers are slow".into(),
            reporter_email: "oncall@example.com".into(),
            severity: Some("medium".into()),
            affected_system: None,
        })
        .await
        .unwrap()
    }

    /// Only the expected races ("already at/after this step": claimed elsewhere, level moved,
    /// acknowledged meanwhile) are skipped; a step that breaks a domain rule is an error.
    #[tokio::test]
    async fn claim_step_skips_only_superseded_steps() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path());
        let now = svc.now();
        let timeout = || StepReason::Timeout("not acknowledged in time".into());

        // Acknowledged after the sweep read it: skipped, nothing changes.
        let inc = report(&svc).await;
        svc.acknowledge(inc.id().as_str(), "ann").await.unwrap();
        let from = inc.escalation_level();
        assert!(!svc.claim_step(&inc, from, timeout(), now).await.unwrap());
        let (after, _) = svc.get(inc.id().as_str()).await.unwrap();
        assert_eq!(after.escalation_level(), from);

        // Another process took the step: the claim finds the level moved, skipped.
        let inc = report(&svc).await;
        let from = inc.escalation_level();
        assert!(svc.claim_step(&inc, from, timeout(), now).await.unwrap());
        assert!(!svc.claim_step(&inc, from, timeout(), now).await.unwrap());

        // A step from the top level breaks the escalation rule: an error, not a skip.
        let inc = report(&svc).await;
        let mut top = inc.clone();
        while top.escalation_level() < incident::MAX_LEVEL {
            top = svc
                .escalate(inc.id().as_str(), Some("r".into()), "t")
                .await
                .unwrap();
        }
        let e = svc
            .claim_step(&top, incident::MAX_LEVEL, timeout(), now)
            .await
            .unwrap_err();
        assert!(
            matches!(e, ServiceError::Conflict(ref m) if m.contains("highest level")),
            "{e}"
        );
        let (after, _) = svc.get(inc.id().as_str()).await.unwrap();
        assert_eq!(after.escalation_level(), incident::MAX_LEVEL, "rolled back");
    }

    #[test]
    fn claimed_maps_races_to_false_and_everything_else_through() {
        let superseded = StoreError::Domain(DomainError::Superseded("moved".into()));
        assert!(claimed(Err(superseded)).unwrap().is_none());
        assert!(claimed(Ok(None)).unwrap().is_none());
        let conflict = StoreError::Domain(DomainError::Conflict("broken rule".into()));
        assert!(matches!(
            claimed(Err(conflict)),
            Err(ServiceError::Conflict(_))
        ));
    }
}
