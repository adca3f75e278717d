//! HLS live origin with redundant MPEG-TS ingest.

pub mod access;
pub mod channel;
pub mod cmcd;
pub mod daemon;
pub mod edge;
mod feeder;
pub mod fuzzing;
pub mod handover;
mod ingest;
mod metrics;
mod qoe;
mod server;
pub mod status;
pub mod ts;
