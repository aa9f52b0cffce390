//! The domain: incidents and their rules, the events every change appends, the response policies,
//! what opening an incident entails, the post-incident document and the hash-chained audit log.
//! Pure: no I/O, no global clock, no transport or storage types.
//!
//! May import: `crate::detect` (categories, verdicts), std, serde, chrono, uuid, sha2, ed25519_dalek.

pub mod audit;
pub mod checkpoint;
pub mod clock;
pub mod incident;
pub mod kind;
pub mod opening;
pub mod policy;
pub mod postmortem;
pub mod projection;
