//! ai-incident-mcp: a self-hosted AI incident response server spoken to over
//! the Model Context Protocol.
//!
//! Layers (see `docs/architecture.md`; folders are layers, files are capabilities):
//! adapters (`mcp`, `http`, `proxy`, `view`, `monitor`, the CLI in `main.rs`) → `service` (one
//! `IncidentService`, one file per use-case group) → `domain`, `checks` and `detect` (pure).
//! `store`, `notify` and `probe` implement the service's ports. `tests/architecture.rs` enforces every
//! module's `May import:` line and the absence of cycles between top-level modules.
//!
//! No panics in library code: `unwrap`, `expect` and `panic!` are denied here
//! (tests may use them).
//!
//! May import: every top-level module (it declares them).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod app;
pub mod checks;
pub mod config;
pub mod detect;
pub mod domain;
pub mod http;
pub mod intake;
pub mod mcp;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod probe;
pub mod proxy;
pub mod service;
pub mod store;
pub mod view;
