//! One integration-test binary (links once). Real binary, real sockets, real
//! SQLite files, the rmcp client as a real MCP peer.

mod common;

mod architecture;
mod audit;
mod cli;
mod detect;
mod detectors;
mod golden;
mod hardening;
mod http;
mod intake;
mod lifecycle;
mod metrics;
mod migration;
mod monitoring;
mod postgres;
mod proxy;
mod regressions;
mod rest;
mod roles;
mod stdio;
mod store;
mod web;
