//! What every daemon of the control plane shares for operations: `tracing` logs, the admin
//! HTTP endpoint (`/metrics` in Prometheus text format, `/healthz`), and signal handling
//! (SIGHUP reloads, SIGTERM and Ctrl-C stop).

pub mod admin;
pub mod logging;
pub mod signals;
