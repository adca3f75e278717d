//! HLS live origin with redundant MPEG-TS ingest.

pub mod admission;
pub mod channel;
pub mod daemon;
mod feeder;
pub mod fuzzing;
mod ingest;
mod listener;
mod metrics;
mod server;
pub mod status;
pub mod ts;
