//! State of the usage detectors (API keys, data access, upstream probes) held by the service,
//! the token buckets of `rate_limit` containments, and the JSON-lines tailer the background loop
//! reads `monitor.key_usage_log` / `monitor.access_log` with.
//!
//! May import: `crate::checks`, `crate::service`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};

use crate::checks::access::AccessMonitor;
use crate::checks::keys::KeyMonitor;
use crate::checks::upstreams::UpstreamState;
use crate::service::upstreams::Prober;
use crate::service::{AccessInput, Fault, IncidentService, KeyUsageInput, ServiceError};

/// Everything the detectors remember between calls (per process; baselines are learned again
/// after a restart, containments and incidents are in the store).
#[derive(Default)]
pub struct DetectorState {
    pub(crate) keys: Mutex<KeyMonitor>,
    pub(crate) access: Mutex<AccessMonitor>,
    pub(crate) upstreams: Mutex<BTreeMap<String, UpstreamState>>,
    /// The probe slot each upstream's last probe stands for ([`crate::service::upstreams::next_probe_slot`]).
    pub(crate) probe_slots: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Tool lists pinned in memory per MCP upstream (name → tool name → definition hash).
    pub(crate) live_pins: Mutex<HashMap<String, BTreeMap<String, String>>>,
    /// Fingerprints of credentials seen exposed in screened text.
    pub(crate) exposed: Mutex<HashSet<String>>,
    /// When `exposed` was last rebuilt from the store (the evidence of secret_exposure incidents).
    pub(crate) exposed_loaded: Mutex<Option<DateTime<Utc>>>,
    pub(crate) buckets: Mutex<HashMap<String, Bucket>>,
    pub(crate) tails: Mutex<HashMap<PathBuf, u64>>,
    pub(crate) prober: OnceLock<Arc<dyn Prober>>,
    /// Serialises probe passes (one loop pass at a time probes).
    pub(crate) probing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for DetectorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetectorState").finish_non_exhaustive()
    }
}

/// A token bucket (tokens refill continuously at `rate` per second up to `burst`).
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    last: DateTime<Utc>,
}

impl Bucket {
    /// Takes one token at `now`; `Err(seconds until one is available)` when empty.
    pub fn take(
        slot: &mut Option<Bucket>,
        per_minute: f64,
        burst: f64,
        now: DateTime<Utc>,
    ) -> Result<(), f64> {
        let rate = per_minute / 60.0;
        let b = slot.get_or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let dt = (now - b.last).num_milliseconds().max(0) as f64 / 1000.0;
        b.tokens = (b.tokens + dt * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).max(0.0))
        }
    }
}

pub(crate) fn lock<'a, T>(
    m: &'a Mutex<T>,
    what: &str,
) -> Result<std::sync::MutexGuard<'a, T>, ServiceError> {
    m.lock()
        .map_err(|_| Fault::Poisoned(what.to_string()).into())
}

/// New complete lines of `path` since the last call (the first call on an existing file starts
/// at its end, a file that appears later from its start; a file that shrank is read again from
/// the start). Blank lines are skipped; a half-written last line waits for the next call.
pub(crate) fn read_new_lines(
    offsets: &Mutex<HashMap<PathBuf, u64>>,
    path: &Path,
) -> Result<Vec<String>, String> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Not there yet: everything written once it appears is new.
            if let Ok(mut o) = offsets.lock() {
                o.insert(path.to_path_buf(), 0);
            }
            return Ok(Vec::new());
        }
        Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
    };
    let len = file
        .metadata()
        .map_err(|e| format!("cannot stat {}: {e}", path.display()))?
        .len();
    let mut o = offsets
        .lock()
        .map_err(|_| "tail offsets lock poisoned".to_string())?;
    let start = match o.get(path) {
        None => {
            o.insert(path.to_path_buf(), len);
            return Ok(Vec::new());
        }
        Some(&off) if off > len => 0,
        Some(&off) => off,
    };
    file.seek(SeekFrom::Start(start))
        .map_err(|e| format!("cannot seek {}: {e}", path.display()))?;
    let mut buf = Vec::new();
    file.take(len - start)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // Only complete lines; a half-written last line is read next time.
    let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    o.insert(path.to_path_buf(), start + complete as u64);
    let text = String::from_utf8_lossy(&buf[..complete]);
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

impl IncidentService {
    /// Reads the new lines of `monitor.key_usage_log` and `monitor.access_log` and records each
    /// (as `record_key_usage` / `record_access`). A line that is not a valid record is logged
    /// (file and reason, not its content) and skipped; the rest are still recorded. Returns
    /// (key uses, accesses, rejected lines).
    ///
    /// # Errors
    /// [`ServiceError::Internal`] when a file cannot be read or the store fails.
    pub async fn tail_usage_logs(&self) -> Result<(usize, usize, usize), ServiceError> {
        let m = &self.config.monitor;
        let (mut keys, mut accesses, mut bad) = (0, 0, 0);
        for (path, is_keys) in [(&m.key_usage_log, true), (&m.access_log, false)] {
            let Some(path) = path.clone() else { continue };
            let offsets = &self.detectors.tails;
            let lines = read_new_lines(offsets, &path).map_err(Fault::Refused)?;
            for line in lines {
                let r = if is_keys {
                    match serde_json::from_str::<KeyUsageInput>(&line) {
                        Ok(i) => self.record_key_usage(i).await.map(|_| keys += 1),
                        Err(e) => Err(ServiceError::Invalid {
                            field: "line",
                            message: e.to_string(),
                        }),
                    }
                } else {
                    match serde_json::from_str::<AccessInput>(&line) {
                        Ok(i) => self.record_access(i).await.map(|_| accesses += 1),
                        Err(e) => Err(ServiceError::Invalid {
                            field: "line",
                            message: e.to_string(),
                        }),
                    }
                };
                match r {
                    Ok(()) => {}
                    Err(e) if e.is_caller_error() => {
                        bad += 1;
                        tracing::warn!(file = %path.display(), error = %e, "usage log line rejected");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok((keys, accesses, bad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn tail_starts_at_end_reads_new_complete_lines_and_handles_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.jsonl");
        std::fs::write(&p, "old\n").unwrap();
        let offs = Mutex::new(HashMap::new());
        assert!(read_new_lines(&offs, &p).unwrap().is_empty());
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        write!(f, "a\nb\nhalf").unwrap();
        assert_eq!(read_new_lines(&offs, &p).unwrap(), vec!["a", "b"]);
        writeln!(f, "-done").unwrap();
        assert_eq!(read_new_lines(&offs, &p).unwrap(), vec!["half-done"]);
        std::fs::write(&p, "new\n").unwrap();
        assert_eq!(read_new_lines(&offs, &p).unwrap(), vec!["new"]);
        let missing = dir.path().join("later.jsonl");
        assert!(read_new_lines(&offs, &missing).unwrap().is_empty());
        std::fs::write(&missing, "first\n").unwrap();
        assert_eq!(read_new_lines(&offs, &missing).unwrap(), vec!["first"]);
    }

    #[test]
    fn bucket_allows_a_burst_then_refills() {
        let t = Utc::now();
        let mut b = None;
        for _ in 0..3 {
            assert!(Bucket::take(&mut b, 6.0, 3.0, t).is_ok());
        }
        let wait = Bucket::take(&mut b, 6.0, 3.0, t).unwrap_err();
        assert!((wait - 10.0).abs() < 0.01, "{wait}");
        assert!(Bucket::take(&mut b, 6.0, 3.0, t + chrono::TimeDelta::seconds(10)).is_ok());
    }
}
