//! Pure checks the monitoring use cases run over inputs the service reads: the sliding-window
//! performance monitor and the data-quality / tool-catalog checks.
//!
//! May import: `crate::domain`, `crate::detect`.

pub mod dataquality;
pub mod performance;
