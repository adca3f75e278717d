//! What every daemon of the control plane shares for operations: start-up and exit
//! ([`process`]), `tracing` logs, the admin HTTP endpoint (`/metrics` in Prometheus text
//! format, `/healthz` meaning "serving", credentials for state-changing routes), server-sent events ([`sse`]), liveness of
//! the parts that serve, contained panics, signal handling (SIGHUP reloads, SIGTERM and Ctrl-C
//! stop), limits per client prefix ([`ratelimit`]) and systemd readiness and watchdog
//! ([`systemd`]).

pub mod admin;
pub mod admission;
pub mod handover;
pub mod http;
pub mod liveness;
pub mod logging;
pub mod panics;
pub mod process;
pub mod public;
pub mod ratelimit;
pub mod signals;
pub mod sse;
pub mod systemd;

pub use liveness::{Beat, Liveness};
