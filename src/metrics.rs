//! The Prometheus recorder: every counter, gauge and histogram the server exposes at `/metrics`
//! (OpenMetrics text), kept in one [`Metrics`] value the service records into. It knows label
//! values as text only, so any layer can call it; what an event *means* (an incident opened, an
//! SLA breached) is decided by the service, which calls the method named after it.
//!
//! Counters and histograms are per process (the Prometheus convention: a scrape reads the
//! process it reaches); the open-incident gauge is read from the store at scrape time, so it is
//! the same whichever process is scraped.
//!
//! May import: std, prometheus-client.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Severities, in the order the open-incident gauge lists them.
pub const SEVERITIES: [&str; 4] = ["critical", "high", "medium", "low"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpenedLabels {
    incident_type: String,
    severity: String,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabel {
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreachLabels {
    kind: String,
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LevelLabel {
    level: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    channel: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: String,
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabel {
    check: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn response_time_histogram() -> Histogram {
    // 10 s … ~2 days: MTTA and MTTR run from seconds (a bot acknowledges) to days.
    Histogram::new(exponential_buckets(10.0, 3.0, 11))
}

fn latency_histogram() -> Histogram {
    // 50 µs … ~3 s.
    Histogram::new(exponential_buckets(0.000_05, 3.0, 11))
}

/// The server's metrics. Cheap to record into (atomic counters behind read locks); shared as
/// `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    opened: Family<OpenedLabels, Counter>,
    open: Family<SeverityLabel, Gauge>,
    mtta: HistogramFamily<SeverityLabel>,
    mttr: HistogramFamily<SeverityLabel>,
    sla_breaches: Family<BreachLabels, Counter>,
    escalations: Family<LevelLabel, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    verdicts: Family<VerdictLabels, Counter>,
    screen_latency: Histogram,
    loop_runs: Family<CheckLabel, Counter>,
    loop_failures: Family<CheckLabel, Counter>,
    store_writes: HistogramFamily<OpLabel>,
    /// Serialises renders: the open gauge is set from the store, then encoded.
    render_lock: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `ai_incident_` prefix.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("ai_incident");
        let opened = Family::<OpenedLabels, Counter>::default();
        r.register(
            "incidents_opened",
            "Incidents opened, by incident type, severity and source (manual_report, screening, monitoring)",
            opened.clone(),
        );
        let open = Family::<SeverityLabel, Gauge>::default();
        r.register(
            "open_incidents",
            "Incidents not yet resolved or closed, by severity (read from the store at scrape time)",
            open.clone(),
        );
        let mtta: HistogramFamily<SeverityLabel> =
            Family::new_with_constructor(response_time_histogram);
        r.register(
            "time_to_acknowledge_seconds",
            "Time from opening to acknowledgement (MTTA = sum / count), by severity",
            mtta.clone(),
        );
        let mttr: HistogramFamily<SeverityLabel> =
            Family::new_with_constructor(response_time_histogram);
        r.register(
            "time_to_resolve_seconds",
            "Time from opening to resolution (MTTR = sum / count), by severity",
            mttr.clone(),
        );
        let sla_breaches = Family::<BreachLabels, Counter>::default();
        r.register(
            "sla_breaches",
            "SLA breaches: kind=response (not acknowledged within the level's SLA, auto-escalated) or kind=regulatory (reporting deadline passed)",
            sla_breaches.clone(),
        );
        let escalations = Family::<LevelLabel, Counter>::default();
        r.register(
            "escalations",
            "Escalations, by the level reached (2-4)",
            escalations.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        r.register(
            "notification_deliveries",
            "Notification delivery attempts, by channel and outcome (sent, retrying, failed)",
            deliveries.clone(),
        );
        let verdicts = Family::<VerdictLabels, Counter>::default();
        r.register(
            "screen_verdicts",
            "screen_prompt verdicts, by verdict and top category (none for allow)",
            verdicts.clone(),
        );
        let screen_latency = latency_histogram();
        r.register(
            "screen_duration_seconds",
            "Time to screen one text (normalise, match, score, record)",
            screen_latency.clone(),
        );
        let loop_runs = Family::<CheckLabel, Counter>::default();
        r.register(
            "background_check_runs",
            "Background loop check runs, by check",
            loop_runs.clone(),
        );
        let loop_failures = Family::<CheckLabel, Counter>::default();
        r.register(
            "background_check_failures",
            "Background loop check runs that failed, by check (the loop goes on)",
            loop_failures.clone(),
        );
        let store_writes: HistogramFamily<OpLabel> =
            Family::new_with_constructor(latency_histogram);
        r.register(
            "store_write_duration_seconds",
            "Time for one committed store write (transaction with its timeline events), by operation",
            store_writes.clone(),
        );
        for s in SEVERITIES {
            open.get_or_create(&SeverityLabel { severity: s.into() })
                .set(0);
            // SLA breach series exist at 0 from the start, so `increase()` alerts see the first one.
            for kind in ["response", "regulatory"] {
                let _zero = sla_breaches.get_or_create(&BreachLabels {
                    kind: kind.into(),
                    severity: s.into(),
                });
            }
        }
        Self {
            registry: r,
            opened,
            open,
            mtta,
            mttr,
            sla_breaches,
            escalations,
            deliveries,
            verdicts,
            screen_latency,
            loop_runs,
            loop_failures,
            store_writes,
            render_lock: Mutex::new(()),
        }
    }

    /// An incident was opened.
    pub fn incident_opened(&self, incident_type: &str, severity: &str, source: &str) {
        self.opened
            .get_or_create(&OpenedLabels {
                incident_type: incident_type.into(),
                severity: severity.into(),
                source: source.into(),
            })
            .inc();
    }

    /// An incident was acknowledged `secs` seconds after it was opened.
    pub fn acknowledged(&self, severity: &str, secs: f64) {
        self.mtta
            .get_or_create(&SeverityLabel {
                severity: severity.into(),
            })
            .observe(secs.max(0.0));
    }

    /// An incident was resolved `secs` seconds after it was opened.
    pub fn resolved(&self, severity: &str, secs: f64) {
        self.mttr
            .get_or_create(&SeverityLabel {
                severity: severity.into(),
            })
            .observe(secs.max(0.0));
    }

    /// An SLA was breached; `kind` is `response` or `regulatory`.
    pub fn sla_breach(&self, kind: &str, severity: &str) {
        self.sla_breaches
            .get_or_create(&BreachLabels {
                kind: kind.into(),
                severity: severity.into(),
            })
            .inc();
    }

    /// An incident was escalated to `level`.
    pub fn escalated(&self, level: u8) {
        self.escalations
            .get_or_create(&LevelLabel {
                level: level.to_string(),
            })
            .inc();
    }

    /// A notification delivery attempt on `channel` ended with `outcome`.
    pub fn delivery(&self, channel: &str, outcome: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                channel: channel.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// A text was screened in `secs` seconds with `verdict`; `category` is the top flagged
    /// category, or `none`.
    pub fn screened(&self, verdict: &str, category: &str, secs: f64) {
        self.verdicts
            .get_or_create(&VerdictLabels {
                verdict: verdict.into(),
                category: category.into(),
            })
            .inc();
        self.screen_latency.observe(secs.max(0.0));
    }

    /// The background loop ran `check`; `ok` is false when it failed.
    pub fn check_ran(&self, check: &str, ok: bool) {
        let l = CheckLabel {
            check: check.into(),
        };
        self.loop_runs.get_or_create(&l).inc();
        // The failure series exists (at 0) as soon as the check ran, so alerts can use it.
        let failures = self.loop_failures.get_or_create(&l);
        if !ok {
            failures.inc();
        }
    }

    /// A store write `op` committed in `secs` seconds.
    pub fn store_write(&self, op: &str, secs: f64) {
        self.store_writes
            .get_or_create(&OpLabel { op: op.into() })
            .observe(secs.max(0.0));
    }

    /// The OpenMetrics text, with the open-incident gauge set to `open_by_severity`
    /// (`(severity, count)` pairs; severities not named read 0).
    pub fn render(&self, open_by_severity: &[(&str, i64)]) -> String {
        let _g = self
            .render_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for s in SEVERITIES {
            let n = open_by_severity
                .iter()
                .filter(|(k, _)| *k == s)
                .map(|(_, n)| *n)
                .sum();
            self.open
                .get_or_create(&SeverityLabel { severity: s.into() })
                .set(n);
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            // Writing into a String cannot fail; keep the exposition well-formed regardless.
            out.push_str("# EOF\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, line_start: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn recorded_values_show_in_the_exposition() {
        let m = Metrics::new();
        m.incident_opened("security", "high", "manual_report");
        m.incident_opened("security", "high", "manual_report");
        m.acknowledged("high", 42.0);
        m.delivery("log", "sent");
        m.check_ran("notification_outbox", false);
        let t = m.render(&[("high", 3)]);
        assert_eq!(
            sample(
                &t,
                "ai_incident_incidents_opened_total{incident_type=\"security\",severity=\"high\",source=\"manual_report\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(&t, "ai_incident_open_incidents{severity=\"high\"}"),
            Some(3.0)
        );
        assert_eq!(
            sample(&t, "ai_incident_open_incidents{severity=\"low\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &t,
                "ai_incident_time_to_acknowledge_seconds_sum{severity=\"high\"}"
            ),
            Some(42.0)
        );
        assert_eq!(
            sample(
                &t,
                "ai_incident_background_check_failures_total{check=\"notification_outbox\"}"
            ),
            Some(1.0)
        );
        assert!(t.ends_with("# EOF\n"), "{t}");
    }
}
