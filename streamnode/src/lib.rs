//! HLS live origin with redundant MPEG-TS ingest.

pub mod channel;
pub mod daemon;
pub mod feeder;
pub mod fuzzing;
pub mod ingest;
pub mod listener;
pub mod metrics;
pub mod server;
pub mod ts;
