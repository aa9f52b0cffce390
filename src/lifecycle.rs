//! The incident lifecycle (issue #4): classification, the 8-step workflow,
//! escalation sweeps, the notification outbox, containment, documentation.
//!
//! The background loop ([`crate::monitor`]) calls [`IncidentService::escalation_sweep`]
//! and [`IncidentService::drain_outbox`] every tick.

use crate::service::{IncidentService, ServiceError};

/// Lifecycle state held by the service (outbox worker handles, HTTP client, …).
#[derive(Debug, Default)]
pub struct LifecycleState {}

impl IncidentService {
    /// The lifecycle state.
    pub fn lifecycle(&self) -> &LifecycleState {
        &self.lifecycle
    }
}

impl IncidentService {
    /// Escalates every unacknowledged incident whose level's time has elapsed.
    /// Returns how many escalation steps were taken.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] if the store fails.
    pub async fn escalation_sweep(&self) -> Result<usize, ServiceError> {
        Ok(0)
    }

    /// Delivers due notifications from the outbox. Returns how many were attempted.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] if the store fails.
    pub async fn drain_outbox(&self) -> Result<usize, ServiceError> {
        Ok(0)
    }
}
