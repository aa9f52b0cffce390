//! API-key usage anomalies (AIMS-IRP-001 §8.5.2.1 "API key monitoring and usage patterns"):
//! per key, the source IPs and user agents seen, and a sliding call-rate baseline. Pure and
//! time-injectable: every usage carries its own instant and nothing reads the clock.
//!
//! Rules (defaults in `[keys]`, documented in `docs/detection.md`):
//! * **new source IP / new user agent** — after the key's learning period (measured from its
//!   first recorded use), a value never seen for that key is an anomaly (and is then learned);
//!   the first value a key is seen with is learned whatever the period;
//! * **call-rate spike** — calls in the last `rate_window` above both `spike_min_calls` and
//!   `spike_factor` × the key's mean rate per `rate_window` over the preceding `baseline_window`
//!   (only once the baseline covers the learning period);
//! * **used after revocation** and **exposed fingerprint** are decided by the caller (the
//!   containment table and the exposure registry) and passed in.
//!
//! May import: `crate::domain`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// Most distinct IPs / user agents remembered per key (older learning is kept, new values past
/// the cap are still reported but not learned).
pub const MAX_LEARNED: usize = 256;
/// Most call instants kept per key.
pub const MAX_CALLS: usize = 20_000;

/// One recorded use of an API key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyUsage {
    /// The key's identifier (a label or the public key id, never the secret).
    pub key_id: String,
    /// Who used it.
    pub principal: Option<String>,
    /// The caller's IP address.
    pub source_ip: Option<String>,
    /// The caller's user agent.
    pub user_agent: Option<String>,
    /// The endpoint called.
    pub endpoint: Option<String>,
    /// The HTTP status of the call.
    pub status: Option<u16>,
    /// When.
    pub at: DateTime<Utc>,
}

/// The thresholds of the key rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRules {
    /// New IPs and user agents are learned, not reported, for this long after a key's first use.
    #[serde(with = "humantime_serde")]
    pub learning_period: Duration,
    /// The window the current call rate is counted over.
    #[serde(with = "humantime_serde")]
    pub rate_window: Duration,
    /// The window the baseline rate is averaged over (before the current `rate_window`).
    #[serde(with = "humantime_serde")]
    pub baseline_window: Duration,
    /// Current rate above this multiple of the baseline is a spike.
    pub spike_factor: f64,
    /// ... and above this many calls per `rate_window` (the floor).
    pub spike_min_calls: u32,
}

/// What is unusual about a use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyAnomalyKind {
    /// An IP never seen for this key, after its learning period.
    NewSourceIp,
    /// A user agent never seen for this key, after its learning period.
    NewUserAgent,
    /// The call rate jumped above the baseline.
    RateSpike,
    /// The key was revoked and is still used.
    UsedAfterRevocation,
    /// The key's fingerprint matches a credential seen exposed in screened text.
    ExposedFingerprint,
}

impl KeyAnomalyKind {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAnomalyKind::NewSourceIp => "new_source_ip",
            KeyAnomalyKind::NewUserAgent => "new_user_agent",
            KeyAnomalyKind::RateSpike => "rate_spike",
            KeyAnomalyKind::UsedAfterRevocation => "used_after_revocation",
            KeyAnomalyKind::ExposedFingerprint => "exposed_fingerprint",
        }
    }
}

/// One anomaly with a sentence for the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyAnomaly {
    /// Which rule.
    pub kind: KeyAnomalyKind,
    /// What was seen, for the evidence (no secret).
    pub detail: String,
}

#[derive(Debug, Default)]
struct KeyState {
    first_seen: Option<DateTime<Utc>>,
    ips: BTreeSet<String>,
    agents: BTreeSet<String>,
    calls: VecDeque<DateTime<Utc>>,
}

/// The per-key baselines.
#[derive(Debug, Default)]
pub struct KeyMonitor {
    keys: HashMap<String, KeyState>,
}

fn td(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl KeyMonitor {
    /// An empty monitor.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many keys have a baseline.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// Records `u` and returns what is anomalous about it. `revoked` and `exposed` are the
    /// caller's findings for this key (containment and exposure registry).
    pub fn observe(
        &mut self,
        u: &KeyUsage,
        rules: &KeyRules,
        revoked: bool,
        exposed: bool,
    ) -> Vec<KeyAnomaly> {
        let mut out = Vec::new();
        if revoked {
            out.push(KeyAnomaly {
                kind: KeyAnomalyKind::UsedAfterRevocation,
                detail: format!(
                    "key {} was revoked and was used{}{}",
                    u.key_id,
                    u.source_ip
                        .as_deref()
                        .map(|ip| format!(" from {ip}"))
                        .unwrap_or_default(),
                    u.endpoint
                        .as_deref()
                        .map(|e| format!(" on {e}"))
                        .unwrap_or_default()
                ),
            });
        }
        if exposed {
            out.push(KeyAnomaly {
                kind: KeyAnomalyKind::ExposedFingerprint,
                detail: format!(
                    "key {} matches the fingerprint of a credential seen exposed in screened text",
                    u.key_id
                ),
            });
        }
        let st = self.keys.entry(u.key_id.clone()).or_default();
        let first = *st.first_seen.get_or_insert(u.at);
        let learning = u.at < first + td(rules.learning_period);
        for (value, set, kind, what) in [
            (
                &u.source_ip,
                &mut st.ips,
                KeyAnomalyKind::NewSourceIp,
                "source IP",
            ),
            (
                &u.user_agent,
                &mut st.agents,
                KeyAnomalyKind::NewUserAgent,
                "user agent",
            ),
        ] {
            let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
                continue;
            };
            if set.contains(v) {
                continue;
            }
            // The first value a key is seen with is its baseline, whatever the learning period.
            if !learning && !set.is_empty() {
                out.push(KeyAnomaly {
                    kind,
                    detail: format!(
                        "key {} used from a new {what} '{}' after its learning period (known: {})",
                        u.key_id,
                        crate::domain::incident::truncate_chars(v, 80),
                        set.len()
                    ),
                });
            }
            if set.len() < MAX_LEARNED {
                set.insert(v.to_string());
            }
        }
        // Sliding rate: calls kept for rate_window + baseline_window.
        let horizon = u.at - td(rules.rate_window) - td(rules.baseline_window);
        while st.calls.front().is_some_and(|t| *t < horizon) {
            st.calls.pop_front();
        }
        if st.calls.len() >= MAX_CALLS {
            st.calls.pop_front();
        }
        st.calls.push_back(u.at);
        let recent_from = u.at - td(rules.rate_window);
        let recent = st.calls.iter().filter(|t| **t > recent_from).count();
        let baseline_calls = st.calls.len() - recent;
        let periods = (rules.baseline_window.as_secs_f64()
            / rules.rate_window.as_secs_f64().max(1e-3))
        .max(1.0);
        let baseline_rate = baseline_calls as f64 / periods;
        let baseline_ready = u.at >= first + td(rules.learning_period);
        let limit = (baseline_rate * rules.spike_factor).max(f64::from(rules.spike_min_calls));
        if baseline_ready && recent as f64 > limit {
            out.push(KeyAnomaly {
                kind: KeyAnomalyKind::RateSpike,
                detail: format!(
                    "key {} made {recent} calls in {} against a baseline of {baseline_rate:.1} per {} (limit {limit:.0})",
                    u.key_id,
                    humantime_serde::re::humantime::format_duration(rules.rate_window),
                    humantime_serde::re::humantime::format_duration(rules.rate_window),
                ),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn rules() -> KeyRules {
        KeyRules {
            learning_period: Duration::from_secs(3600),
            rate_window: Duration::from_secs(60),
            baseline_window: Duration::from_secs(3600),
            spike_factor: 5.0,
            spike_min_calls: 30,
        }
    }

    fn use_at(t: DateTime<Utc>, ip: &str, ua: &str) -> KeyUsage {
        KeyUsage {
            key_id: "k1".into(),
            principal: None,
            source_ip: Some(ip.into()),
            user_agent: Some(ua.into()),
            endpoint: None,
            status: None,
            at: t,
        }
    }

    #[test]
    fn new_ip_is_learned_during_learning_and_reported_after() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut m = KeyMonitor::new();
        let r = rules();
        assert!(
            m.observe(&use_at(t0, "10.0.0.1", "sdk/1"), &r, false, false)
                .is_empty()
        );
        let t = t0 + TimeDelta::minutes(30);
        assert!(
            m.observe(&use_at(t, "10.0.0.2", "sdk/1"), &r, false, false)
                .is_empty()
        );
        let t = t0 + TimeDelta::minutes(90);
        assert!(
            m.observe(&use_at(t, "10.0.0.2", "sdk/1"), &r, false, false)
                .is_empty()
        );
        let a = m.observe(&use_at(t, "203.0.113.9", "curl/8"), &r, false, false);
        let kinds: Vec<_> = a.iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            vec![KeyAnomalyKind::NewSourceIp, KeyAnomalyKind::NewUserAgent]
        );
        // learned now
        assert!(
            m.observe(&use_at(t, "203.0.113.9", "curl/8"), &r, false, false)
                .is_empty()
        );
    }

    #[test]
    fn rate_spike_needs_floor_and_factor_over_baseline() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut m = KeyMonitor::new();
        let r = rules();
        // one call a minute for 70 minutes: steady, no spike
        for i in 0..70 {
            let a = m.observe(
                &use_at(t0 + TimeDelta::minutes(i), "ip", "ua"),
                &r,
                false,
                false,
            );
            assert!(a.is_empty(), "minute {i}: {a:?}");
        }
        // 40 calls within one minute: spike (floor 30, baseline ~1/min × 5)
        let t = t0 + TimeDelta::minutes(71);
        let mut spiked = false;
        for s in 0..40 {
            let a = m.observe(
                &use_at(t + TimeDelta::seconds(s), "ip", "ua"),
                &r,
                false,
                false,
            );
            spiked |= a.iter().any(|a| a.kind == KeyAnomalyKind::RateSpike);
            if s < 29 {
                assert!(a.is_empty(), "call {s} under the floor: {a:?}");
            }
        }
        assert!(spiked);
    }

    #[test]
    fn revoked_and_exposed_are_reported_as_given() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut m = KeyMonitor::new();
        let a = m.observe(&use_at(t0, "ip", "ua"), &rules(), true, true);
        let kinds: Vec<_> = a.iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            vec![
                KeyAnomalyKind::UsedAfterRevocation,
                KeyAnomalyKind::ExposedFingerprint
            ]
        );
    }
}
