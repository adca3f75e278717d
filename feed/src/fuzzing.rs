//! Entry points for fuzzing, shared by the bounded runs in `tests/fuzz.rs` and the
//! coverage-guided targets in `fuzz/` (`cargo fuzz run feed_stream`).

use crate::SiteFeed;
use daemon::sse::{Frame, MAX_EVENT, SseParser};

/// A feed stream cut into `chunk`-byte reads, through the event framing and the document's
/// JSON, as the follower reads it; nothing may panic and no event outgrows its bound.
pub fn stream(bytes: &[u8], chunk: usize) {
    let mut parser = SseParser::default();
    for piece in bytes.chunks(chunk.max(1)) {
        let Ok(frames) = parser.push(piece) else {
            return;
        };
        for frame in frames {
            if let Frame::Data(text) = frame {
                assert!(text.len() < MAX_EVENT);
                if let Ok(doc) = serde_json::from_str::<SiteFeed>(&text) {
                    let _ = doc.version();
                }
            }
        }
    }
    let _ = serde_json::from_slice::<SiteFeed>(bytes);
}
