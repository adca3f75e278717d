//! Shared by the integration tests (and the benchmark, through `#[path]`).

pub mod gdnsd;
