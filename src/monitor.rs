//! The background loop: one cancellable tokio task started by `serve` that calls
//! [`IncidentService::run_checks`] every `monitor.interval`. An error in a check is logged by the
//! service and the loop goes on; the loop runs beside request handling and holds no lock.
//!
//! May import: `crate::service`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::service::IncidentService;

/// Starts the loop; it stops when `ct` is cancelled.
pub fn spawn(svc: Arc<IncidentService>, ct: CancellationToken) -> tokio::task::JoinHandle<()> {
    let period = svc.config().monitor.interval.max(Duration::from_millis(50));
    let cp_period = svc
        .config()
        .audit
        .checkpoint_interval
        .max(Duration::from_millis(50));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cp_tick = tokio::time::interval(cp_period);
        cp_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ct.cancelled() => break,
                _ = tick.tick() => { svc.run_checks().await; }
                _ = cp_tick.tick() => checkpoint(&svc).await,
            }
        }
        checkpoint(&svc).await;
        tracing::debug!("monitor loop stopped");
    })
}

async fn checkpoint(svc: &IncidentService) {
    match svc.write_checkpoint().await {
        Ok(Some(cp)) => tracing::debug!(seq = cp.seq, "audit checkpoint written"),
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %crate::service::error_chain(&e), "audit checkpoint not written")
        }
    }
}
