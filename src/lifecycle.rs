//! The incident lifecycle (issue #4): classification, the 8-step workflow,
//! acknowledgement / update / resolution, escalation sweeps, the notification
//! outbox, containment, post-incident documentation and the regulatory clock.
//!
//! Use cases are `impl IncidentService` blocks; the decisions themselves are the
//! pure functions of [`crate::policy`] (classification, escalation, deadlines)
//! and the pure timeline analysis in this module ([`response_metrics`],
//! [`build_document`]). The background loop ([`crate::monitor`]) calls
//! [`IncidentService::escalation_sweep`] and [`IncidentService::drain_outbox`]
//! every tick; both are safe with several server processes on one database
//! (conditional-update claims in the store).
//!
//! May import: the domain (`incident`, `policy`, `notify` for delivery), the
//! store port and the service. Never rmcp, axum or SQL crates.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::detect::Verdict;
use crate::incident::{
    self, DomainError, Event, EventKind, Incident, IncidentId, IncidentType, SeriousIncident,
    Severity, Status, WorkflowStep,
};
use crate::notify::{self, DeliveryOptions, Notification, RetryDecision};
use crate::policy::{self, EscalationState, SeriousCategory};
use crate::service::{IncidentService, ScreenInput, ScreenOutcome, ServiceError};
use crate::store::{ActiveContainment, OutboxItem, OutboxStatus, OutboxUpdate, StoreError};

/// Most outbox rows one worker claims per tick.
const OUTBOX_BATCH: u32 = 32;

/// Lifecycle state held by the service: the worker id used for outbox leases and
/// the HTTP client for webhook / Slack / PagerDuty deliveries.
pub struct LifecycleState {
    worker_id: String,
    http: OnceLock<reqwest::Client>,
}

impl Default for LifecycleState {
    fn default() -> Self {
        Self {
            worker_id: format!("worker-{}", uuid::Uuid::new_v4().simple()),
            http: OnceLock::new(),
        }
    }
}

impl fmt::Debug for LifecycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LifecycleState")
            .field("worker_id", &self.worker_id)
            .finish()
    }
}

impl LifecycleState {
    /// This process's outbox lease owner id.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    fn http(&self) -> Result<&reqwest::Client, ServiceError> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        let c = reqwest::Client::builder()
            .build()
            .map_err(|e| ServiceError::Internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(self.http.get_or_init(|| c))
    }
}

// ---------------------------------------------------------------------------------------------
// Severity: one enum on each side of the policy boundary, converted here.
// ---------------------------------------------------------------------------------------------

/// The kinds a classification override may name for this incident: its attack category
/// (`prompt_injection`, `data_exfiltration`, …) first, then its type (`security`, …).
fn override_kind(inc: &Incident, policy: &policy::ClassificationPolicy) -> String {
    let cands = [
        inc.category.map(|c| c.as_str().to_string()),
        Some(inc.incident_type.as_str().to_string()),
    ];
    cands
        .iter()
        .flatten()
        .find(|k| {
            policy
                .overrides
                .iter()
                .any(|o| o.kind.eq_ignore_ascii_case(k))
        })
        .or(cands.iter().flatten().next())
        .cloned()
        .unwrap_or_default()
}

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

fn conflict(message: impl Into<String>) -> DomainError {
    DomainError::Conflict(message.into())
}

fn clean(
    field: &'static str,
    v: Option<String>,
    max: usize,
) -> Result<Option<String>, ServiceError> {
    match v.map(|s| s.trim().to_string()) {
        None => Ok(None),
        Some(s) if s.is_empty() => Err(invalid(field, "is empty; omit it or give a value")),
        Some(s) if s.len() > max => Err(invalid(field, format!("is longer than {max} bytes"))),
        Some(s) => Ok(Some(s)),
    }
}

fn fmt_dur(d: Duration) -> String {
    humantime_serde::re::humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

fn level_name(cfg: &crate::config::Config, level: u8) -> String {
    cfg.escalation
        .level(level)
        .map_or_else(|| format!("level {level}"), |l| l.name.clone())
}

/// Input of [`IncidentService::update_incident`], as received.
#[derive(Debug, Clone, Default)]
pub struct UpdateInput {
    pub status: Option<String>,
    pub owner: Option<String>,
    pub note: Option<String>,
    pub root_cause: Option<String>,
    pub corrective_action: Option<String>,
    pub severity: Option<String>,
    pub step: Option<String>,
    pub mark_serious: Option<String>,
    pub widespread: Option<bool>,
    pub regulatory_reported: Option<bool>,
}

/// Containment actions of `contain_incident`.
pub const CONTAIN_ACTIONS: &[&str] = &["block_user", "block_session", "block_user_and_session"];

/// What `document_incident` wrote.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DocumentOutcome {
    /// Path of the JSON document.
    pub json_path: String,
    /// Path of the Markdown postmortem.
    pub markdown_path: String,
    /// The document.
    pub document: PostIncidentDocument,
}

impl IncidentService {
    /// Response measurements (MTTA/MTTR inputs, SLA met, escalations) of an
    /// incident from its timeline, as of the service's clock.
    pub fn response_metrics(&self, inc: &Incident, tl: &[Event]) -> ResponseMetrics {
        response_metrics(inc, tl, self.now())
    }

    // -----------------------------------------------------------------------------------------
    // Classification and notifications
    // -----------------------------------------------------------------------------------------

    /// Applies the classification policy to a freshly opened incident (severity override,
    /// start level) and queues its "opened" notifications. Called by every path that opens an
    /// incident, before it is stored, so everything lands in one transaction.
    pub(crate) fn on_open(
        &self,
        inc: &mut Incident,
        events: &mut Vec<EventKind>,
        now: DateTime<Utc>,
    ) {
        open_events(self.config(), inc, events, now, None);
    }
}

/// What opening an incident entails: classification (severity, SLA, starting escalation
/// level), the classification step, and notifications to the severity's and the level's
/// channels (except `exclude_channel`).
pub(crate) fn open_events(
    cfg: &crate::config::Config,
    inc: &mut Incident,
    events: &mut Vec<EventKind>,
    now: DateTime<Utc>,
    exclude_channel: Option<&str>,
) {
    let (ev, start) = classify_event(inc, cfg);
    events.push(ev);
    inc.escalation_level = inc.escalation_level.max(start);
    events.extend(inc.enter_step(WorkflowStep::Classification, now));
    let mut channels = cfg.classification.rule(inc.severity).channels.clone();
    if let Some(l) = cfg.escalation.level(inc.escalation_level) {
        channels.extend(l.channels.iter().cloned());
    }
    channels.retain(|c| Some(c.as_str()) != exclude_channel);
    events.extend(notifications_for(cfg, inc, "opened", &channels, now));
}

impl IncidentService {
    fn level_channels(&self, level: u8) -> Vec<String> {
        self.config()
            .escalation
            .level(level)
            .map(|l| l.channels.clone())
            .unwrap_or_default()
    }

    // -----------------------------------------------------------------------------------------
    // Workflow use cases
    // -----------------------------------------------------------------------------------------

    /// A responder takes the incident: stops the escalation clock.
    ///
    /// # Errors
    /// [`ServiceError::Conflict`] when it is already acknowledged, resolved or closed;
    /// [`ServiceError::Invalid`] for an empty responder.
    pub async fn acknowledge(&self, id: &str, responder: &str) -> Result<Incident, ServiceError> {
        let id: IncidentId = id.parse()?;
        let responder = clean("responder", Some(responder.to_string()), 200)?
            .ok_or_else(|| invalid("responder", "is required"))?;
        let now = self.now();
        let by = responder.clone();
        let svc_notes = self.level_channels_all();
        let queued = self.notification_builder();
        Ok(self
            .store
            .update(
                &id,
                responder,
                now,
                Box::new(move |inc| {
                    if inc.status.is_terminal() {
                        return Err(conflict(format!(
                            "incident {} is {}; only open incidents can be acknowledged",
                            inc.id, inc.status
                        )));
                    }
                    if let Some(at) = inc.acknowledged_at {
                        return Err(conflict(format!(
                            "incident {} was already acknowledged by {} at {}; the escalation clock is stopped",
                            inc.id,
                            inc.acknowledged_by.as_deref().unwrap_or("someone"),
                            at.to_rfc3339()
                        )));
                    }
                    let mut ev = Vec::new();
                    if inc.status == Status::New {
                        ev.push(inc.transition(Status::Acknowledged, now)?);
                    } else {
                        inc.acknowledged_at = Some(now);
                        inc.updated_at = now;
                    }
                    inc.acknowledged_by = Some(by.clone());
                    if inc.owner.is_none() {
                        inc.owner = Some(by.clone());
                    }
                    ev.push(EventKind::Acknowledged { by });
                    let channels = svc_notes
                        .get(usize::from(inc.escalation_level.saturating_sub(1)))
                        .cloned()
                        .unwrap_or_default();
                    ev.extend(queued.build(inc, "acknowledged", &channels, now));
                    Ok(ev)
                }),
            )
            .await?)
    }

    fn level_channels_all(&self) -> Vec<Vec<String>> {
        (1..=incident::MAX_LEVEL)
            .map(|l| self.level_channels(l))
            .collect()
    }

    /// A detached notification builder (for use inside store mutations).
    fn notification_builder(&self) -> NotificationBuilder {
        NotificationBuilder {
            cfg: self.config.clone(),
        }
    }

    /// Changes status, owner, severity, workflow step, root cause, corrective actions, notes and
    /// the regulatory block. Each change is one timeline event.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] for bad values (naming the argument), [`ServiceError::Conflict`]
    /// for an illegal transition (naming the allowed ones).
    pub async fn update_incident(
        &self,
        id: &str,
        input: UpdateInput,
        actor: &str,
    ) -> Result<Incident, ServiceError> {
        let id: IncidentId = id.parse()?;
        let status = input
            .status
            .as_deref()
            .map(|s| s.parse::<Status>().map_err(|m| invalid("status", m)))
            .transpose()?;
        match status {
            Some(Status::Resolved) => {
                return Err(invalid(
                    "status",
                    "resolving needs a resolution and a root cause; call resolve_incident instead",
                ));
            }
            Some(Status::Acknowledged) => {
                return Err(invalid(
                    "status",
                    "acknowledging needs a responder; call acknowledge_incident instead",
                ));
            }
            _ => {}
        }
        let severity = input
            .severity
            .as_deref()
            .map(|s| s.parse::<Severity>().map_err(|m| invalid("severity", m)))
            .transpose()?;
        let step = input
            .step
            .as_deref()
            .map(|s| s.parse::<WorkflowStep>().map_err(|m| invalid("step", m)))
            .transpose()?;
        let owner = clean("owner", input.owner, 200)?;
        let note = clean("note", input.note, 4000)?;
        let root_cause = clean("root_cause", input.root_cause, 4000)?;
        let corrective = clean("corrective_action", input.corrective_action, 2000)?;
        let serious = input
            .mark_serious
            .as_deref()
            .map(|s| {
                serde_json::from_value::<SeriousCategory>(serde_json::Value::String(
                    s.trim().to_ascii_lowercase(),
                ))
                .map_err(|_| {
                    invalid(
                        "mark_serious",
                        format!(
                            "'{}' is not one of: death, health_harm, critical_infrastructure, fundamental_rights, property_or_environment (EU AI Act Art. 3(49) a-d)",
                            incident::truncate_chars(s, 40)
                        ),
                    )
                })
            })
            .transpose()?;
        if input.widespread.is_some() && serious.is_none() {
            return Err(invalid(
                "widespread",
                "only applies together with mark_serious",
            ));
        }
        let reported = input.regulatory_reported.unwrap_or(false);
        if status.is_none()
            && severity.is_none()
            && step.is_none()
            && owner.is_none()
            && note.is_none()
            && root_cause.is_none()
            && corrective.is_none()
            && serious.is_none()
            && !reported
        {
            return Err(invalid(
                "arguments",
                "nothing to change; give at least one of status, owner, note, root_cause, corrective_action, severity, step, mark_serious, regulatory_reported",
            ));
        }
        let now = self.now();
        let cfg = self.config.clone();
        let by = actor.to_string();
        let nb = self.notification_builder();
        Ok(self
            .store
            .update(
                &id,
                actor.to_string(),
                now,
                Box::new(move |inc| {
                    let mut ev = Vec::new();
                    if let Some(to) = status {
                        ev.push(inc.transition(to, now)?);
                        if inc.acknowledged_at.is_none() && !to.is_terminal() {
                            inc.acknowledged_at = Some(now);
                            inc.acknowledged_by = Some(by.clone());
                            ev.push(EventKind::Acknowledged { by: by.clone() });
                        }
                        let s = match to {
                            Status::Contained => Some(WorkflowStep::Containment),
                            Status::Investigating => Some(WorkflowStep::Investigation),
                            _ => None,
                        };
                        ev.extend(s.and_then(|s| inc.enter_step(s, now)));
                    }
                    if inc.status == Status::Closed && status != Some(Status::Closed) {
                        return Err(conflict(format!(
                            "incident {} is closed; it cannot change any more",
                            inc.id
                        )));
                    }
                    if let Some(sev) = severity
                        && sev != inc.severity
                    {
                        inc.severity = sev;
                        ev.push(EventKind::FieldUpdated {
                            field: "severity".into(),
                            value: sev.to_string(),
                        });
                        let (c, floor) = classify_event(inc, &cfg);
                        ev.push(c);
                        while inc.escalation_level < floor && !inc.status.is_terminal() {
                            ev.push(inc.escalate(
                                &format!("{} severity requires at least level {floor}", inc.severity),
                                "classification",
                                now,
                            )?);
                            let ch = cfg
                                .escalation
                                .level(inc.escalation_level)
                                .map(|l| l.channels.clone())
                                .unwrap_or_default();
                            ev.extend(nb.build(inc, "escalated", &ch, now));
                        }
                    }
                    if let Some(s) = step {
                        match inc.enter_step(s, now) {
                            Some(e) => ev.push(e),
                            None => {
                                return Err(conflict(format!(
                                    "incident {} is at step {}; steps only move forward and each is entered once (order: {})",
                                    inc.id,
                                    inc.step,
                                    WorkflowStep::ALL
                                        .iter()
                                        .map(|s| s.as_str())
                                        .collect::<Vec<_>>()
                                        .join(" → ")
                                )));
                            }
                        }
                    }
                    if let Some(o) = owner {
                        inc.owner = Some(o.clone());
                        ev.push(EventKind::FieldUpdated {
                            field: "owner".into(),
                            value: o,
                        });
                    }
                    if let Some(r) = root_cause {
                        inc.root_cause = Some(r.clone());
                        ev.push(EventKind::FieldUpdated {
                            field: "root_cause".into(),
                            value: r,
                        });
                    }
                    if let Some(c) = corrective {
                        inc.corrective_actions.push(c.clone());
                        ev.push(EventKind::FieldUpdated {
                            field: "corrective_action".into(),
                            value: c,
                        });
                    }
                    if let Some(cat) = serious {
                        let widespread = input.widespread.unwrap_or(false);
                        let aware_at = inc.serious.as_ref().map_or(now, |s| s.aware_at);
                        let (_, rule) = policy::report_window(cat, widespread, &cfg.regulatory);
                        let due = policy::report_due_at(cat, widespread, aware_at, &cfg.regulatory);
                        let category = serde_name(&cat);
                        let rule = serde_name(&rule);
                        inc.serious = Some(SeriousIncident {
                            category: category.clone(),
                            article_point: cat.article_point().to_string(),
                            widespread,
                            aware_at,
                            report_due_at: due,
                            rule: rule.clone(),
                            reported_at: None,
                            deadline_escalated: false,
                        });
                        ev.push(EventKind::MarkedSerious {
                            category,
                            article_point: cat.article_point().to_string(),
                            widespread,
                            report_due_at: due,
                            rule,
                        });
                    }
                    if reported {
                        let Some(s) = inc.serious.as_mut() else {
                            return Err(conflict(format!(
                                "incident {} is not marked serious; mark_serious first",
                                inc.id
                            )));
                        };
                        s.reported_at = Some(now);
                        ev.push(EventKind::FieldUpdated {
                            field: "regulatory_reported_at".into(),
                            value: now.to_rfc3339(),
                        });
                    }
                    if let Some(text) = note {
                        ev.push(EventKind::Note { text });
                    }
                    inc.updated_at = now;
                    Ok(ev)
                }),
            )
            .await?)
    }

    /// Resolves an incident with its resolution and root cause.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] for an empty resolution or root cause; [`ServiceError::Conflict`]
    /// when it is already resolved or closed.
    pub async fn resolve(
        &self,
        id: &str,
        resolution: &str,
        root_cause: &str,
        actor: &str,
    ) -> Result<Incident, ServiceError> {
        let id: IncidentId = id.parse()?;
        let resolution = clean("resolution", Some(resolution.to_string()), 4000)?
            .ok_or_else(|| invalid("resolution", "is required"))?;
        let root_cause = clean("root_cause", Some(root_cause.to_string()), 4000)?
            .ok_or_else(|| invalid("root_cause", "is required"))?;
        let now = self.now();
        let nb = self.notification_builder();
        let cfg = self.config.clone();
        Ok(self
            .store
            .update(
                &id,
                actor.to_string(),
                now,
                Box::new(move |inc| {
                    let mut ev = vec![inc.transition(Status::Resolved, now)?];
                    inc.resolution = Some(resolution.clone());
                    inc.root_cause = Some(root_cause.clone());
                    ev.push(EventKind::Resolved {
                        resolution,
                        root_cause,
                    });
                    ev.extend(inc.enter_step(WorkflowStep::Resolution, now));
                    let mut ch = cfg.classification.rule(inc.severity).channels.clone();
                    if let Some(l) = cfg.escalation.level(inc.escalation_level) {
                        ch.extend(l.channels.iter().cloned());
                    }
                    ev.extend(nb.build(inc, "resolved", &ch, now));
                    Ok(ev)
                }),
            )
            .await?)
    }

    // -----------------------------------------------------------------------------------------
    // Escalation sweep
    // -----------------------------------------------------------------------------------------

    /// Escalates every unacknowledged incident whose level's time has elapsed (one level per
    /// incident per sweep; the next sweep catches up), and escalates serious incidents whose
    /// reporting deadline is near. Each step is claimed with a conditional update, so with
    /// several processes on one database it happens exactly once. Returns the steps taken.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] if the store fails.
    pub async fn escalation_sweep(&self) -> Result<usize, ServiceError> {
        let now = self.now();
        let cfg = self.config.clone();
        let mut taken = 0usize;
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
                if let Some((from, reason)) = due_step(inc, &cfg, now) {
                    taken += usize::from(self.claim_step(inc, from, reason, now).await?);
                }
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(taken)
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
        let r = self
            .store
            .claim_escalation(
                &inc.id,
                from,
                "escalation-sweep".into(),
                now,
                Box::new(move |inc| {
                    if inc.escalation_level != from {
                        return Err(conflict("level moved"));
                    }
                    let text = match &reason {
                        StepReason::Timeout(t) => {
                            if inc.acknowledged_at.is_some() {
                                return Err(conflict("acknowledged meanwhile"));
                            }
                            t.clone()
                        }
                        StepReason::Deadline(t) => {
                            if let Some(s) = inc.serious.as_mut() {
                                s.deadline_escalated = true;
                            }
                            t.clone()
                        }
                    };
                    let mut ev = vec![inc.escalate(&text, "escalation-sweep", now)?];
                    let ch = cfg
                        .escalation
                        .level(inc.escalation_level)
                        .map(|l| l.channels.clone())
                        .unwrap_or_default();
                    ev.extend(nb.build(inc, "escalated", &ch, now));
                    Ok(ev)
                }),
            )
            .await;
        match r {
            Ok(Some(_)) => Ok(true),
            Ok(None) | Err(StoreError::Domain(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
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
            .claim_outbox(self.lifecycle.worker_id.clone(), now, lease, OUTBOX_BATCH)
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
        let result = match cfg.notify.channel(&it.channel) {
            None => Err(notify::DeliveryError::Permanent {
                channel: it.channel.clone(),
                reason: "the channel is no longer configured in [[notify.channels]]".into(),
            }),
            Some(ch) => {
                let http = self.lifecycle.http()?;
                notify::deliver_with(
                    ch,
                    &n,
                    http,
                    &DeliveryOptions {
                        timeout: cfg.notify.timeout,
                    },
                )
                .await
            }
        };
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
                self.lifecycle.worker_id.clone(),
                update,
                now,
                Box::new(move |inc| {
                    let mut ev = vec![EventKind::NotificationDelivery {
                        notification_id: nid,
                        channel,
                        status: status.as_str().to_string(),
                        attempt: attempts,
                        detail: detail.map(|d| incident::truncate_chars(&d, 300)),
                        next_attempt_at: next,
                    }];
                    if status == OutboxStatus::Sent {
                        ev.extend(inc.enter_step(WorkflowStep::Notification, now));
                    }
                    Ok(ev)
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
            incident::NewIncident {
                incident_type: IncidentType::Other,
                category: None,
                severity: Severity::High,
                title: format!("Notification delivery failing on channel {}", it.channel),
                description: format!(
                    "Notification {} about incident {} could not be delivered to channel {} after {attempts} attempt(s): {}",
                    it.notification_id,
                    it.incident_id,
                    it.channel,
                    incident::truncate_chars(&reason, 300)
                ),
                reporter: None,
                affected_system: Some(format!("notify channel {}", it.channel)),
                affected_user: None,
                affected_session: None,
                detection_method: incident::DetectionMethod::Monitoring,
                confidence: None,
                evidence: Vec::new(),
                tags: vec!["meta:notification-delivery".into()],
                dedup_key: Some(format!("notify-failing|{}", it.channel)),
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
                    open_events(&cfg, &mut inc, &mut events, now, Some(&channel));
                    (inc, events)
                }),
                Box::new(move |inc| Ok(vec![inc.record_repeat(Vec::new(), now)])),
                "notifier".into(),
                now,
            )
            .await?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Containment
    // -----------------------------------------------------------------------------------------

    /// Blocks the incident's affected user and/or session: later `screen_prompt` calls for them
    /// return `block` until [`IncidentService::lift_containment`].
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] for an unknown action or when the incident names no such
    /// subject; [`ServiceError::Conflict`] when already blocked or resolved.
    pub async fn contain(
        &self,
        id: &str,
        action: &str,
        reason: Option<String>,
        actor: &str,
    ) -> Result<Incident, ServiceError> {
        let action = action.trim().to_ascii_lowercase();
        if !CONTAIN_ACTIONS.contains(&action.as_str()) {
            return Err(invalid(
                "action",
                format!(
                    "'{}' is not one of: {}",
                    incident::truncate_chars(&action, 40),
                    CONTAIN_ACTIONS.join(", ")
                ),
            ));
        }
        let (inc, _) = self.get(id).await?;
        let mut subjects = Vec::new();
        if action != "block_session" {
            match &inc.affected_user {
                Some(u) => subjects.push(("user".to_string(), u.clone())),
                None if action == "block_user" => {
                    return Err(invalid(
                        "action",
                        format!(
                            "incident {} names no affected user_id; use block_session",
                            inc.id
                        ),
                    ));
                }
                None => {}
            }
        }
        if action != "block_user" {
            match &inc.affected_session {
                Some(s) => subjects.push(("session".to_string(), s.clone())),
                None if action == "block_session" => {
                    return Err(invalid(
                        "action",
                        format!(
                            "incident {} names no affected session_id; use block_user",
                            inc.id
                        ),
                    ));
                }
                None => {}
            }
        }
        if subjects.is_empty() {
            return Err(invalid(
                "action",
                format!(
                    "incident {} names no affected user_id or session_id, so there is nothing to block",
                    inc.id
                ),
            ));
        }
        let active = self
            .store
            .active_containments(inc.affected_user.clone(), inc.affected_session.clone())
            .await?;
        subjects.retain(|(k, s)| {
            !active
                .iter()
                .any(|a| a.incident_id == inc.id && &a.subject_kind == k && &a.subject == s)
        });
        if subjects.is_empty() {
            return Err(ServiceError::Conflict(format!(
                "incident {} already blocks these subjects; lift_containment first to change it",
                inc.id
            )));
        }
        let reason = clean("reason", reason, 500)?
            .unwrap_or_else(|| format!("contained by {actor} for incident {}", inc.id));
        let now = self.now();
        let act = action.clone();
        Ok(self
            .store
            .update(
                &inc.id,
                actor.to_string(),
                now,
                Box::new(move |inc| {
                    if inc.status.is_terminal() {
                        return Err(conflict(format!(
                            "incident {} is {}; containment applies to open incidents",
                            inc.id, inc.status
                        )));
                    }
                    let mut ev: Vec<EventKind> = subjects
                        .into_iter()
                        .map(|(subject_kind, subject)| EventKind::Contained {
                            action: act.clone(),
                            subject_kind,
                            subject,
                            reason: reason.clone(),
                        })
                        .collect();
                    if inc.status.allowed_next().contains(&Status::Contained) {
                        ev.push(inc.transition(Status::Contained, now)?);
                    }
                    ev.extend(inc.enter_step(WorkflowStep::Containment, now));
                    inc.updated_at = now;
                    Ok(ev)
                }),
            )
            .await?)
    }

    /// Lifts every containment the incident imposed.
    ///
    /// # Errors
    /// [`ServiceError::Conflict`] when none is in force.
    pub async fn lift_containment(
        &self,
        id: &str,
        reason: Option<String>,
        actor: &str,
    ) -> Result<Incident, ServiceError> {
        let (inc, _) = self.get(id).await?;
        let active: Vec<ActiveContainment> = self
            .store
            .active_containments(inc.affected_user.clone(), inc.affected_session.clone())
            .await?
            .into_iter()
            .filter(|a| a.incident_id == inc.id)
            .collect();
        if active.is_empty() {
            return Err(ServiceError::Conflict(format!(
                "incident {} has no containment in force; nothing to lift",
                inc.id
            )));
        }
        let reason = clean("reason", reason, 500)?.unwrap_or_else(|| format!("lifted by {actor}"));
        let now = self.now();
        Ok(self
            .store
            .update(
                &inc.id,
                actor.to_string(),
                now,
                Box::new(move |inc| {
                    inc.updated_at = now;
                    Ok(active
                        .into_iter()
                        .map(|a| EventKind::ContainmentLifted {
                            action: a.action,
                            subject_kind: a.subject_kind,
                            subject: a.subject,
                            reason: reason.clone(),
                        })
                        .collect())
                }),
            )
            .await?)
    }

    /// Screens a text (see the engine) and then applies containment: a blocked user or session
    /// gets verdict `block` with the reason in `signals`; with `[containment] auto_block`, a
    /// blocked attack in a configured category blocks its user/session at once.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] for empty or oversized text.
    pub async fn screen(&self, input: ScreenInput) -> Result<ScreenOutcome, ServiceError> {
        let (user, session) = (input.user_id.clone(), input.session_id.clone());
        let mut out = self.screen_unchecked(input).await?;
        let cc = &self.config().containment;
        if cc.auto_block
            && (out.screening.verdict == Verdict::Block || out.repeat_threshold_reached)
            && (user.is_some() || session.is_some())
            && out
                .screening
                .categories
                .first()
                .is_some_and(|c| cc.categories.iter().any(|k| k == c.category.as_str()))
            && let Some(id) = &out.incident_id
        {
            match self
                .contain(
                    id.as_str(),
                    "block_user_and_session",
                    Some("automatic containment per [containment] policy".into()),
                    "containment-policy",
                )
                .await
            {
                Ok(_) | Err(ServiceError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if user.is_none() && session.is_none() {
            return Ok(out);
        }
        let held = self.store.active_containments(user, session).await?;
        if let Some(c) = held.first() {
            out.screening.verdict = Verdict::Block;
            out.screening.signals.push(format!(
                "containment: {} {} is blocked by incident {} ({}) since {}: {}",
                c.subject_kind,
                c.subject,
                c.incident_id,
                c.action,
                c.since.to_rfc3339(),
                c.reason
            ));
            if out.incident_id.is_none() {
                out.incident_id = Some(c.incident_id.clone());
            }
        }
        Ok(out)
    }

    // -----------------------------------------------------------------------------------------
    // Documentation
    // -----------------------------------------------------------------------------------------

    /// The post-incident document built from the incident and its real timeline.
    ///
    /// # Errors
    /// As [`IncidentService::get`].
    pub async fn postmortem(&self, id: &str) -> Result<PostIncidentDocument, ServiceError> {
        let (inc, tl) = self.get(id).await?;
        Ok(build_document(&inc, &tl, self.now()))
    }

    /// Writes `incident_<id>_<yyyymmdd>.json` and a Markdown postmortem beside it in
    /// `[documentation] dir`, enters the documentation step, and optionally closes the incident.
    ///
    /// # Errors
    /// [`ServiceError::Conflict`] unless the incident is resolved (or closed);
    /// [`ServiceError::Internal`] when the files cannot be written.
    pub async fn document(
        &self,
        id: &str,
        close: bool,
        actor: &str,
    ) -> Result<DocumentOutcome, ServiceError> {
        let (inc, tl) = self.get(id).await?;
        if !inc.status.is_terminal() {
            return Err(ServiceError::Conflict(format!(
                "incident {} is {}; resolve it with resolve_incident before documenting it",
                inc.id, inc.status
            )));
        }
        let now = self.now();
        let doc = build_document(&inc, &tl, now);
        let dir: PathBuf = self.config().documentation.dir.clone();
        let stem = format!("incident_{}_{}", inc.id, now.format("%Y%m%d"));
        let json_path = dir.join(format!("{stem}.json"));
        let md_path = dir.join(format!("{stem}.md"));
        let json = serde_json::to_string_pretty(&doc)
            .map_err(|e| ServiceError::Internal(format!("cannot encode the document: {e}")))?;
        let md = render_markdown(&doc);
        let io = |e: std::io::Error| {
            ServiceError::Internal(format!(
                "cannot write documentation to {}: {e}",
                dir.display()
            ))
        };
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        tokio::fs::write(&json_path, json).await.map_err(io)?;
        tokio::fs::write(&md_path, md).await.map_err(io)?;
        let (jp, mp) = (
            json_path.display().to_string(),
            md_path.display().to_string(),
        );
        let (jp2, mp2) = (jp.clone(), mp.clone());
        self.store
            .update(
                &inc.id,
                actor.to_string(),
                now,
                Box::new(move |inc| {
                    let mut ev: Vec<EventKind> = inc
                        .enter_step(WorkflowStep::Documentation, now)
                        .into_iter()
                        .collect();
                    ev.push(EventKind::Documented {
                        json_path: jp2,
                        markdown_path: mp2,
                    });
                    if close && inc.status == Status::Resolved {
                        ev.push(inc.transition(Status::Closed, now)?);
                    }
                    inc.updated_at = now;
                    Ok(ev)
                }),
            )
            .await?;
        Ok(DocumentOutcome {
            json_path: jp,
            markdown_path: mp,
            document: doc,
        })
    }
}

/// Notification events built inside a store mutation (no service borrow needed).
struct NotificationBuilder {
    cfg: std::sync::Arc<crate::config::Config>,
}

impl NotificationBuilder {
    fn build(
        &self,
        inc: &Incident,
        event: &str,
        channels: &[String],
        now: DateTime<Utc>,
    ) -> Vec<EventKind> {
        notifications_for(&self.cfg, inc, event, channels, now)
    }
}

fn notifications_for(
    cfg: &crate::config::Config,
    inc: &Incident,
    event: &str,
    channels: &[String],
    now: DateTime<Utc>,
) -> Vec<EventKind> {
    let mut id = Notification::stable_id(inc.id.as_str(), event, inc.escalation_level);
    if !matches!(event, "opened" | "escalated" | "acknowledged") {
        id.push_str(&format!(":{}", now.timestamp_micros()));
    }
    let sla = cfg.classification.rule(inc.severity).response_time;
    let body = format!(
        "Incident {id} {event}.\nTitle: {title}\nType: {ty}{cat}\nSeverity: {sev}\nStatus: {status}\n\
         Escalation level: {lvl} ({lname})\nDetected: {det}\nAcknowledge within: {sla}\nDetails: incident://{id}",
        id = inc.id,
        title = inc.title,
        ty = inc.incident_type,
        cat = inc
            .category
            .map(|c| format!(" / {}", c.as_str()))
            .unwrap_or_default(),
        sev = inc.severity,
        status = inc.status,
        lvl = inc.escalation_level,
        lname = level_name(cfg, inc.escalation_level),
        det = inc.created_at.to_rfc3339(),
        sla = fmt_dur(sla),
    );
    let title = format!(
        "[{}] {} {}: {}",
        inc.severity.as_str().to_ascii_uppercase(),
        inc.id,
        event,
        inc.title
    );
    let mut seen = BTreeSet::new();
    channels
        .iter()
        .filter(|c| seen.insert(c.as_str()))
        .map(|c| EventKind::NotificationQueued {
            notification_id: id.clone(),
            channel: c.clone(),
            event: event.to_string(),
            level: inc.escalation_level,
            severity: inc.severity,
            title: title.clone(),
            body: body.clone(),
        })
        .collect()
}

/// The `Classified` event for `inc` under `cfg` (applying the severity override to `inc`), and the
/// start level its severity requires.
fn classify_event(inc: &mut Incident, cfg: &crate::config::Config) -> (EventKind, u8) {
    let kind = override_kind(inc, &cfg.classification);
    let c = policy::classify(inc.severity, &kind, &cfg.classification);
    inc.severity = c.severity;
    let start = policy::initial_level(c.severity, &cfg.escalation);
    (
        EventKind::Classified {
            severity: c.severity,
            reported_severity: c.reported_severity,
            response_sla_secs: c.response_sla.as_secs(),
            urgency: serde_name(&c.urgency),
            channels: c.channels,
            auto_escalation: c.auto_escalation,
            start_level: start,
            overridden_by: c.overridden_by,
        },
        start,
    )
}

fn serde_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

enum StepReason {
    Timeout(String),
    Deadline(String),
}

/// The escalation step due for `inc` at `now`, if any: the policy's timeout / severity-floor
/// decision, or a serious incident whose reporting deadline is within its last quarter.
fn due_step(
    inc: &Incident,
    cfg: &crate::config::Config,
    now: DateTime<Utc>,
) -> Option<(u8, StepReason)> {
    let sev = inc.severity;
    let state = EscalationState {
        level: inc.escalation_level,
        level_entered_at: inc.level_entered_at(),
        acknowledged: inc.acknowledged_at.is_some(),
        closed: inc.status.is_terminal(),
        severity: sev,
        auto_escalation: cfg.classification.rule(sev).auto_escalation,
    };
    if let Some(step) = policy::escalation_due(&state, &cfg.escalation, now)
        && step.trigger == policy::EscalationTrigger::Timeout
    {
        return Some((step.from, StepReason::Timeout(step.reason)));
    }
    let s = inc.serious.as_ref()?;
    if s.reported_at.is_some()
        || s.deadline_escalated
        || inc.escalation_level >= incident::MAX_LEVEL
    {
        return None;
    }
    let window = s.report_due_at - s.aware_at;
    if now >= s.report_due_at - window / 4 {
        return Some((
            inc.escalation_level,
            StepReason::Deadline(format!(
                "regulatory report ({} {}) due at {} is approaching",
                s.category,
                s.article_point,
                s.report_due_at.to_rfc3339()
            )),
        ));
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Timeline analysis (pure)
// ---------------------------------------------------------------------------------------------

/// Response measurements computed from an incident's timeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct ResponseMetrics {
    /// Detection → first acknowledgement, seconds (MTTA contribution).
    pub time_to_acknowledge_secs: Option<f64>,
    /// Detection → last resolution, seconds (MTTR contribution).
    pub time_to_resolve_secs: Option<f64>,
    /// Detection → first containment, seconds.
    pub time_to_contain_secs: Option<f64>,
    /// The acknowledge-by SLA recorded at classification, seconds.
    pub response_sla_secs: Option<u64>,
    /// Acknowledged within the SLA (None while unacknowledged and not yet late).
    pub sla_met: Option<bool>,
    /// Escalation steps taken.
    pub escalations: u32,
    /// Of which automatic (the escalation sweep).
    pub automatic_escalations: u32,
    /// Highest level reached.
    pub max_level: u8,
    /// Notification deliveries that succeeded.
    pub notifications_sent: u32,
    /// Delivery attempts that failed and were retried.
    pub notification_retries: u32,
    /// Notifications given up on.
    pub notifications_failed: u32,
}

fn secs(a: DateTime<Utc>, b: DateTime<Utc>) -> Option<f64> {
    let d = (b - a).num_milliseconds();
    (d >= 0).then(|| d as f64 / 1000.0)
}

/// Measures an incident's response from its timeline (not from its mutable fields): the first
/// `created` event is detection, the first `acknowledged` event (or status change to acknowledged)
/// is acknowledgement, the last change to `resolved` is resolution.
pub fn response_metrics(inc: &Incident, timeline: &[Event], now: DateTime<Utc>) -> ResponseMetrics {
    let mut m = ResponseMetrics {
        max_level: inc.escalation_level,
        ..Default::default()
    };
    let mut detected = None;
    let (mut ack, mut resolved, mut contained) = (None, None, None);
    for e in timeline {
        let Ok(k) = serde_json::from_str::<EventKind>(&e.data) else {
            continue;
        };
        match k {
            EventKind::Created { .. } => {
                detected.get_or_insert(e.at);
            }
            EventKind::Classified {
                response_sla_secs, ..
            } => m.response_sla_secs = Some(response_sla_secs),
            EventKind::Acknowledged { .. }
            | EventKind::StatusChanged {
                to: Status::Acknowledged,
                ..
            } => {
                ack.get_or_insert(e.at);
            }
            EventKind::StatusChanged {
                to: Status::Resolved,
                ..
            } => resolved = Some(e.at),
            EventKind::StatusChanged {
                from: Status::Resolved,
                to: Status::Investigating,
            } => resolved = None,
            EventKind::Contained { .. }
            | EventKind::StatusChanged {
                to: Status::Contained,
                ..
            } => {
                contained.get_or_insert(e.at);
            }
            EventKind::Escalated { to, by, .. } => {
                m.escalations += 1;
                if by == "escalation-sweep" {
                    m.automatic_escalations += 1;
                }
                m.max_level = m.max_level.max(to);
            }
            EventKind::NotificationDelivery { status, .. } => match status.as_str() {
                "sent" => m.notifications_sent += 1,
                "retrying" => m.notification_retries += 1,
                _ => m.notifications_failed += 1,
            },
            _ => {}
        }
    }
    let detected = detected.unwrap_or(inc.created_at);
    m.time_to_acknowledge_secs = ack.and_then(|a| secs(detected, a));
    m.time_to_resolve_secs = resolved.and_then(|r| secs(detected, r));
    m.time_to_contain_secs = contained.and_then(|c| secs(detected, c));
    m.sla_met = m.response_sla_secs.and_then(|sla| {
        let sla = sla as f64;
        match m.time_to_acknowledge_secs {
            Some(t) => Some(t <= sla),
            None => secs(detected, now).filter(|t| *t > sla).map(|_| false),
        }
    });
    m
}

/// One timeline line of the document.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DocTimelineEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    /// Event kind (`created`, `escalated`, …).
    pub kind: String,
    /// One-line human summary.
    pub summary: String,
}

/// An action taken during the response (containment, escalation, acknowledgement, resolution, …).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ResponseAction {
    pub at: DateTime<Utc>,
    pub by: String,
    pub action: String,
}

/// Root-cause analysis section.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RootCauseAnalysis {
    /// The recorded root cause, or "not recorded".
    pub primary_cause: String,
    /// How it was resolved.
    pub resolution: Option<String>,
    /// Corrective actions recorded.
    pub corrective_actions: Vec<String>,
    /// Detection evidence (rule ids), when the incident came from screening.
    pub evidence_rules: Vec<String>,
    /// How the incident was detected and with what confidence.
    pub detection: String,
}

/// The post-incident document (AIMS-IRP-001 §8.5.6 template, filled from the real timeline).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PostIncidentDocument {
    pub incident_id: String,
    pub incident_type: String,
    pub category: Option<String>,
    pub severity: String,
    pub title: String,
    pub status: String,
    pub detection_time: DateTime<Utc>,
    pub acknowledgement_time: Option<DateTime<Utc>>,
    pub resolution_time: Option<DateTime<Utc>>,
    pub documented_at: DateTime<Utc>,
    pub description: String,
    pub owner: Option<String>,
    /// OWASP LLM Top 10 / MITRE ATLAS tags.
    pub tags: Vec<String>,
    pub timeline: Vec<DocTimelineEntry>,
    pub response_actions: Vec<ResponseAction>,
    pub root_cause_analysis: RootCauseAnalysis,
    pub metrics: ResponseMetrics,
    pub lessons_learned: Vec<String>,
    pub improvement_recommendations: Vec<String>,
    /// EU AI Act serious-incident block, when marked serious.
    pub regulatory: Option<serde_json::Value>,
}

fn summarize(k: &EventKind) -> String {
    match k {
        EventKind::Created {
            severity, title, ..
        } => format!("opened ({severity}): {title}"),
        EventKind::StatusChanged { from, to } => format!("status {from} → {to}"),
        EventKind::StepEntered { step } => format!("workflow step {step} entered"),
        EventKind::Escalated {
            from, to, reason, ..
        } => format!("escalated level {from} → {to}: {reason}"),
        EventKind::DetectedAgain { occurrences, .. } => {
            format!("detected again (occurrence {occurrences})")
        }
        EventKind::Note { text } => format!("note: {}", incident::truncate_chars(text, 200)),
        EventKind::SeverityChanged { from, to, reason } => {
            format!(
                "severity {from} → {to}: {}",
                incident::truncate_chars(reason, 200)
            )
        }
        EventKind::Recovered { detail } => {
            format!("recovered: {}", incident::truncate_chars(detail, 200))
        }
        EventKind::Classified {
            severity,
            response_sla_secs,
            start_level,
            overridden_by,
            ..
        } => format!(
            "classified {severity}, acknowledge within {}, start level {start_level}{}",
            fmt_dur(Duration::from_secs(*response_sla_secs)),
            overridden_by
                .as_ref()
                .map(|o| format!(" (override {o})"))
                .unwrap_or_default()
        ),
        EventKind::Acknowledged { by } => format!("acknowledged by {by}"),
        EventKind::FieldUpdated { field, value } => {
            format!("{field} set: {}", incident::truncate_chars(value, 200))
        }
        EventKind::Resolved { resolution, .. } => {
            format!("resolved: {}", incident::truncate_chars(resolution, 200))
        }
        EventKind::NotificationQueued {
            channel,
            event,
            level,
            ..
        } => format!("notification '{event}' (level {level}) queued for channel {channel}"),
        EventKind::NotificationDelivery {
            channel,
            status,
            attempt,
            notification_id,
            ..
        } => format!("notification {notification_id} to {channel}: {status} (attempt {attempt})"),
        EventKind::Contained {
            action,
            subject_kind,
            subject,
            ..
        } => format!("contained: {action} ({subject_kind} {subject})"),
        EventKind::ContainmentLifted {
            subject_kind,
            subject,
            ..
        } => format!("containment lifted ({subject_kind} {subject})"),
        EventKind::MarkedSerious {
            category,
            article_point,
            report_due_at,
            ..
        } => format!(
            "marked serious ({category}, Art. {article_point}); report due {}",
            report_due_at.to_rfc3339()
        ),
        EventKind::Documented { json_path, .. } => format!("documented in {json_path}"),
    }
}

fn dur_text(secs: f64) -> String {
    fmt_dur(Duration::from_secs_f64(secs.max(0.0)))
}

/// Builds the post-incident document from the incident and its real timeline: lessons learned
/// and recommendations are derived from the measured response (acknowledgement vs SLA,
/// escalations needed, containment time, delivery failures), not canned text.
pub fn build_document(
    inc: &Incident,
    timeline: &[Event],
    now: DateTime<Utc>,
) -> PostIncidentDocument {
    let m = response_metrics(inc, timeline, now);
    let mut entries = Vec::new();
    let mut actions = Vec::new();
    let mut failed_channels = BTreeSet::new();
    for e in timeline {
        let Ok(k) = serde_json::from_str::<EventKind>(&e.data) else {
            continue;
        };
        if let EventKind::NotificationDelivery {
            status, channel, ..
        } = &k
            && status == "failed"
        {
            failed_channels.insert(channel.clone());
        }
        let summary = summarize(&k);
        if matches!(
            k,
            EventKind::Acknowledged { .. }
                | EventKind::Escalated { .. }
                | EventKind::Contained { .. }
                | EventKind::ContainmentLifted { .. }
                | EventKind::Resolved { .. }
                | EventKind::FieldUpdated { .. }
                | EventKind::MarkedSerious { .. }
        ) {
            actions.push(ResponseAction {
                at: e.at,
                by: e.actor.clone(),
                action: summary.clone(),
            });
        }
        entries.push(DocTimelineEntry {
            at: e.at,
            actor: e.actor.clone(),
            kind: k.name().to_string(),
            summary,
        });
    }

    let mut lessons = Vec::new();
    let mut recs = Vec::new();
    let sla_text = m
        .response_sla_secs
        .map(|s| fmt_dur(Duration::from_secs(s)))
        .unwrap_or_else(|| "(no SLA recorded)".into());
    match (m.time_to_acknowledge_secs, m.response_sla_secs) {
        (Some(t), Some(sla)) if t <= sla as f64 => lessons.push(format!(
            "Acknowledged {} after detection, within the {sla_text} SLA for {} incidents.",
            dur_text(t),
            inc.severity
        )),
        (Some(t), Some(sla)) => {
            lessons.push(format!(
                "Acknowledged {} after detection: the {sla_text} SLA for {} incidents was missed by {}.",
                dur_text(t),
                inc.severity,
                dur_text(t - sla as f64)
            ));
            recs.push(format!(
                "Shorten the path to acknowledgement for {} incidents (on-call rota, paging channel): it took {} against {sla_text}.",
                inc.severity,
                dur_text(t)
            ));
        }
        (Some(t), None) => lessons.push(format!("Acknowledged {} after detection.", dur_text(t))),
        (None, _) => {
            lessons.push(
                "Nobody acknowledged the incident; the escalation clock ran until it was resolved."
                    .into(),
            );
            recs.push("Make acknowledgement part of the runbook so the escalation clock stops when someone takes the incident.".into());
        }
    }
    if m.escalations == 0 {
        lessons.push(format!(
            "No escalation was needed: level {} handled it.",
            m.max_level
        ));
    } else {
        lessons.push(format!(
            "Escalated {} time(s) ({} automatically for missed response windows), reaching level {}.",
            m.escalations, m.automatic_escalations, m.max_level
        ));
        if m.automatic_escalations >= 2 {
            recs.push(format!(
                "Responders missed {} consecutive response windows; check that the lower escalation levels' channels reach someone on duty.",
                m.automatic_escalations
            ));
        }
    }
    match m.time_to_contain_secs {
        Some(t) => lessons.push(format!("Contained {} after detection.", dur_text(t))),
        None if inc.incident_type == IncidentType::Security => {
            lessons.push("No containment action was recorded for this security incident.".into());
            recs.push(format!(
                "Contain {} incidents early: block the affected user/session with contain_incident, or enable [containment] auto_block.",
                inc.category.map_or("security", |c| c.as_str())
            ));
        }
        None => lessons.push("No containment action was recorded.".into()),
    }
    if let Some(t) = m.time_to_resolve_secs {
        lessons.push(format!("Resolved {} after detection.", dur_text(t)));
    }
    if inc.occurrences > 1 {
        lessons.push(format!(
            "The same detection repeated {} times before the incident was closed.",
            inc.occurrences
        ));
    }
    if m.notification_retries > 0 || m.notifications_failed > 0 {
        lessons.push(format!(
            "{} notification(s) delivered; {} attempt(s) failed and were retried; {} given up.",
            m.notifications_sent, m.notification_retries, m.notifications_failed
        ));
    }
    if !failed_channels.is_empty() {
        recs.push(format!(
            "Fix notification channel(s) {}: deliveries failed for good.",
            failed_channels.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    if inc.root_cause.is_none() {
        recs.push("Record a root cause: the analysis is incomplete without one.".into());
    }
    if inc.corrective_actions.is_empty() {
        recs.push("Record at least one corrective action that prevents a recurrence.".into());
    }
    if let Some(s) = &inc.serious
        && s.reported_at.is_none()
    {
        recs.push(format!(
            "File the EU AI Act Art. 73 report (due {}).",
            s.report_due_at.to_rfc3339()
        ));
    }
    if recs.is_empty() {
        recs.push("No process gaps were found on this timeline; keep the current runbook.".into());
    }

    let acknowledgement_time = inc.acknowledged_at;
    PostIncidentDocument {
        incident_id: inc.id.to_string(),
        incident_type: inc.incident_type.to_string(),
        category: inc.category.map(|c| c.as_str().to_string()),
        severity: inc.severity.to_string(),
        title: inc.title.clone(),
        status: inc.status.to_string(),
        detection_time: inc.created_at,
        acknowledgement_time,
        resolution_time: inc.resolved_at,
        documented_at: now,
        description: inc.description.clone(),
        owner: inc.owner.clone(),
        tags: inc.tags.clone(),
        timeline: entries,
        response_actions: actions,
        root_cause_analysis: RootCauseAnalysis {
            primary_cause: inc
                .root_cause
                .clone()
                .unwrap_or_else(|| "not recorded".into()),
            resolution: inc.resolution.clone(),
            corrective_actions: inc.corrective_actions.clone(),
            evidence_rules: {
                let mut r: Vec<String> = inc.evidence.iter().map(|e| e.rule.clone()).collect();
                r.dedup();
                r
            },
            detection: format!(
                "{}{}",
                inc.detection_method,
                inc.confidence
                    .map(|c| format!(" (confidence {c:.2})"))
                    .unwrap_or_default()
            ),
        },
        metrics: m,
        lessons_learned: lessons,
        improvement_recommendations: recs,
        regulatory: inc
            .serious
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok()),
    }
}

/// The Markdown postmortem for a document.
pub fn render_markdown(d: &PostIncidentDocument) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let opt = |t: &Option<DateTime<Utc>>| t.map_or("—".to_string(), |t| t.to_rfc3339());
    let _ = writeln!(s, "# Postmortem: {} — {}\n", d.incident_id, d.title);
    let _ = writeln!(s, "| field | value |\n|---|---|");
    let _ = writeln!(
        s,
        "| type | {}{} |",
        d.incident_type,
        d.category
            .as_ref()
            .map(|c| format!(" / {c}"))
            .unwrap_or_default()
    );
    let _ = writeln!(s, "| severity | {} |", d.severity);
    let _ = writeln!(s, "| status | {} |", d.status);
    let _ = writeln!(s, "| detected | {} |", d.detection_time.to_rfc3339());
    let _ = writeln!(s, "| acknowledged | {} |", opt(&d.acknowledgement_time));
    let _ = writeln!(s, "| resolved | {} |", opt(&d.resolution_time));
    let _ = writeln!(s, "| owner | {} |", d.owner.as_deref().unwrap_or("—"));
    let m = &d.metrics;
    let t = |v: Option<f64>| v.map_or("—".to_string(), dur_text);
    let _ = writeln!(
        s,
        "| time to acknowledge | {} |",
        t(m.time_to_acknowledge_secs)
    );
    let _ = writeln!(s, "| time to resolve | {} |", t(m.time_to_resolve_secs));
    let _ = writeln!(s, "| time to contain | {} |", t(m.time_to_contain_secs));
    let _ = writeln!(
        s,
        "| escalations | {} (max level {}) |",
        m.escalations, m.max_level
    );
    if !d.tags.is_empty() {
        let _ = writeln!(s, "| tags | {} |", d.tags.join(", "));
    }
    let _ = writeln!(s, "\n## Description\n\n{}\n", d.description);
    let _ = writeln!(s, "## Timeline\n");
    for e in &d.timeline {
        let _ = writeln!(
            s,
            "- `{}` **{}** ({}) {}",
            e.at.to_rfc3339(),
            e.kind,
            e.actor,
            e.summary
        );
    }
    let _ = writeln!(s, "\n## Response actions\n");
    for a in &d.response_actions {
        let _ = writeln!(s, "- `{}` {} — {}", a.at.to_rfc3339(), a.by, a.action);
    }
    let r = &d.root_cause_analysis;
    let _ = writeln!(
        s,
        "\n## Root-cause analysis\n\n- Primary cause: {}",
        r.primary_cause
    );
    let _ = writeln!(
        s,
        "- Resolution: {}",
        r.resolution.as_deref().unwrap_or("—")
    );
    let _ = writeln!(s, "- Detection: {}", r.detection);
    if !r.evidence_rules.is_empty() {
        let _ = writeln!(s, "- Evidence rules: {}", r.evidence_rules.join(", "));
    }
    for c in &r.corrective_actions {
        let _ = writeln!(s, "- Corrective action: {c}");
    }
    let _ = writeln!(s, "\n## Lessons learned\n");
    for l in &d.lessons_learned {
        let _ = writeln!(s, "- {l}");
    }
    let _ = writeln!(s, "\n## Recommendations\n");
    for l in &d.improvement_recommendations {
        let _ = writeln!(s, "- {l}");
    }
    if let Some(reg) = &d.regulatory {
        let _ = writeln!(
            s,
            "\n## Regulatory (EU AI Act Art. 73)\n\n```json\n{reg}\n```"
        );
    }
    s
}

#[cfg(test)]
mod tests;
