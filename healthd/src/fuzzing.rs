//! Entry points for fuzzing, shared by the bounded runs in `tests/fuzz.rs` and the
//! coverage-guided targets in `fuzz/` (`cargo fuzz run hls_playlist`).

use std::time::{Duration, Instant};

use crate::probe::hls::{Progress, check_segment, parse_master, parse_playlist, resolve};

/// A playlist from a node, through the parsers and the checks that use what they return
/// (freeze timing, segment speed, URI resolution); nothing may panic.
pub fn playlist(bytes: &[u8]) {
    let start = Instant::now();
    let text = String::from_utf8_lossy(bytes);
    if let Some(playlist) = parse_playlist(&text) {
        assert!(playlist.target_duration > 0.0 && playlist.target_duration.is_finite());
        let mut progress = Progress::default();
        let _ = progress.check(&playlist, 1.5, start);
        let _ = progress.check(&playlist, 1.5, start + Duration::from_secs(3600));
        if let Some((uri, duration)) = &playlist.newest {
            let _ = resolve("/news/index.m3u8", uri);
            let _ = check_segment(&[0x47; 188], Duration::from_millis(5), *duration, 2.0);
        }
    }
    for uri in parse_master(&text).unwrap_or_default() {
        let path = resolve("/sports/index.m3u8", &uri);
        assert!(path.starts_with('/'), "{path}");
    }
}

/// A node's status document (read beside the probes, and pushed on its status stream);
/// nothing may panic and the load is a finite fraction.
pub fn status_document(bytes: &[u8]) {
    if let Some(doc) = crate::report::document(bytes, 1000) {
        assert!(doc.report.load.is_finite() && doc.report.load >= 0.0);
        assert!(doc.ingest_lost.iter().all(|name| name.len() < bytes.len()));
    }
}
