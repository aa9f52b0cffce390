//! LLM API and MCP protocol failures (AIMS-IRP-001 §8.5.2.2): the background loop probes every
//! `[[upstreams]]` entry on its own interval through the [`Prober`] port (implemented in
//! [`crate::probe`] with reqwest and the rmcp client), records availability, latency and error
//! rate into the performance monitor, opens `llm_api_failure` (HTTP, medium) or
//! `mcp_protocol_failure` (MCP, high) incidents on failure, `tool_poisoning` when a live tool
//! list drifts from its pins, and records recovery after `recovery_probes` good probes
//! (resolving through [`IncidentService::resolve`] when `auto_resolve` is set). An upstream under
//! an `isolate_upstream` containment is not probed.
//!
//! May import: `crate::checks`, `crate::config`, `crate::domain`, `crate::store`, `crate::service`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::checks::performance::{Metric, MetricSample};
use crate::checks::upstreams::{FailureKind, ProbeResult, Transition};
use crate::config::{UpstreamConfig, UpstreamKind};
use crate::domain::incident::{
    DetectionMethod, EventKind, Evidence, IncidentType, NewIncident, Severity, Status,
};
use crate::domain::kind::IncidentKind;
use crate::service::detectors::lock;
use crate::service::{Fault, IncidentService, ServiceError};

/// What one probe saw.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    /// How long the probe took.
    pub latency: Duration,
    /// Why it failed, with a sentence; `None` when healthy.
    pub failure: Option<(FailureKind, String)>,
    /// MCP: the live tool list, name → definition hash (`tools/list` succeeded).
    pub tools: Option<BTreeMap<String, String>>,
}

/// The outbound port that probes one upstream (HTTP request, or an MCP session).
#[async_trait]
pub trait Prober: Send + Sync {
    /// Probes `u` once, within `u.timeout`.
    async fn probe(&self, u: &UpstreamConfig) -> ProbeReport;
}

/// One upstream's state, shown by `list_upstreams` and `monitor://status`.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamStatus {
    /// Name.
    pub name: String,
    /// http or mcp.
    pub kind: String,
    /// Down since its incident opened, until recovery.
    pub down: bool,
    /// Good probes / all probes in the performance window.
    pub availability: f64,
    /// Failed probes / all probes in the window.
    pub error_rate: f64,
    /// Probes in the window.
    pub probes: usize,
    /// When it was probed last.
    pub last_probe_at: Option<DateTime<Utc>>,
}

/// Decides whether the loop pass at `now` probes an upstream whose last probe was scheduled for
/// `slot`; returns the slot this probe stands for, `None` when it is not due.
///
/// The loop runs every `period` and an upstream wants a probe every `interval`. A pass probes
/// when it is the pass nearest to the next slot (`slot + interval`, within half a `period`, at
/// most half an `interval`), and the probe then stands for that slot, not for the pass's own
/// time: a pass that reaches the probes a little earlier than the previous one (the sweeps
/// before it took less time) still probes, instead of waiting one more tick, and the average
/// probe period is `interval` also when it is not a multiple of `period`. A pass more than the
/// tolerance after its slot (the loop was held up) restarts the schedule at `now`.
pub(crate) fn next_probe_slot(
    slot: Option<DateTime<Utc>>,
    interval: Duration,
    period: Duration,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let Some(last) = slot else {
        return Some(now);
    };
    let tolerance = chrono::TimeDelta::from_std(period.min(interval) / 2).unwrap_or_default();
    let next = chrono::TimeDelta::from_std(interval)
        .ok()
        .and_then(|i| last.checked_add_signed(i))?;
    if now + tolerance < next {
        None
    } else if now - next <= tolerance {
        Some(next)
    } else {
        Some(now)
    }
}

impl IncidentService {
    /// Installs the prober the loop uses for `[[upstreams]]` (once; later calls are ignored).
    pub fn with_prober(self, p: Arc<dyn Prober>) -> Self {
        let _ = self.detectors.prober.set(p);
        self
    }

    /// The state of every configured upstream.
    pub fn upstream_status(&self) -> Vec<UpstreamStatus> {
        let states = match self.detectors.upstreams.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        };
        self.config
            .upstreams
            .iter()
            .map(|u| {
                let st = states.get(&u.name).cloned().unwrap_or_default();
                let r = st.rates();
                UpstreamStatus {
                    name: u.name.clone(),
                    kind: match u.kind {
                        UpstreamKind::Http => "http",
                        UpstreamKind::Mcp => "mcp",
                    }
                    .into(),
                    down: st.is_down(),
                    availability: r.availability,
                    error_rate: r.error_rate,
                    probes: r.probes,
                    last_probe_at: st.last_probe_at,
                }
            })
            .collect()
    }

    /// Probes every upstream whose interval has elapsed, concurrently; returns how many were
    /// probed. A probe never fails the pass: its failure is the finding.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] when the store fails while recording an incident.
    pub async fn probe_upstreams(&self) -> Result<usize, ServiceError> {
        let Some(prober) = self.detectors.prober.get().cloned() else {
            return Ok(0);
        };
        let _pass = self.detectors.probing.lock().await;
        let now = self.now();
        let period = self.config.monitor.interval;
        let due: Vec<UpstreamConfig> = {
            let mut st = lock(&self.detectors.upstreams, "upstream state")?;
            let mut slots = lock(&self.detectors.probe_slots, "probe schedule")?;
            self.config
                .upstreams
                .iter()
                .filter(|u| {
                    let slot = slots.get(&u.name).copied();
                    let Some(next) = next_probe_slot(slot, u.interval, period, now) else {
                        return false;
                    };
                    slots.insert(u.name.clone(), next);
                    st.entry(u.name.clone()).or_default().last_probe_at = Some(now);
                    true
                })
                .cloned()
                .collect()
        };
        let isolated: Vec<String> = self
            .store
            .active_containments_where(Some("upstream".into()), None, None)
            .await?
            .into_iter()
            .map(|c| c.subject)
            .collect();
        let reports = futures::future::join_all(due.iter().map(|u| {
            let prober = prober.clone();
            let isolated = isolated.contains(&u.name);
            async move {
                if isolated {
                    ProbeReport {
                        latency: Duration::ZERO,
                        failure: Some((
                            FailureKind::Isolated,
                            format!("{} is isolated by a containment; not probed", u.name),
                        )),
                        tools: None,
                    }
                } else {
                    prober.probe(u).await
                }
            }
        }))
        .await;
        let mut first_err = None;
        for (u, rep) in due.iter().zip(reports) {
            if let Err(e) = self.record_probe(u, rep, now).await {
                tracing::warn!(upstream = %u.name, error = %crate::service::error_chain(&e), "recording a probe failed");
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(due.len()),
        }
    }

    async fn record_probe(
        &self,
        u: &UpstreamConfig,
        mut rep: ProbeReport,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        if matches!(rep.failure, Some((FailureKind::Isolated, _))) {
            // Refused, not failed: no metrics, no incident.
            return Ok(());
        }
        if let Some(tools) = rep.tools.take() {
            self.check_live_tools(u, tools, now).await?;
        }
        let result = ProbeResult {
            at: now,
            latency: rep.latency,
            failure: rep.failure.clone(),
        };
        let window = self.config.performance.window;
        let (transition, rates) = {
            let mut st = lock(&self.detectors.upstreams, "upstream state")?;
            let s = st.entry(u.name.clone()).or_default();
            let t = s.record(&result, u.failures_to_open, u.recovery_probes, window);
            (t, s.rates())
        };
        // Availability, latency and error rate of the upstream go into the performance monitor
        // (source `upstream:<name>`); the upstream rules below own the incident.
        let latency_metric = match u.kind {
            UpstreamKind::Http => Metric::LlmResponseTime,
            UpstreamKind::Mcp => Metric::ToolExecutionTime,
        };
        let sample = MetricSample::new(format!("upstream:{}", u.name), now)
            .with(latency_metric, rep.latency.as_secs_f64())
            .with(Metric::Availability, rates.availability)
            .with(Metric::ErrorRate, rates.error_rate);
        if let Ok(mut perf) = self.monitoring.perf_lock() {
            let _ = perf.record(sample);
        }
        match transition {
            Transition::Failing => {
                if let Some((kind, detail)) = &rep.failure {
                    self.open_upstream_incident(u, *kind, detail, rep.latency, now)
                        .await?;
                }
            }
            Transition::Recovered => self.upstream_recovered(u, now).await?,
            Transition::None => {}
        }
        Ok(())
    }

    fn upstream_kind(u: &UpstreamConfig) -> (IncidentKind, Severity) {
        match u.kind {
            UpstreamKind::Http => (IncidentKind::LlmApiFailure, Severity::Medium),
            UpstreamKind::Mcp => (IncidentKind::McpProtocolFailure, Severity::High),
        }
    }

    async fn open_upstream_incident(
        &self,
        u: &UpstreamConfig,
        failure: FailureKind,
        detail: &str,
        latency: Duration,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let (kind, severity) = Self::upstream_kind(u);
        let key = format!("upstream|{}", u.name);
        let evidence = vec![Evidence::finding(
            failure.as_str(),
            kind.as_str(),
            &format!("{detail} ({} ms)", latency.as_millis()),
        )];
        let what = match u.kind {
            UpstreamKind::Http => "LLM API",
            UpstreamKind::Mcp => "MCP server",
        };
        let new = NewIncident {
            affected_system: Some(u.name.clone()),
            evidence: evidence.clone(),
            tags: vec![
                format!("upstream:{}", u.name),
                format!("failure:{}", failure.as_str()),
            ],
            dedup_key: Some(key.clone()),
            ..NewIncident::new(
                IncidentType::Performance,
                severity,
                DetectionMethod::Monitoring,
                format!("{what} {} failing: {}", u.name, failure.as_str()),
                format!("probe of {what} {} failed: {detail}", u.name),
            )
        };
        self.open_or_repeat(key, new, kind, evidence, "upstream-monitor", now)
            .await?;
        Ok(())
    }

    async fn upstream_recovered(
        &self,
        u: &UpstreamConfig,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let key = format!("upstream|{}", u.name);
        let Some(inc) = self.store.find_open_by_dedup(&key).await? else {
            return Ok(());
        };
        let detail = format!(
            "{} answered {} consecutive probes correctly",
            u.name,
            u.recovery_probes.max(1)
        );
        self.store
            .update(
                inc.id(),
                "upstream-monitor".into(),
                now,
                Box::new(move |inc| {
                    inc.touch(now);
                    Ok(vec![EventKind::Recovered { detail }])
                }),
            )
            .await?;
        if u.auto_resolve && inc.status().allowed_next().contains(&Status::Resolved) {
            match self
                .resolve(
                    inc.id().as_str(),
                    "upstream recovered (auto-resolved by policy)",
                    &format!("{} was unavailable or failing its probe", u.name),
                    "upstream-monitor",
                )
                .await
            {
                Ok(_) | Err(ServiceError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Compares a live tool list with its pins: `pin_catalog`'s entries in `monitor.pin_lock`,
    /// or the first list this process saw. A changed, added or removed tool opens a
    /// `tool_poisoning` incident for the upstream.
    async fn check_live_tools(
        &self,
        u: &UpstreamConfig,
        live: BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let pinned: BTreeMap<String, String> = match &u.pin_catalog {
            Some(catalog) => {
                let path = self.config.monitor.pin_lock.clone();
                let lock_file = tokio::task::spawn_blocking(move || {
                    crate::checks::dataquality::PinLock::load(&path)
                })
                .await
                .map_err(Fault::Task)?
                .map_err(Fault::PinLock)?;
                let prefix = format!("{catalog}/");
                lock_file
                    .tools
                    .iter()
                    .filter_map(|(k, h)| {
                        k.strip_prefix(&prefix).map(|t| (t.to_string(), h.clone()))
                    })
                    .collect()
            }
            None => {
                let mut pins = lock(&self.detectors.live_pins, "live pins")?;
                pins.entry(u.name.clone())
                    .or_insert_with(|| live.clone())
                    .clone()
            }
        };
        let mut changes = Vec::new();
        for (name, hash) in &live {
            match pinned.get(name) {
                None => changes.push(format!("tool {name} added")),
                Some(h) if h != hash => changes.push(format!("tool {name} definition changed")),
                Some(_) => {}
            }
        }
        for name in pinned.keys().filter(|n| !live.contains_key(*n)) {
            changes.push(format!("tool {name} removed"));
        }
        if changes.is_empty() {
            return Ok(());
        }
        let key = format!("upstream-tools|{}", u.name);
        let detail = changes.join("; ");
        let evidence = vec![Evidence::finding(
            "live_tool_list_drift",
            IncidentKind::ToolPoisoning.as_str(),
            &detail,
        )];
        let new = NewIncident {
            affected_system: Some(u.name.clone()),
            evidence: evidence.clone(),
            tags: vec![
                format!("upstream:{}", u.name),
                "AML.T0110@v5".into(),
                "LLM03:2025".into(),
            ],
            dedup_key: Some(key.clone()),
            ..NewIncident::new(
                IncidentType::Security,
                Severity::High,
                DetectionMethod::Monitoring,
                format!(
                    "Live tool list of MCP server {} drifted from its pins",
                    u.name
                ),
                format!(
                    "tools/list of {} differs from the pinned definitions: {detail}",
                    u.name
                ),
            )
        };
        self.open_or_repeat(
            key,
            new,
            IncidentKind::ToolPoisoning,
            evidence,
            "upstream-monitor",
            now,
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use chrono::TimeDelta;

    use super::*;
    use crate::domain::clock::{Clock, ManualClock};

    struct Counting(AtomicUsize, bool);

    #[async_trait]
    impl Prober for Counting {
        async fn probe(&self, _: &UpstreamConfig) -> ProbeReport {
            self.0.fetch_add(1, Ordering::SeqCst);
            ProbeReport {
                latency: Duration::from_millis(5),
                failure: self
                    .1
                    .then(|| (FailureKind::Connection, "connection refused".to_string())),
                tools: None,
            }
        }
    }

    fn service(
        dir: &std::path::Path,
        interval: &str,
    ) -> (IncidentService, Arc<ManualClock>, Arc<Counting>) {
        service_with(dir, interval, false)
    }

    fn service_with(
        dir: &std::path::Path,
        interval: &str,
        failing: bool,
    ) -> (IncidentService, Arc<ManualClock>, Arc<Counting>) {
        let cfg = crate::config::Config::from_toml_str(&format!(
            "[monitor]\ninterval = \"30s\"\n\n[[upstreams]]\nname = \"llm\"\nkind = \"http\"\n\
             url = \"http://127.0.0.1:9/health\"\ninterval = \"{interval}\"\n"
        ))
        .unwrap();
        let store = crate::store::sqlite::SqliteStore::open(dir.join("t.db")).unwrap();
        let clock = Arc::new(ManualClock::new(
            DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        ));
        let counting = Arc::new(Counting(AtomicUsize::new(0), failing));
        let svc = IncidentService::new(
            store,
            Arc::new(crate::detect::Engine::builtin().unwrap()),
            clock.clone(),
            Arc::new(crate::notify::ChannelNotifier::new(cfg.notify.clone())),
            crate::service::Limits::default(),
            Arc::new(cfg),
        )
        .with_prober(counting.clone());
        (svc, clock, counting)
    }

    /// Regression: with `interval` = `monitor.interval`, a pass that reached the probes a few
    /// hundred ms earlier (relative to its tick) than the previous pass skipped the upstream,
    /// so it was probed every second tick (60 s instead of 30 s).
    #[tokio::test]
    async fn an_upstream_is_probed_on_every_pass_when_its_interval_is_the_loop_period() {
        let dir = tempfile::tempdir().unwrap();
        let (svc, clock, probes) = service(dir.path(), "30s");
        let start = clock.now();
        // The pass's work before the probes takes 400 ms, then 100 ms, 300 ms, 0 ms, ...
        let offsets_ms = [400, 100, 300, 0, 250, 50, 399, 1, 200, 100];
        for (i, off) in offsets_ms.iter().enumerate() {
            clock.set(start + TimeDelta::seconds(30 * i as i64) + TimeDelta::milliseconds(*off));
            svc.probe_upstreams().await.unwrap();
            assert_eq!(
                probes.0.load(Ordering::SeqCst),
                i + 1,
                "pass {i} (tick {} s + {off} ms) did not probe",
                30 * i
            );
        }
    }

    #[tokio::test]
    async fn the_average_probe_period_is_the_interval_also_when_not_a_multiple_of_the_loop() {
        for (interval, secs, expect) in [("40s", 40, 30), ("60s", 60, 20), ("10s", 10, 40)] {
            let dir = tempfile::tempdir().unwrap();
            let (svc, clock, probes) = service(dir.path(), interval);
            let start = clock.now();
            // 40 passes of the 30 s loop = 1200 s
            for i in 0..40 {
                clock
                    .set(start + TimeDelta::seconds(30 * i) + TimeDelta::milliseconds(i % 3 * 150));
                svc.probe_upstreams().await.unwrap();
            }
            // at most one probe per pass: a 10 s interval is probed every pass
            assert_eq!(
                probes.0.load(Ordering::SeqCst),
                expect,
                "interval {interval} ({secs} s) over 1200 s"
            );
        }
    }

    /// Issue #11: a standing finding (an upstream down all day, found again on every pass at
    /// the default 30 s loop and probe interval) counts 2,880 occurrences but appends at most
    /// one `detected_again` per `monitor.detected_again_every` (default 1 h): ≤ 24 a day.
    #[tokio::test]
    async fn a_day_of_a_standing_finding_appends_at_most_24_detected_again_events() {
        let dir = tempfile::tempdir().unwrap();
        let (svc, clock, probes) = service_with(dir.path(), "30s", true);
        assert_eq!(
            svc.config.monitor.detected_again_every,
            Duration::from_secs(3600)
        );
        let start = clock.now();
        let passes = 24 * 60 * 2;
        for i in 0..passes {
            clock.set(start + TimeDelta::seconds(30 * i) + TimeDelta::milliseconds(i % 7 * 40));
            svc.probe_upstreams().await.unwrap();
        }
        assert_eq!(probes.0.load(Ordering::SeqCst), passes as usize);
        let inc = svc
            .store
            .find_open_by_dedup("upstream|llm")
            .await
            .unwrap()
            .expect("the upstream's incident is open");
        let timeline = svc.store.timeline(inc.id()).await.unwrap();
        let again = timeline
            .iter()
            .filter(|e| {
                serde_json::from_str::<crate::domain::incident::EventKind>(&e.data)
                    .is_ok_and(|k| k.name() == "detected_again")
            })
            .count();
        eprintln!(
            "standing finding over 24 h at defaults: {} passes, {} occurrences, {} detected_again events, {} timeline events",
            passes,
            inc.occurrences(),
            again,
            timeline.len()
        );
        assert_eq!(inc.occurrences() as i64, passes);
        assert!(again <= 24, "{again} detected_again events in a day");
        assert!(again >= 23, "one per hour is still recorded: {again}");
    }

    #[test]
    fn a_held_up_loop_restarts_the_schedule_at_now() {
        let t0 = DateTime::UNIX_EPOCH;
        let s = Duration::from_secs;
        assert_eq!(next_probe_slot(None, s(30), s(30), t0), Some(t0));
        // 14 s early: within half a period, stands for the slot
        let t = t0 + TimeDelta::seconds(16);
        assert_eq!(
            next_probe_slot(Some(t0), s(30), s(30), t),
            Some(t0 + TimeDelta::seconds(30))
        );
        let t = t0 + TimeDelta::seconds(14);
        assert_eq!(next_probe_slot(Some(t0), s(30), s(30), t), None);
        // 100 s late: the schedule restarts at now
        let t = t0 + TimeDelta::seconds(130);
        assert_eq!(next_probe_slot(Some(t0), s(30), s(30), t), Some(t));
    }
}
