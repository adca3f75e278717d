//! HLS live origin with redundant MPEG-TS ingest.

pub mod channel;
pub mod feeder;
pub mod server;
pub mod ts;
