//! Sliding-window performance monitor (issue #5, background monitoring).
//!
//! Pure and time-injectable: every sample carries its own timestamp and
//! every query takes `now`, so nothing reads the clock.
//!
//! Semantics (see `docs/monitoring.md`):
//! * A **violation** is raised for a metric when the *latest* sample's value
//!   is past its threshold (latency above, error rate above, availability
//!   below). Every such sample yields a [`Violation`]; de-duplicate with
//!   [`Violation::dedup_key`].
//! * The **window** (default 5 min) keeps the recent samples of each source,
//!   bounded by [`MAX_SAMPLES_PER_SOURCE`]; it supplies the context in each
//!   violation (window mean, how many samples in the window were over) and
//!   [`PerfMonitor::window_stats`].
//! * A (source, metric) pair is **healthy again** when its last violation is
//!   older than `recovery_after` (default 2 min) *and* at least one sample of
//!   that metric within threshold arrived after it (silence is not recovery).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// Hard cap on samples kept per source, whatever the window and rate.
pub const MAX_SAMPLES_PER_SOURCE: usize = 1024;

/// Incident severity (the crate-wide type).
pub use crate::domain::incident::Severity;

/// A monitored metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Seconds.
    LlmResponseTime,
    /// Seconds.
    ToolExecutionTime,
    /// Seconds.
    SystemResponseTime,
    /// Fraction 0..=1.
    ErrorRate,
    /// Fraction 0..=1.
    Availability,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::LlmResponseTime,
        Metric::ToolExecutionTime,
        Metric::SystemResponseTime,
        Metric::ErrorRate,
        Metric::Availability,
    ];

    /// snake_case name, also the field name in [`MetricSample`].
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::LlmResponseTime => "llm_response_time",
            Metric::ToolExecutionTime => "tool_execution_time",
            Metric::SystemResponseTime => "system_response_time",
            Metric::ErrorRate => "error_rate",
            Metric::Availability => "availability",
        }
    }

    /// Error rate and availability → high; latencies → medium.
    pub fn severity(self) -> Severity {
        match self {
            Metric::ErrorRate | Metric::Availability => Severity::High,
            Metric::LlmResponseTime | Metric::ToolExecutionTime | Metric::SystemResponseTime => {
                Severity::Medium
            }
        }
    }

    /// Latencies are in seconds; the others are fractions in 0..=1.
    pub fn is_latency(self) -> bool {
        matches!(
            self,
            Metric::LlmResponseTime | Metric::ToolExecutionTime | Metric::SystemResponseTime
        )
    }

    fn index(self) -> usize {
        match self {
            Metric::LlmResponseTime => 0,
            Metric::ToolExecutionTime => 1,
            Metric::SystemResponseTime => 2,
            Metric::ErrorRate => 3,
            Metric::Availability => 4,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Thresholds and window settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerfThresholds {
    /// Above is a violation. Default 10 s.
    pub llm_response_time: Duration,
    /// Above is a violation. Default 5 s.
    pub tool_execution_time: Duration,
    /// Above is a violation. Default 3 s.
    pub system_response_time: Duration,
    /// Above is a violation. Default 0.05.
    pub error_rate: f64,
    /// Below is a violation. Default 0.99.
    pub availability: f64,
    /// Samples kept per source for context. Default 5 min.
    pub window: Duration,
    /// Quiet time after the last violation before recovery. Default 2 min.
    pub recovery_after: Duration,
}

impl Default for PerfThresholds {
    fn default() -> Self {
        Self {
            llm_response_time: Duration::from_secs(10),
            tool_execution_time: Duration::from_secs(5),
            system_response_time: Duration::from_secs(3),
            error_rate: 0.05,
            availability: 0.99,
            window: Duration::from_secs(5 * 60),
            recovery_after: Duration::from_secs(2 * 60),
        }
    }
}

impl PerfThresholds {
    /// Threshold of a metric in its own unit (seconds or fraction).
    pub fn threshold(&self, metric: Metric) -> f64 {
        match metric {
            Metric::LlmResponseTime => self.llm_response_time.as_secs_f64(),
            Metric::ToolExecutionTime => self.tool_execution_time.as_secs_f64(),
            Metric::SystemResponseTime => self.system_response_time.as_secs_f64(),
            Metric::ErrorRate => self.error_rate,
            Metric::Availability => self.availability,
        }
    }

    /// Whether `value` violates the threshold of `metric`.
    pub fn violates(&self, metric: Metric, value: f64) -> bool {
        let t = self.threshold(metric);
        match metric {
            Metric::Availability => value < t,
            _ => value > t,
        }
    }
}

/// One observation of a source (an LLM endpoint, an MCP server, the system).
/// Absent metrics are simply not evaluated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    pub source: String,
    pub at: DateTime<Utc>,
    /// Seconds.
    #[serde(default)]
    pub llm_response_time: Option<f64>,
    /// Seconds.
    #[serde(default)]
    pub tool_execution_time: Option<f64>,
    /// Seconds.
    #[serde(default)]
    pub system_response_time: Option<f64>,
    /// Fraction 0..=1.
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// Fraction 0..=1.
    #[serde(default)]
    pub availability: Option<f64>,
}

impl MetricSample {
    pub fn new(source: impl Into<String>, at: DateTime<Utc>) -> Self {
        Self {
            source: source.into(),
            at,
            ..Self::default()
        }
    }

    /// Builder: set one metric.
    pub fn with(mut self, metric: Metric, value: f64) -> Self {
        *self.slot(metric) = Some(value);
        self
    }

    pub fn get(&self, metric: Metric) -> Option<f64> {
        match metric {
            Metric::LlmResponseTime => self.llm_response_time,
            Metric::ToolExecutionTime => self.tool_execution_time,
            Metric::SystemResponseTime => self.system_response_time,
            Metric::ErrorRate => self.error_rate,
            Metric::Availability => self.availability,
        }
    }

    fn slot(&mut self, metric: Metric) -> &mut Option<f64> {
        match metric {
            Metric::LlmResponseTime => &mut self.llm_response_time,
            Metric::ToolExecutionTime => &mut self.tool_execution_time,
            Metric::SystemResponseTime => &mut self.system_response_time,
            Metric::ErrorRate => &mut self.error_rate,
            Metric::Availability => &mut self.availability,
        }
    }

    /// Reject empty sources, NaN/infinite or negative values, and fractions
    /// outside 0..=1. The error names the offending field.
    pub fn validate(&self) -> Result<(), SampleError> {
        if self.source.trim().is_empty() {
            return Err(SampleError::EmptySource);
        }
        for metric in Metric::ALL {
            let Some(v) = self.get(metric) else { continue };
            if !v.is_finite() {
                return Err(SampleError::NotFinite {
                    field: metric.as_str(),
                    value: v,
                });
            }
            if v < 0.0 {
                return Err(SampleError::Negative {
                    field: metric.as_str(),
                    value: v,
                });
            }
            if !metric.is_latency() && v > 1.0 {
                return Err(SampleError::OutOfRange {
                    field: metric.as_str(),
                    value: v,
                });
            }
        }
        Ok(())
    }
}

/// Why a sample was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SampleError {
    #[error("sample has an empty `source`")]
    EmptySource,
    #[error("`{field}` is {value}, expected a finite number")]
    NotFinite { field: &'static str, value: f64 },
    #[error("`{field}` is {value}, expected a non-negative number")]
    Negative { field: &'static str, value: f64 },
    #[error("`{field}` is {value}, expected a fraction between 0 and 1")]
    OutOfRange { field: &'static str, value: f64 },
}

impl SampleError {
    /// The offending field (`source` for an empty source).
    pub fn field(&self) -> &'static str {
        match self {
            SampleError::EmptySource => "source",
            SampleError::NotFinite { field, .. }
            | SampleError::Negative { field, .. }
            | SampleError::OutOfRange { field, .. } => field,
        }
    }
}

/// A threshold breach raised by [`PerfMonitor::record`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    pub source: String,
    pub metric: Metric,
    /// Observed value (seconds or fraction).
    pub value: f64,
    /// Threshold it broke (seconds or fraction).
    pub threshold: f64,
    pub severity: Severity,
    /// Timestamp of the sample.
    pub at: DateTime<Utc>,
    /// Samples of this metric in the window (including this one).
    pub window_samples: usize,
    /// How many of them broke the threshold (including this one).
    pub window_violations: usize,
    /// Mean of this metric over the window.
    pub window_mean: f64,
    pub message: String,
}

impl Violation {
    /// Stable key for de-duplicating incidents: `perf:<source>:<metric>`.
    pub fn dedup_key(&self) -> String {
        format!("perf:{}:{}", self.source, self.metric)
    }
}

/// Summary of one metric of one source over the window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    pub count: usize,
    pub violations: usize,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Copy)]
struct Stored {
    at: DateTime<Utc>,
    values: [Option<f64>; 5],
}

#[derive(Debug, Clone, Copy, Default)]
struct PairState {
    last_violation: Option<DateTime<Utc>>,
    /// Latest within-threshold sample after `last_violation`.
    ok_since_violation: Option<DateTime<Utc>>,
    /// A violation was raised and recovery was not yet acknowledged.
    open: bool,
}

#[derive(Debug, Clone, Default)]
struct SourceState {
    samples: VecDeque<Stored>,
    pairs: [PairState; 5],
}

/// Keeps a bounded window per source and evaluates samples against
/// [`PerfThresholds`].
#[derive(Debug, Clone, Default)]
pub struct PerfMonitor {
    thresholds: PerfThresholds,
    sources: BTreeMap<String, SourceState>,
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl PerfMonitor {
    pub fn new(thresholds: PerfThresholds) -> Self {
        Self {
            thresholds,
            sources: BTreeMap::new(),
        }
    }

    pub fn thresholds(&self) -> &PerfThresholds {
        &self.thresholds
    }

    /// Validate and record a sample; return one [`Violation`] per metric of
    /// this sample that is past its threshold. Nothing is stored when the
    /// sample is invalid.
    pub fn record(&mut self, sample: MetricSample) -> Result<Vec<Violation>, SampleError> {
        sample.validate()?;
        let window = delta(self.thresholds.window);
        let mut values = [None; 5];
        for m in Metric::ALL {
            values[m.index()] = sample.get(m);
        }
        let state = self.sources.entry(sample.source.clone()).or_default();

        // Insert in time order (samples normally arrive in order).
        let pos = state
            .samples
            .iter()
            .rposition(|s| s.at <= sample.at)
            .map_or(0, |p| p + 1);
        state.samples.insert(
            pos,
            Stored {
                at: sample.at,
                values,
            },
        );
        let newest = state.samples.back().map_or(sample.at, |s| s.at);
        let cutoff = newest
            .checked_sub_signed(window)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        while state.samples.front().is_some_and(|s| s.at < cutoff)
            || state.samples.len() > MAX_SAMPLES_PER_SOURCE
        {
            state.samples.pop_front();
        }

        let mut out = Vec::new();
        for m in Metric::ALL {
            let Some(value) = values[m.index()] else {
                continue;
            };
            let pair = &mut state.pairs[m.index()];
            if !self.thresholds.violates(m, value) {
                if pair.last_violation.is_some_and(|lv| sample.at > lv) {
                    pair.ok_since_violation = Some(
                        pair.ok_since_violation
                            .map_or(sample.at, |o| o.max(sample.at)),
                    );
                }
                continue;
            }
            if pair.last_violation.is_none_or(|lv| sample.at >= lv) {
                pair.last_violation = Some(sample.at);
                pair.ok_since_violation = None;
            }
            pair.open = true;
            let stats = stats_of(&state.samples, m, &self.thresholds);
            let threshold = self.thresholds.threshold(m);
            let (count, over, mean) =
                stats.map_or((1, 1, value), |s| (s.count, s.violations, s.mean));
            let (unit, cmp) = match m {
                Metric::Availability => ("", "below"),
                Metric::ErrorRate => ("", "above"),
                _ => (" s", "above"),
            };
            let message = format!(
                "{source}: {metric} is {value:.3}{unit}, {cmp} the threshold of {threshold:.3}{unit} \
                 ({over} of {count} samples in the last {win} s over; window mean {mean:.3}{unit})",
                source = sample.source,
                metric = m,
                win = self.thresholds.window.as_secs(),
            );
            out.push(Violation {
                source: sample.source.clone(),
                metric: m,
                value,
                threshold,
                severity: m.severity(),
                at: sample.at,
                window_samples: count,
                window_violations: over,
                window_mean: mean,
                message,
            });
        }
        Ok(out)
    }

    /// (source, metric) pairs with an open violation whose last violation is
    /// older than `recovery_after` at `now` and that have had a within-
    /// threshold sample since. Sorted by source, then metric.
    pub fn healthy_sources(&self, now: DateTime<Utc>) -> Vec<(String, Metric)> {
        let recovery = delta(self.thresholds.recovery_after);
        let mut out = Vec::new();
        for (source, state) in &self.sources {
            for m in Metric::ALL {
                let p = &state.pairs[m.index()];
                let quiet = p
                    .last_violation
                    .is_some_and(|lv| now.signed_duration_since(lv) >= recovery);
                if p.open && quiet && p.ok_since_violation.is_some() {
                    out.push((source.clone(), m));
                }
            }
        }
        out
    }

    /// Acknowledge a recovery so it is not reported again until the next
    /// violation. Returns whether the pair had an open violation.
    pub fn mark_recovered(&mut self, source: &str, metric: Metric) -> bool {
        match self.sources.get_mut(source) {
            Some(s) => std::mem::replace(&mut s.pairs[metric.index()].open, false),
            None => false,
        }
    }

    /// [`healthy_sources`](Self::healthy_sources) + [`mark_recovered`](Self::mark_recovered) for each.
    pub fn take_recovered(&mut self, now: DateTime<Utc>) -> Vec<(String, Metric)> {
        let healthy = self.healthy_sources(now);
        for (s, m) in &healthy {
            self.mark_recovered(s, *m);
        }
        healthy
    }

    /// Pairs with an open (unrecovered) violation.
    pub fn open_violations(&self) -> Vec<(String, Metric)> {
        let mut out = Vec::new();
        for (source, state) in &self.sources {
            for m in Metric::ALL {
                if state.pairs[m.index()].open {
                    out.push((source.clone(), m));
                }
            }
        }
        out
    }

    /// Stats of `metric` for `source` over `(now - window, now]`.
    pub fn window_stats(
        &self,
        source: &str,
        metric: Metric,
        now: DateTime<Utc>,
    ) -> Option<WindowStats> {
        let state = self.sources.get(source)?;
        let cutoff = now
            .checked_sub_signed(delta(self.thresholds.window))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let recent: VecDeque<Stored> = state
            .samples
            .iter()
            .filter(|s| s.at >= cutoff && s.at <= now)
            .copied()
            .collect();
        stats_of(&recent, metric, &self.thresholds)
    }

    /// Forget sources with no sample in the window ending at `now` and no
    /// open violation, so memory stays bounded by the active sources.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        let cutoff = now
            .checked_sub_signed(delta(self.thresholds.window))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        self.sources.retain(|_, s| {
            s.samples.retain(|x| x.at >= cutoff);
            !s.samples.is_empty() || s.pairs.iter().any(|p| p.open)
        });
    }

    /// Number of sources tracked.
    pub fn source_count(&self) -> usize {
        self.sources.len()
    }

    /// Number of samples held for `source`.
    pub fn samples_held(&self, source: &str) -> usize {
        self.sources.get(source).map_or(0, |s| s.samples.len())
    }
}

fn stats_of(samples: &VecDeque<Stored>, metric: Metric, t: &PerfThresholds) -> Option<WindowStats> {
    let mut count = 0usize;
    let mut violations = 0usize;
    let mut sum = 0.0;
    let mut min = f64::INFINITY;
    let mut max = f64::NEG_INFINITY;
    for v in samples.iter().filter_map(|s| s.values[metric.index()]) {
        count += 1;
        sum += v;
        min = min.min(v);
        max = max.max(v);
        if t.violates(metric, v) {
            violations += 1;
        }
    }
    (count > 0).then(|| WindowStats {
        count,
        violations,
        mean: sum / count as f64,
        min,
        max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).single().unwrap()
    }
    fn secs(s: i64) -> DateTime<Utc> {
        t0() + TimeDelta::seconds(s)
    }

    #[test]
    fn defaults_match_spec() {
        let t = PerfThresholds::default();
        assert_eq!(t.llm_response_time, Duration::from_secs(10));
        assert_eq!(t.tool_execution_time, Duration::from_secs(5));
        assert_eq!(t.system_response_time, Duration::from_secs(3));
        assert_eq!(t.error_rate, 0.05);
        assert_eq!(t.availability, 0.99);
        assert_eq!(t.window, Duration::from_secs(300));
        assert_eq!(t.recovery_after, Duration::from_secs(120));
    }

    #[test]
    fn within_thresholds_no_violation() {
        let mut m = PerfMonitor::default();
        let s = MetricSample::new("llm", t0())
            .with(Metric::LlmResponseTime, 10.0)
            .with(Metric::ToolExecutionTime, 5.0)
            .with(Metric::SystemResponseTime, 3.0)
            .with(Metric::ErrorRate, 0.05)
            .with(Metric::Availability, 0.99);
        assert!(
            m.record(s).unwrap().is_empty(),
            "equal to threshold is not a violation"
        );
    }

    #[test]
    fn each_metric_violates_with_its_severity() {
        let mut m = PerfMonitor::default();
        let s = MetricSample::new("crm", t0())
            .with(Metric::LlmResponseTime, 12.5)
            .with(Metric::ToolExecutionTime, 6.0)
            .with(Metric::SystemResponseTime, 3.5)
            .with(Metric::ErrorRate, 0.2)
            .with(Metric::Availability, 0.95);
        let v = m.record(s).unwrap();
        let got: Vec<(Metric, Severity)> = v.iter().map(|v| (v.metric, v.severity)).collect();
        assert_eq!(
            got,
            vec![
                (Metric::LlmResponseTime, Severity::Medium),
                (Metric::ToolExecutionTime, Severity::Medium),
                (Metric::SystemResponseTime, Severity::Medium),
                (Metric::ErrorRate, Severity::High),
                (Metric::Availability, Severity::High),
            ]
        );
        let avail = &v[4];
        assert_eq!(avail.threshold, 0.99);
        assert_eq!(avail.value, 0.95);
        assert!(avail.message.contains("availability") && avail.message.contains("below"));
        assert!(avail.message.contains("crm"));
        assert_eq!(avail.dedup_key(), "perf:crm:availability");
        assert_eq!(serde_json::to_value(avail.metric).unwrap(), "availability");
        assert_eq!(
            serde_json::to_value(Metric::LlmResponseTime).unwrap(),
            "llm_response_time"
        );
        assert_eq!(serde_json::to_value(Severity::High).unwrap(), "high");
    }

    #[test]
    fn invalid_samples_name_the_field() {
        let mut m = PerfMonitor::default();
        let cases = [
            (Metric::LlmResponseTime, -1.0, "llm_response_time"),
            (Metric::ToolExecutionTime, f64::NAN, "tool_execution_time"),
            (
                Metric::SystemResponseTime,
                f64::INFINITY,
                "system_response_time",
            ),
            (Metric::ErrorRate, 1.5, "error_rate"),
            (Metric::ErrorRate, -0.1, "error_rate"),
            (Metric::Availability, 1.01, "availability"),
        ];
        for (metric, value, field) in cases {
            let err = m
                .record(MetricSample::new("x", t0()).with(metric, value))
                .unwrap_err();
            assert_eq!(err.field(), field);
            assert!(err.to_string().contains(field), "{err}");
        }
        assert_eq!(
            m.record(MetricSample::new(" ", t0())).unwrap_err(),
            SampleError::EmptySource
        );
        assert_eq!(m.source_count(), 0, "invalid samples are not stored");
    }

    #[test]
    fn window_context_and_eviction() {
        let mut m = PerfMonitor::default();
        for i in 0..10 {
            let v = if i % 2 == 0 { 1.0 } else { 20.0 };
            m.record(MetricSample::new("llm", secs(i * 10)).with(Metric::LlmResponseTime, v))
                .unwrap();
        }
        let v = m
            .record(MetricSample::new("llm", secs(100)).with(Metric::LlmResponseTime, 30.0))
            .unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].window_samples, 11);
        assert_eq!(v[0].window_violations, 6);
        // 10 minutes later the window only holds the new sample.
        let v = m
            .record(MetricSample::new("llm", secs(700)).with(Metric::LlmResponseTime, 11.0))
            .unwrap();
        assert_eq!(v[0].window_samples, 1);
        assert_eq!(m.samples_held("llm"), 1);
        let st = m
            .window_stats("llm", Metric::LlmResponseTime, secs(700))
            .unwrap();
        assert_eq!(st.count, 1);
        assert_eq!(st.max, 11.0);
    }

    #[test]
    fn memory_is_bounded() {
        let mut m = PerfMonitor::default();
        // 5000 samples within one second: far more than the cap.
        for i in 0..5000 {
            let at = t0() + TimeDelta::microseconds(i * 100);
            m.record(MetricSample::new("sys", at).with(Metric::SystemResponseTime, 0.1))
                .unwrap();
        }
        assert_eq!(m.samples_held("sys"), MAX_SAMPLES_PER_SOURCE);
    }

    #[test]
    fn out_of_order_samples_are_kept_sorted() {
        let mut m = PerfMonitor::default();
        m.record(MetricSample::new("s", secs(30)).with(Metric::ErrorRate, 0.0))
            .unwrap();
        m.record(MetricSample::new("s", secs(10)).with(Metric::ErrorRate, 0.0))
            .unwrap();
        m.record(MetricSample::new("s", secs(20)).with(Metric::ErrorRate, 0.0))
            .unwrap();
        let st = m.window_stats("s", Metric::ErrorRate, secs(30)).unwrap();
        assert_eq!(st.count, 3);
    }

    #[test]
    fn recovery_after_quiet_period_and_good_sample() {
        let mut m = PerfMonitor::default();
        let v = m
            .record(MetricSample::new("erp", t0()).with(Metric::ErrorRate, 0.3))
            .unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(
            m.open_violations(),
            vec![("erp".to_string(), Metric::ErrorRate)]
        );
        // No good sample yet: silence is not recovery.
        assert!(m.healthy_sources(secs(600)).is_empty());
        m.record(MetricSample::new("erp", secs(30)).with(Metric::ErrorRate, 0.01))
            .unwrap();
        // Good sample, but last violation only 60 s ago.
        assert!(m.healthy_sources(secs(60)).is_empty());
        assert_eq!(
            m.healthy_sources(secs(120)),
            vec![("erp".to_string(), Metric::ErrorRate)]
        );
        // A new violation resets the clock.
        m.record(MetricSample::new("erp", secs(130)).with(Metric::ErrorRate, 0.5))
            .unwrap();
        assert!(m.healthy_sources(secs(200)).is_empty());
        m.record(MetricSample::new("erp", secs(140)).with(Metric::ErrorRate, 0.0))
            .unwrap();
        assert!(m.healthy_sources(secs(249)).is_empty());
        assert_eq!(m.take_recovered(secs(250)).len(), 1);
        // Acknowledged: not reported again.
        assert!(m.healthy_sources(secs(900)).is_empty());
        assert!(m.open_violations().is_empty());
        assert!(!m.mark_recovered("erp", Metric::ErrorRate));
    }

    #[test]
    fn recovery_is_per_metric() {
        let mut m = PerfMonitor::default();
        m.record(
            MetricSample::new("llm", t0())
                .with(Metric::LlmResponseTime, 15.0)
                .with(Metric::Availability, 0.5),
        )
        .unwrap();
        m.record(MetricSample::new("llm", secs(10)).with(Metric::LlmResponseTime, 2.0))
            .unwrap();
        assert_eq!(
            m.healthy_sources(secs(121)),
            vec![("llm".to_string(), Metric::LlmResponseTime)]
        );
    }

    #[test]
    fn prune_drops_idle_sources_without_open_violations() {
        let mut m = PerfMonitor::default();
        m.record(MetricSample::new("a", t0()).with(Metric::ErrorRate, 0.0))
            .unwrap();
        m.record(MetricSample::new("b", t0()).with(Metric::ErrorRate, 0.9))
            .unwrap();
        m.prune(secs(1000));
        assert_eq!(m.source_count(), 1, "b keeps its open violation");
        assert_eq!(
            m.open_violations(),
            vec![("b".to_string(), Metric::ErrorRate)]
        );
    }

    #[test]
    fn custom_thresholds() {
        let mut m = PerfMonitor::new(PerfThresholds {
            tool_execution_time: Duration::from_millis(500),
            ..PerfThresholds::default()
        });
        let v = m
            .record(MetricSample::new("hr", t0()).with(Metric::ToolExecutionTime, 0.6))
            .unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].threshold, 0.5);
    }

    #[test]
    fn sample_deserialises_from_json() {
        let s: MetricSample = serde_json::from_str(
            r#"{"source":"llm","at":"2025-06-01T12:00:00Z","llm_response_time":11.0}"#,
        )
        .unwrap();
        assert_eq!(s.at, t0());
        assert_eq!(s.get(Metric::LlmResponseTime), Some(11.0));
        assert_eq!(s.get(Metric::ErrorRate), None);
    }
}
