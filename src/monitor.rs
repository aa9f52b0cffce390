//! The background loop: one cancellable tokio task started by `serve` that,
//! every `monitor.interval`, runs the registered sweeps (escalation,
//! notification outbox) and the monitoring checks (performance recovery,
//! data quality). An error in one check is logged and the loop goes on; the
//! loop runs on the async runtime beside request handling and never holds a
//! lock across a check.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::service::IncidentService;

/// What the last loop run did (shown by `/healthz` and `monitor://status`).
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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
pub async fn run_once(svc: &IncidentService) -> MonitorStatus {
    let started = Instant::now();
    let at = svc.now();
    let mut checks = Vec::new();
    let mut record = |name: &str, r: Result<String, String>| {
        if let Err(e) = &r {
            tracing::warn!(check = name, error = %e, "monitor check failed; the loop goes on");
        }
        checks.push(CheckOutcome {
            name: name.to_string(),
            ok: r.is_ok(),
            detail: r.unwrap_or_else(|e| e),
        });
    };
    record(
        "escalation_sweep",
        svc.escalation_sweep()
            .await
            .map(|n| format!("{n} escalation step(s)"))
            .map_err(|e| e.to_string()),
    );
    record(
        "notification_outbox",
        svc.drain_outbox()
            .await
            .map(|n| format!("{n} delivery attempt(s)"))
            .map_err(|e| e.to_string()),
    );
    record(
        "performance_recovery",
        svc.performance_recovery_sweep()
            .await
            .map(|n| format!("{n} metric(s) recovered"))
            .map_err(|e| e.to_string()),
    );
    if svc.config().monitor.data_quality {
        record(
            "data_quality",
            svc.check_data_quality()
                .await
                .map(|o| {
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
                })
                .map_err(|e| e.to_string()),
        );
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

/// Starts the loop; it stops when `ct` is cancelled.
pub fn spawn(svc: Arc<IncidentService>, ct: CancellationToken) -> tokio::task::JoinHandle<()> {
    let period = svc.config().monitor.interval.max(Duration::from_millis(50));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ct.cancelled() => break,
                _ = tick.tick() => { run_once(&svc).await; }
            }
        }
        tracing::debug!("monitor loop stopped");
    })
}
