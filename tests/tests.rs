//! One integration-test binary (links once). Real binary, real sockets, real
//! SQLite files, the rmcp client as a real MCP peer.

mod common;

mod architecture;
mod cli;
mod detect;
mod detectors;
mod golden;
mod http;
mod lifecycle;
mod monitoring;
mod regressions;
mod stdio;
mod store;
