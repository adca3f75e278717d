//! HLS live origin with redundant MPEG-TS ingest.
