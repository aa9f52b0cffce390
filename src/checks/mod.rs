//! Pure checks the monitoring use cases run over inputs the service reads: the sliding-window
//! performance monitor, the data-quality / tool-catalog checks, the API-key usage baselines
//! ([`keys`]), the data-access rules ([`access`]) and the upstream probe state ([`upstreams`]).
//!
//! May import: `crate::domain`, `crate::detect`.

pub mod access;
pub mod dataquality;
pub mod keys;
pub mod performance;
pub mod upstreams;
