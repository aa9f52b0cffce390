//! Monitoring use cases (issue #5): performance incidents from metrics,
//! data-quality and tool-poisoning incidents from the data files and tool
//! catalogs, recovery. Pure checks live in [`crate::checks::performance`] and
//! [`crate::checks::dataquality`]; this module turns their findings into deduplicated
//! incidents through the store, and is called by MCP tools and by the
//! background loop ([`crate::monitor`]).

use std::sync::{Mutex, RwLock};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::checks::dataquality::{self, DqReport, Finding, FindingKind, PinLock};
use crate::checks::performance::{Metric, MetricSample, PerfMonitor, PerfThresholds, Violation};
use crate::domain::incident::{
    DetectionMethod, EventKind, Evidence, Incident, IncidentType, NewIncident, Severity, Status,
};
use crate::domain::kind::IncidentKind;
use crate::domain::opening;
use crate::service::{Fault, IncidentService, ServiceError};

/// Monitoring state held by the service.
#[derive(Debug)]
pub struct MonitoringState {
    perf: Mutex<PerfMonitor>,
    /// Serialises data-quality passes (the pin lock file is read-modify-write).
    dq: tokio::sync::Mutex<()>,
}

impl MonitoringState {
    /// The performance monitor, locked.
    pub(crate) fn perf_lock(&self) -> Result<std::sync::MutexGuard<'_, PerfMonitor>, ServiceError> {
        self.perf
            .lock()
            .map_err(|_| ServiceError::from(Fault::Poisoned("performance monitor".into())))
    }

    /// State for the given performance thresholds.
    pub fn new(t: PerfThresholds) -> Self {
        Self {
            perf: Mutex::new(PerfMonitor::new(t)),
            dq: tokio::sync::Mutex::new(()),
        }
    }
}

/// A metrics report, as received.
#[derive(Debug, Clone, Default)]
pub struct MetricsInput {
    pub source: String,
    pub llm_response_time: Option<f64>,
    pub tool_execution_time: Option<f64>,
    pub system_response_time: Option<f64>,
    pub error_rate: Option<f64>,
    pub availability: Option<f64>,
}

/// What `record_metrics` did.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsOutcome {
    /// Threshold violations in this sample.
    pub violations: Vec<ViolationOut>,
    /// Incidents opened or updated, one per violated metric.
    pub incident_ids: Vec<String>,
}

/// One violation.
#[derive(Debug, Clone, Serialize)]
pub struct ViolationOut {
    pub metric: String,
    pub value: f64,
    pub threshold: f64,
    pub severity: String,
    pub message: String,
}

/// One data-quality finding and the incident that tracks it.
#[derive(Debug, Clone, Serialize)]
pub struct FindingOut {
    pub kind: String,
    pub file: String,
    pub record: Option<String>,
    pub message: String,
    /// For tool changes: the key to pass to `approve_catalog_change`.
    pub pin_key: Option<String>,
    pub incident_id: Option<String>,
}

/// What a data-quality pass found.
#[derive(Debug, Clone, Serialize)]
pub struct DqOutcome {
    /// False when neither folder exists (checks idle).
    pub ran: bool,
    pub files_checked: usize,
    pub records_checked: usize,
    pub tools_checked: usize,
    /// True when this pass recorded the first pins (no lock file before).
    pub pins_recorded: bool,
    pub findings: Vec<FindingOut>,
    pub duration_ms: f64,
}

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

impl IncidentService {
    fn monitoring(&self) -> &MonitoringState {
        &self.monitoring
    }

    /// Records one metrics sample. Each metric past its threshold opens a
    /// performance incident for (source, metric), or adds an occurrence to
    /// the open one.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] naming a bad field (negative, NaN, a rate outside 0..1, no metric).
    pub async fn record_metrics(
        &self,
        input: MetricsInput,
    ) -> Result<MetricsOutcome, ServiceError> {
        let source = input.source.trim().to_string();
        if source.is_empty() || source.len() > 128 {
            return Err(invalid(
                "source",
                "must name the monitored system in 1 to 128 bytes, e.g. crm-agent",
            ));
        }
        let now = self.now();
        let mut sample = MetricSample::new(source.clone(), now);
        let mut any = false;
        for (m, v) in [
            (Metric::LlmResponseTime, input.llm_response_time),
            (Metric::ToolExecutionTime, input.tool_execution_time),
            (Metric::SystemResponseTime, input.system_response_time),
            (Metric::ErrorRate, input.error_rate),
            (Metric::Availability, input.availability),
        ] {
            if let Some(v) = v {
                sample = sample.with(m, v);
                any = true;
            }
        }
        if !any {
            return Err(invalid(
                "metrics",
                "give at least one of llm_response_time, tool_execution_time, system_response_time (seconds), error_rate, availability (0 to 1)",
            ));
        }
        let violations = {
            let mut perf =
                self.monitoring().perf.lock().map_err(|_| {
                    ServiceError::from(Fault::Poisoned("performance monitor".into()))
                })?;
            perf.record(sample).map_err(|e| ServiceError::Invalid {
                field: e.field(),
                message: e.to_string(),
            })?
        };
        let mut ids = Vec::new();
        for v in &violations {
            ids.push(self.open_perf_incident(v, now).await?.to_string());
        }
        Ok(MetricsOutcome {
            violations: violations
                .iter()
                .map(|v| ViolationOut {
                    metric: v.metric.as_str().to_string(),
                    value: v.value,
                    threshold: v.threshold,
                    severity: v.severity.as_str().to_string(),
                    message: v.message.clone(),
                })
                .collect(),
            incident_ids: ids,
        })
    }

    async fn open_perf_incident(
        &self,
        v: &Violation,
        now: DateTime<Utc>,
    ) -> Result<crate::domain::incident::IncidentId, ServiceError> {
        let key = format!("perf|{}|{}", v.source, v.metric.as_str());
        let evidence = vec![Evidence {
            rule: v.metric.as_str().to_string(),
            category: "performance".into(),
            start: 0,
            end: 0,
            excerpt: v.message.clone(),
        }];
        let new = NewIncident {
            affected_system: Some(v.source.clone()),
            evidence: evidence.clone(),
            tags: vec![format!("metric:{}", v.metric.as_str())],
            dedup_key: Some(key.clone()),
            ..NewIncident::new(
                IncidentType::Performance,
                v.severity,
                DetectionMethod::Monitoring,
                format!("{} threshold violated on {}", v.metric.as_str(), v.source),
                v.message.clone(),
            )
        };
        self.open_or_repeat(
            key,
            new,
            IncidentKind::PerformanceDegradation,
            evidence,
            "performance-monitor",
            now,
        )
        .await
    }

    /// Opens an incident of `kind` for a monitoring finding, or adds an occurrence (with its
    /// evidence) to the open one with the same dedup key. A standing finding seen on every
    /// pass counts occurrences and last-seen time; the timeline gets at most one
    /// `detected_again` per `monitor.detected_again_every`.
    pub(crate) async fn open_or_repeat(
        &self,
        key: String,
        new: NewIncident,
        kind: IncidentKind,
        evidence: Vec<Evidence>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<crate::domain::incident::IncidentId, ServiceError> {
        Ok(self
            .open_or_repeat_full(key, new, kind, evidence, actor, now)
            .await?
            .incident
            .id()
            .clone())
    }

    /// As [`Self::open_or_repeat`], returning the incident and whether it was opened now.
    pub(crate) async fn open_or_repeat_full(
        &self,
        key: String,
        new: NewIncident,
        kind: IncidentKind,
        evidence: Vec<Evidence>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<crate::store::Upserted, ServiceError> {
        let cfg = self.config.clone();
        let every = self.config.monitor.detected_again_every;
        let up = self
            .store
            .upsert_detection(
                key,
                Box::new(move || {
                    let (mut inc, mut events) = Incident::open(new, now);
                    inc.set_kind(kind);
                    opening::open_events(cfg.rules(), &mut inc, &mut events, now, None);
                    (inc, events)
                }),
                crate::store::RepeatDetection {
                    evidence,
                    log_every: Some(every),
                    escalate: None,
                },
                actor.to_string(),
                now,
            )
            .await?;
        Ok(up)
    }

    /// Records recovery on the performance incidents whose metric has been
    /// healthy for `performance.recovery_after`; resolves them when
    /// `performance.auto_resolve` is set. Returns how many recovered.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] if the store fails.
    pub async fn performance_recovery_sweep(&self) -> Result<usize, ServiceError> {
        let now = self.now();
        let recovered = {
            let mut perf =
                self.monitoring().perf.lock().map_err(|_| {
                    ServiceError::from(Fault::Poisoned("performance monitor".into()))
                })?;
            perf.prune(now);
            perf.take_recovered(now)
        };
        let auto = self.config.performance.auto_resolve;
        let mut n = 0;
        for (source, metric) in recovered {
            let nb = self.notification_builder();
            let key = format!("perf|{source}|{}", metric.as_str());
            let Some(inc) = self.store.find_open_by_dedup(&key).await? else {
                continue;
            };
            let detail = format!(
                "{} on {source} is within its threshold again",
                metric.as_str()
            );
            self.store
                .update(
                    inc.id(),
                    "performance-monitor".into(),
                    now,
                    Box::new(move |inc| {
                        let mut ev = vec![EventKind::Recovered { detail }];
                        if auto && inc.status().allowed_next().contains(&Status::Resolved) {
                            ev.extend(nb.resolve(
                                inc,
                                "metric recovered (auto-resolved by policy)".into(),
                                None,
                                now,
                            )?);
                        }
                        inc.touch(now);
                        Ok(ev)
                    }),
                )
                .await?;
            n += 1;
        }
        Ok(n)
    }

    /// Runs the data-quality checks now: data files, tool catalogs and
    /// tool-definition pins. Every finding opens an incident or adds an
    /// occurrence to the open one for the same finding.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] if the pin lock cannot be read or written, or the store fails.
    pub async fn check_data_quality(&self) -> Result<DqOutcome, ServiceError> {
        let _guard = self.monitoring().dq.lock().await;
        let started = std::time::Instant::now();
        let m = &self.config.monitor;
        let (data_dir, catalog_dir, pin_path) = (
            m.data_dir.clone(),
            m.catalog_dir.clone(),
            m.pin_lock.clone(),
        );
        if !data_dir.is_dir() && !catalog_dir.is_dir() {
            return Ok(DqOutcome {
                ran: false,
                files_checked: 0,
                records_checked: 0,
                tools_checked: 0,
                pins_recorded: false,
                findings: Vec::new(),
                duration_ms: 0.0,
            });
        }
        let report: DqReport = tokio::task::spawn_blocking(move || {
            let lock = PinLock::load(&pin_path).map_err(Fault::PinLock)?;
            let report = dataquality::check_all(&data_dir, &catalog_dir, &lock);
            if report.bootstrapped {
                report
                    .current_pins
                    .save(&pin_path)
                    .map_err(Fault::PinLock)?;
            }
            Ok::<_, ServiceError>(report)
        })
        .await
        .map_err(Fault::Task)??;
        let now = self.now();
        let mut findings = Vec::new();
        for f in &report.findings {
            let id = self.open_finding_incident(f, now).await?;
            findings.push(FindingOut {
                kind: f.kind.as_str().to_string(),
                file: f.file.clone(),
                record: f.record.clone(),
                message: f.message.clone(),
                pin_key: f.metadata.get("pin_key").cloned(),
                incident_id: Some(id.to_string()),
            });
        }
        Ok(DqOutcome {
            ran: true,
            files_checked: report.files_checked,
            records_checked: report.records_checked,
            tools_checked: report.tools_checked,
            pins_recorded: report.bootstrapped,
            findings,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }

    async fn open_finding_incident(
        &self,
        f: &Finding,
        now: DateTime<Utc>,
    ) -> Result<crate::domain::incident::IncidentId, ServiceError> {
        let key = format!("dq|{}", f.dedup_key());
        let what = f.record.as_deref().unwrap_or("");
        let kind = match f.kind {
            FindingKind::ToolDefinitionChanged
            | FindingKind::ToolAdded
            | FindingKind::ToolRemoved => IncidentKind::ToolPoisoning,
            FindingKind::ParseError | FindingKind::MissingFile => IncidentKind::DataCorruption,
            FindingKind::SchemaViolation
            | FindingKind::InvalidCatalog
            | FindingKind::InvalidInputSchema => IncidentKind::SchemaValidationFailure,
            FindingKind::DuplicateId
            | FindingKind::DanglingReference
            | FindingKind::ManagementCycle => IncidentKind::DataInconsistency,
        };
        let (incident_type, severity, title, tags) = match f.kind {
            FindingKind::ToolDefinitionChanged
            | FindingKind::ToolAdded
            | FindingKind::ToolRemoved => (
                IncidentType::Security,
                if f.kind == FindingKind::ToolDefinitionChanged {
                    Severity::High
                } else {
                    Severity::Medium
                },
                format!("Tool definition changed: {} {what}", f.file),
                vec![
                    "AML.T0110@v5".to_string(),
                    "LLM03:2025".to_string(),
                    format!("finding:{}", f.kind.as_str()),
                ],
            ),
            FindingKind::ParseError | FindingKind::MissingFile => (
                IncidentType::DataQuality,
                Severity::High,
                format!("Data corruption: {} cannot be read", f.file),
                vec![format!("finding:{}", f.kind.as_str())],
            ),
            _ => (
                IncidentType::DataQuality,
                Severity::Medium,
                format!("Data quality: {} in {} {what}", f.kind.as_str(), f.file),
                vec![format!("finding:{}", f.kind.as_str())],
            ),
        };
        let evidence = vec![Evidence::finding(
            f.kind.as_str(),
            "data_quality",
            &f.message,
        )];
        let new = NewIncident {
            affected_system: Some(f.file.clone()),
            evidence: evidence.clone(),
            tags,
            dedup_key: Some(key.clone()),
            ..NewIncident::new(
                incident_type,
                severity,
                DetectionMethod::Monitoring,
                title.trim(),
                f.message.clone(),
            )
        };
        self.open_or_repeat(key, new, kind, evidence, "data-quality-monitor", now)
            .await
    }

    /// Accepts the current definition of a changed, added or removed tool
    /// (`pin_key` as `<catalog file>/<tool name>`, from `check_data_quality`),
    /// updates the pin lock and resolves the tracking incident.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] when the key has no pending change (the message lists those that do).
    pub async fn approve_catalog_change(
        &self,
        pin_key: &str,
        approver: &str,
    ) -> Result<Option<Incident>, ServiceError> {
        // Tools pinned by the guard proxy (`proxy:<upstream>/<tool>`) live in `[proxy] pin_lock`.
        if let Some(r) = self.approve_proxy_pin(pin_key.trim(), approver).await? {
            return Ok(r);
        }
        let _guard = self.monitoring().dq.lock().await;
        let m = &self.config.monitor;
        let (data_dir, catalog_dir, pin_path) = (
            m.data_dir.clone(),
            m.catalog_dir.clone(),
            m.pin_lock.clone(),
        );
        let key = pin_key.trim().to_string();
        let key2 = key.clone();
        let finding = tokio::task::spawn_blocking(move || {
            let mut lock = PinLock::load(&pin_path).map_err(Fault::PinLock)?;
            let report = dataquality::check_all(&data_dir, &catalog_dir, &lock);
            let pending: Vec<&Finding> = report
                .findings
                .iter()
                .filter(|f| {
                    matches!(
                        f.kind,
                        FindingKind::ToolDefinitionChanged
                            | FindingKind::ToolAdded
                            | FindingKind::ToolRemoved
                    )
                })
                .collect();
            let Some(f) = pending
                .iter()
                .find(|f| f.metadata.get("pin_key") == Some(&key2))
            else {
                let keys: Vec<String> = pending
                    .iter()
                    .filter_map(|f| f.metadata.get("pin_key").cloned())
                    .collect();
                return Err(invalid(
                    "pin_key",
                    if keys.is_empty() {
                        format!("'{key2}' has no pending change; no tool change is pending")
                    } else {
                        format!(
                            "'{key2}' has no pending change; pending: {}",
                            keys.join(", ")
                        )
                    },
                ));
            };
            if f.kind == FindingKind::ToolRemoved {
                dataquality::approve_removal(&mut lock, &key2);
            } else {
                let hash = f.metadata.get("new_hash").cloned().unwrap_or_default();
                dataquality::approve(&mut lock, &key2, &hash);
            }
            lock.save(&pin_path).map_err(Fault::PinLock)?;
            Ok((*f).clone())
        })
        .await
        .map_err(Fault::Task)??;
        self.resolve_approved_change(
            &format!("dq|{}", finding.dedup_key()),
            approver,
            format!("catalog change {key} approved by {approver}; pin updated"),
        )
        .await
    }

    /// Resolves the open incident of an approved tool-definition change (dedup key `dedup`),
    /// through the one resolve path, with `note` on its timeline. `None` when none is open.
    pub(crate) async fn resolve_approved_change(
        &self,
        dedup: &str,
        approver: &str,
        note: String,
    ) -> Result<Option<Incident>, ServiceError> {
        let Some(inc) = self.store.find_open_by_dedup(dedup).await? else {
            return Ok(None);
        };
        let now = self.now();
        let nb = self.notification_builder();
        let inc = self
            .store
            .update(
                inc.id(),
                approver.to_string(),
                now,
                Box::new(move |inc| {
                    let mut ev = vec![EventKind::Note { text: note }];
                    ev.extend(nb.resolve(
                        inc,
                        "tool definition change approved".into(),
                        None,
                        now,
                    )?);
                    Ok(ev)
                }),
            )
            .await?;
        Ok(Some(inc))
    }
}

/// What the last loop run did (shown by `/healthz` and `monitor://status`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct MonitorStatus {
    /// Loop period in seconds.
    pub interval_secs: f64,
    /// How many runs finished since start.
    pub runs: u64,
    /// When the last run started.
    pub last_run_at: Option<DateTime<Utc>>,
    /// How long the last run took, in milliseconds.
    pub last_run_ms: Option<f64>,
    /// Per-check outcome of the last run.
    pub checks: Vec<CheckOutcome>,
}

/// One check's outcome in a run.
#[derive(Debug, Clone, Serialize)]
pub struct CheckOutcome {
    /// Check name.
    pub name: String,
    /// True when it ran without error.
    pub ok: bool,
    /// What it found or did, or the error.
    pub detail: String,
}

/// Shared, cheaply readable monitor status.
#[derive(Debug, Default)]
pub struct MonitorState {
    status: RwLock<MonitorStatus>,
}

impl MonitorState {
    /// A copy of the current status.
    pub fn snapshot(&self) -> MonitorStatus {
        match self.status.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
    fn set(&self, s: MonitorStatus) {
        match self.status.write() {
            Ok(mut g) => *g = s,
            Err(p) => *p.into_inner() = s,
        }
    }
}

/// Runs every check once and records the outcome.
impl IncidentService {
    /// Runs every check once (escalation sweep, outbox, performance recovery, data quality) and
    /// records the outcome, shown by `/healthz` and `monitor://status`. A failing check is logged
    /// and the others still run.
    pub async fn run_checks(&self) -> MonitorStatus {
        let svc = self;
        let started = Instant::now();
        let at = svc.now();
        let mut checks = Vec::new();
        let mut record = |name: &str, r: Result<String, ServiceError>| {
            svc.metrics.check_ran(name, r.is_ok());
            if let Err(e) = &r {
                tracing::warn!(check = name, error = %crate::service::error_chain(e), "monitor check failed; the loop goes on");
            }
            checks.push(CheckOutcome {
                name: name.to_string(),
                ok: r.is_ok(),
                detail: r.unwrap_or_else(|e| e.to_string()),
            });
        };
        let n = svc.escalation_sweep().await;
        record(
            "escalation_sweep",
            n.map(|n| format!("{n} escalation step(s)")),
        );
        let n = svc.drain_outbox().await;
        record(
            "notification_outbox",
            n.map(|n| format!("{n} delivery attempt(s)")),
        );
        let n = svc.performance_recovery_sweep().await;
        record(
            "performance_recovery",
            n.map(|n| format!("{n} metric(s) recovered")),
        );
        if !svc.config().upstreams.is_empty() {
            let n = svc.probe_upstreams().await;
            record(
                "upstream_probes",
                n.map(|n| format!("{n} upstream(s) probed")),
            );
        }
        if svc.config().monitor.key_usage_log.is_some() || svc.config().monitor.access_log.is_some()
        {
            let r = svc.tail_usage_logs().await.map(|(k, a, bad)| {
                format!("{k} key use(s), {a} access(es) read; {bad} line(s) rejected")
            });
            record("usage_logs", r);
        }
        if svc.config().monitor.data_quality {
            let r = svc.check_data_quality().await.map(|o| {
                if o.ran {
                    format!(
                        "{} finding(s) in {} file(s), {} record(s), {} tool(s) ({:.1} ms)",
                        o.findings.len(),
                        o.files_checked,
                        o.records_checked,
                        o.tools_checked,
                        o.duration_ms
                    )
                } else {
                    "idle: neither the data folder nor the catalog folder exists".to_string()
                }
            });
            record("data_quality", r);
        }
        let prev = svc.monitor.snapshot();
        let status = MonitorStatus {
            interval_secs: svc.config().monitor.interval.as_secs_f64(),
            runs: prev.runs + 1,
            last_run_at: Some(at),
            last_run_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
            checks,
        };
        svc.monitor.set(status.clone());
        status
    }
}
