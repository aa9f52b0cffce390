//! The incident workflow: acknowledge, update (status, owner, severity, step, root cause,
//! notes, regulatory block), escalate, resolve, response measurements and post-incident
//! documentation.
//!
//! May import: `crate::domain`, `crate::store`, `crate::service`.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::incident::{
    self, Event, EventKind, Incident, IncidentId, SeriousMarking, Severity, Status, WorkflowStep,
};
use crate::domain::opening::{self, classify_event, serde_name};
use crate::domain::policy::{self, SeriousCategory};
use crate::domain::postmortem::{
    PostIncidentDocument, ResponseMetrics, build_document, render_markdown, response_metrics,
};
use crate::service::{
    Fault, IncidentService, NotificationBuilder, ServiceError, clean, conflict, invalid, parse_opt,
};

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
pub const CONTAIN_ACTIONS: &[&str] = &[
    "block_user",
    "block_session",
    "block_user_and_session",
    "revoke_key",
    "rate_limit",
    "isolate_upstream",
];

/// What `document_incident` wrote.
#[derive(Debug, Clone, Serialize)]
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
        opening::open_events(self.config().rules(), inc, events, now, None);
    }
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
                    let mut ev = inc.acknowledge(&by, now)?;
                    let channels = svc_notes
                        .get(usize::from(inc.escalation_level().saturating_sub(1)))
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
    pub(crate) fn notification_builder(&self) -> NotificationBuilder {
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
        let status = parse_opt::<Status>("status", input.status.as_deref())?;
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
        let severity = parse_opt::<Severity>("severity", input.severity.as_deref())?;
        let step = parse_opt::<WorkflowStep>("step", input.step.as_deref())?;
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
                        ev.extend(inc.change_status(to, &by, now)?);
                    }
                    if inc.status() == Status::Closed && status != Some(Status::Closed) {
                        return Err(conflict(format!(
                            "incident {} is closed; it cannot change any more",
                            inc.id()
                        )));
                    }
                    if let Some(sev) = severity
                        && let Some(changed) = inc.set_severity(sev, now)
                    {
                        ev.push(changed);
                        let (c, floor) = classify_event(inc, cfg.rules());
                        ev.push(c);
                        while inc.escalation_level() < floor && !inc.status().is_terminal() {
                            ev.push(inc.escalate(
                                &format!("{} severity requires at least level {floor}", inc.severity()),
                                "classification",
                                now,
                            )?);
                            let ch = cfg
                                .escalation
                                .level(inc.escalation_level())
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
                                    inc.id(),
                                    inc.step(),
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
                        ev.push(inc.set_owner(o, now));
                    }
                    if let Some(r) = root_cause {
                        ev.push(inc.set_root_cause(r, now));
                    }
                    if let Some(c) = corrective {
                        ev.push(inc.add_corrective_action(c, now));
                    }
                    if let Some(cat) = serious {
                        let widespread = input.widespread.unwrap_or(false);
                        let aware_at = inc.aware_at(now);
                        let (_, rule) = policy::report_window(cat, widespread, &cfg.regulatory);
                        let due = policy::report_due_at(cat, widespread, aware_at, &cfg.regulatory);
                        ev.push(inc.mark_serious(
                            SeriousMarking {
                                category: serde_name(&cat),
                                article_point: cat.article_point().to_string(),
                                widespread,
                                report_due_at: due,
                                rule: serde_name(&rule),
                            },
                            now,
                        ));
                    }
                    if reported {
                        ev.push(inc.record_regulatory_report(now)?);
                    }
                    if let Some(text) = note {
                        ev.push(EventKind::Note { text });
                    }
                    inc.touch(now);
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
        Ok(self
            .store
            .update(
                &id,
                actor.to_string(),
                now,
                Box::new(move |inc| nb.resolve(inc, resolution, Some(root_cause), now)),
            )
            .await?)
    }
}

impl IncidentService {
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
        if !inc.status().is_terminal() {
            return Err(ServiceError::Conflict(format!(
                "incident {} is {}; resolve it with resolve_incident before documenting it",
                inc.id(),
                inc.status()
            )));
        }
        let now = self.now();
        let doc = build_document(&inc, &tl, now);
        let dir: PathBuf = self.config().documentation.dir.clone();
        let stem = format!("incident_{}_{}", inc.id(), now.format("%Y%m%d"));
        let json_path = dir.join(format!("{stem}.json"));
        let md_path = dir.join(format!("{stem}.md"));
        let json = serde_json::to_string_pretty(&doc).map_err(|source| Fault::Encode {
            what: "the post-incident document",
            source,
        })?;
        let md = render_markdown(&doc);
        let io = |source: std::io::Error| Fault::Io {
            what: format!("cannot write documentation to {}", dir.display()),
            source,
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
                inc.id(),
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
                    if close && inc.status() == Status::Resolved {
                        ev.push(inc.transition(Status::Closed, now)?);
                    }
                    inc.touch(now);
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
