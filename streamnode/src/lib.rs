//! HLS live origin with redundant MPEG-TS ingest.

pub mod ts;
