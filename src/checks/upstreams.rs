//! Upstream probe state: for each probed LLM API or MCP server, the consecutive failures and
//! successes that open an incident and record recovery, and the sliding window of probe results
//! behind its availability and error rate. Pure: each result carries its instant.
//!
//! May import: `crate::domain`.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

/// Probe results kept per upstream for availability / error rate.
pub const MAX_RESULTS: usize = 1024;

/// Why a probe failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// No answer within the timeout.
    Timeout,
    /// The connection could not be made (refused, DNS, TLS) or the process did not start.
    Connection,
    /// An HTTP status outside the expected ones.
    HttpStatus,
    /// Answered, but slower than the latency threshold.
    Slow,
    /// Not valid JSON-RPC / MCP (bad frame, closed stream, server crashed mid-call).
    Malformed,
    /// The server speaks a protocol version we do not.
    ProtocolVersion,
    /// A listed tool's input schema is not a valid JSON Schema object.
    ToolSchema,
    /// The configured safe tool call returned an error.
    ToolCall,
    /// The upstream is isolated by a containment; not probed.
    Isolated,
}

impl FailureKind {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Connection => "connection",
            FailureKind::HttpStatus => "http_status",
            FailureKind::Slow => "slow",
            FailureKind::Malformed => "malformed",
            FailureKind::ProtocolVersion => "protocol_version",
            FailureKind::ToolSchema => "tool_schema",
            FailureKind::ToolCall => "tool_call",
            FailureKind::Isolated => "isolated",
        }
    }
}

/// One probe's result.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    /// When the probe started.
    pub at: DateTime<Utc>,
    /// How long it took.
    pub latency: Duration,
    /// Why it failed, with a sentence; `None` when healthy.
    pub failure: Option<(FailureKind, String)>,
}

/// What a probe result changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Nothing to record on an incident.
    None,
    /// Failing enough times in a row: open (or add to) the incident.
    Failing,
    /// Healthy again for enough probes in a row after failing.
    Recovered,
}

/// The state of one upstream.
#[derive(Debug, Clone, Default)]
pub struct UpstreamState {
    consecutive_failures: u32,
    consecutive_successes: u32,
    /// True between the opening failure and the recovery.
    down: bool,
    results: VecDeque<(DateTime<Utc>, bool, Duration)>,
    /// When the last probe started (the scheduler's clock).
    pub last_probe_at: Option<DateTime<Utc>>,
}

/// Availability and error rate over the window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rates {
    /// Fraction of good probes.
    pub availability: f64,
    /// Fraction of failed probes.
    pub error_rate: f64,
    /// Probes in the window.
    pub probes: usize,
}

impl UpstreamState {
    /// Whether a probe is due at `now` for this `interval`.
    pub fn due(&self, interval: Duration, now: DateTime<Utc>) -> bool {
        self.last_probe_at
            .is_none_or(|t| now >= t + TimeDelta::from_std(interval).unwrap_or(TimeDelta::MAX))
    }

    /// True while the upstream counts as down (incident open, not yet recovered).
    pub fn is_down(&self) -> bool {
        self.down
    }

    /// Records `r`; `failures_to_open` and `recovery_probes` come from the upstream's config.
    pub fn record(
        &mut self,
        r: &ProbeResult,
        failures_to_open: u32,
        recovery_probes: u32,
        window: Duration,
    ) -> Transition {
        let ok = r.failure.is_none();
        if self.results.len() >= MAX_RESULTS {
            self.results.pop_front();
        }
        self.results.push_back((r.at, ok, r.latency));
        let from = r.at - TimeDelta::from_std(window).unwrap_or(TimeDelta::MAX);
        while self.results.front().is_some_and(|(t, _, _)| *t < from) {
            self.results.pop_front();
        }
        if ok {
            self.consecutive_failures = 0;
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
            if self.down && self.consecutive_successes >= recovery_probes.max(1) {
                self.down = false;
                return Transition::Recovered;
            }
            Transition::None
        } else {
            self.consecutive_successes = 0;
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            if self.consecutive_failures >= failures_to_open.max(1) {
                self.down = true;
                return Transition::Failing;
            }
            Transition::None
        }
    }

    /// Availability and error rate of the probes in the window.
    pub fn rates(&self) -> Rates {
        let n = self.results.len();
        let good = self.results.iter().filter(|(_, ok, _)| *ok).count();
        let availability = if n == 0 { 1.0 } else { good as f64 / n as f64 };
        Rates {
            availability,
            error_rate: 1.0 - availability,
            probes: n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn res(t: i64, ok: bool) -> ProbeResult {
        ProbeResult {
            at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + TimeDelta::seconds(t),
            latency: Duration::from_millis(5),
            failure: (!ok).then(|| (FailureKind::Connection, "refused".into())),
        }
    }

    #[test]
    fn opens_after_n_failures_and_recovers_after_m_successes() {
        let mut s = UpstreamState::default();
        let w = Duration::from_secs(300);
        assert_eq!(s.record(&res(0, true), 2, 3, w), Transition::None);
        assert_eq!(s.record(&res(30, false), 2, 3, w), Transition::None);
        assert_eq!(s.record(&res(60, false), 2, 3, w), Transition::Failing);
        assert_eq!(s.record(&res(90, false), 2, 3, w), Transition::Failing);
        assert!(s.is_down());
        assert_eq!(s.record(&res(120, true), 2, 3, w), Transition::None);
        assert_eq!(s.record(&res(150, true), 2, 3, w), Transition::None);
        assert_eq!(s.record(&res(180, true), 2, 3, w), Transition::Recovered);
        assert!(!s.is_down());
        assert_eq!(s.record(&res(210, true), 2, 3, w), Transition::None);
        let r = s.rates();
        assert_eq!(r.probes, 8);
        assert!((r.availability - 5.0 / 8.0).abs() < 1e-9);
    }

    #[test]
    fn due_follows_the_interval() {
        let mut s = UpstreamState::default();
        let t = res(0, true).at;
        assert!(s.due(Duration::from_secs(30), t));
        s.last_probe_at = Some(t);
        assert!(!s.due(Duration::from_secs(30), t + TimeDelta::seconds(29)));
        assert!(s.due(Duration::from_secs(30), t + TimeDelta::seconds(30)));
    }
}
