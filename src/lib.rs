//! ai-incident-mcp: a self-hosted AI incident response server spoken to over
//! the Model Context Protocol.
//!
//! Layering (see `docs/architecture.md`):
//! `transport → mcp / http / cli → service → {incident, detect, audit, store}`.
//! The domain modules (`incident`, `detect`, `audit`, `clock`) import no rmcp,
//! axum, SQL or CLI crate.
//!
//! No panics in library code: `unwrap`, `expect` and `panic!` are denied here
//! (tests may use them).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod app;
pub mod audit;
pub mod clock;
pub mod config;
pub mod dataquality;
pub mod detect;
pub mod http;
pub mod incident;
pub mod lifecycle;
pub mod mcp;
pub mod monitor;
pub mod monitoring;
pub mod notify;
pub mod performance;
pub mod policy;
pub mod service;
pub mod store;
