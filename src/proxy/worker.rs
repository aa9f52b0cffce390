//! The proxy's write-behind queue: findings, call samples and upstream failures go to the store
//! from one background task, so pass-through in `monitor` mode never waits for the store. A job
//! that fails because the store is unavailable is retried with backoff (nothing is dropped but
//! samples past `[proxy] queue_capacity`); on shutdown the queue is drained before exit.
//!
//! May import: `crate::service`, `crate::checks`; tokio.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::checks::upstreams::FailureKind;
use crate::service::IncidentService;
use crate::service::guard::{TrafficInput, TrafficScreen};

/// One thing to write.
#[derive(Debug)]
pub enum Job {
    /// Texts to screen (when `screen` is `None`) and record.
    Traffic {
        input: TrafficInput,
        screen: Option<TrafficScreen>,
    },
    /// One call's latency and the error rate at that time.
    Sample {
        latency: Duration,
        error_rate: Option<f64>,
    },
    /// The upstream crashed, hung, or broke the protocol.
    Failure { kind: FailureKind, detail: String },
}

/// The sending side, cheap to clone.
#[derive(Clone, Debug)]
pub struct Queue {
    tx: mpsc::UnboundedSender<Job>,
    len: Arc<AtomicUsize>,
    capacity: usize,
    dropped: Arc<AtomicUsize>,
}

impl Queue {
    /// Queues a job. Samples are dropped (and counted) when the queue holds `capacity` jobs;
    /// findings and failures are always kept.
    pub fn push(&self, job: Job) {
        let n = self.len.load(Ordering::Relaxed);
        if n >= self.capacity && matches!(job, Job::Sample { .. }) {
            let d = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if d.is_power_of_two() {
                tracing::warn!(
                    dropped = d,
                    queued = n,
                    "proxy queue full: performance samples dropped"
                );
            }
            return;
        }
        self.len.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(job).is_err() {
            self.len.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("proxy queue closed; a finding was not recorded");
        }
    }
}

/// Starts the writer. It runs until `ct` is cancelled and the queue is empty (or `drain_for`
/// has passed after cancellation, when the store is down for good).
pub fn spawn(
    svc: Arc<IncidentService>,
    upstream: String,
    capacity: usize,
    ct: CancellationToken,
    drain_for: Duration,
) -> (Queue, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let len = Arc::new(AtomicUsize::new(0));
    let q = Queue {
        tx,
        len: len.clone(),
        capacity: capacity.max(1),
        dropped: Arc::new(AtomicUsize::new(0)),
    };
    let handle = tokio::spawn(async move {
        let mut retry: VecDeque<Job> = VecDeque::new();
        let mut backoff = Duration::from_millis(100);
        let mut deadline: Option<Instant> = None;
        loop {
            let job = if let Some(j) = retry.pop_front() {
                j
            } else {
                tokio::select! {
                    biased;
                    j = rx.recv() => match j { Some(j) => j, None => break },
                    () = ct.cancelled(), if deadline.is_none() => {
                        deadline = Some(Instant::now() + drain_for);
                        rx.close();
                        continue;
                    }
                }
            };
            match run(&svc, &upstream, &job).await {
                Ok(()) => {
                    len.fetch_sub(1, Ordering::Relaxed);
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        let left = len.load(Ordering::Relaxed);
                        tracing::error!(error = %e, left, "store still failing at shutdown; queued findings not written");
                        break;
                    }
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "store write failed; the proxy keeps the finding and retries");
                    retry.push_front(job);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
    (q, handle)
}

async fn run(
    svc: &IncidentService,
    upstream: &str,
    job: &Job,
) -> Result<(), crate::service::ServiceError> {
    match job {
        Job::Traffic { input, screen } => {
            let s = match screen {
                Some(s) => s.clone(),
                None => svc.screen_traffic(input),
            };
            if !s.findings.is_empty() {
                let ids = svc.record_traffic(input, &s).await?;
                tracing::warn!(
                    upstream,
                    tool = %input.tool,
                    direction = input.direction.as_str(),
                    findings = %s.summary(),
                    incidents = ?ids,
                    "guard proxy finding"
                );
            }
            Ok(())
        }
        Job::Sample {
            latency,
            error_rate,
        } => {
            let ids = svc
                .record_proxy_call(upstream, *latency, *error_rate)
                .await?;
            if !ids.is_empty() {
                tracing::warn!(upstream, incidents = ?ids, "performance threshold violated by proxied traffic");
            }
            Ok(())
        }
        Job::Failure { kind, detail } => {
            let id = svc.record_proxy_failure(upstream, *kind, detail).await?;
            tracing::warn!(upstream, kind = kind.as_str(), %detail, incident = %id, "upstream failure recorded");
            Ok(())
        }
    }
}
