//! Server-sent events, incrementally and within bounds: only what the feed uses (`data:` lines
//! making one event per blank line, and `:` comments as heartbeats). Written here rather than
//! taken from a crate because the follower must bound what a broken or hostile feed can make
//! it buffer, and the whole of it is this page.

/// Largest event accepted (a site's document is a few kilobytes).
pub const MAX_EVENT: usize = 1 << 20;

/// One thing the stream said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// An event's data (its `data:` lines joined by newlines).
    Data(String),
    /// A comment line: the publisher's heartbeat.
    Comment,
}

/// Reassembles frames from chunks cut anywhere.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: String,
}

impl SseParser {
    /// The frames completed by `bytes`; `Err(MAX_EVENT)` when a line or event grows past it
    /// (the connection should be dropped).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, usize> {
        let mut frames = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() >= MAX_EVENT {
                    return Err(MAX_EVENT);
                }
                self.line.push(b);
                continue;
            }
            let line = String::from_utf8_lossy(&self.line);
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                if !self.data.is_empty() {
                    frames.push(Frame::Data(std::mem::take(&mut self.data)));
                }
            } else if line.starts_with(':') {
                frames.push(Frame::Comment);
            } else if let Some(data) = line.strip_prefix("data:") {
                if self.data.len() + data.len() >= MAX_EVENT {
                    return Err(MAX_EVENT);
                }
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(data.strip_prefix(' ').unwrap_or(data));
            }
            self.line.clear();
        }
        Ok(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_are_reassembled() {
        let mut p = SseParser::default();
        let text = ": ping\n\nevent: feed\ndata: {\"a\":\ndata: 1}\r\n\r\n";
        let mut frames = Vec::new();
        for chunk in text.as_bytes().chunks(3) {
            frames.extend(p.push(chunk).unwrap());
        }
        assert_eq!(frames, [Frame::Comment, Frame::Data("{\"a\":\n1}".into())]);
    }

    #[test]
    fn an_endless_line_is_refused_not_buffered() {
        let mut p = SseParser::default();
        let chunk = vec![b'x'; 64 * 1024];
        let mut refused = false;
        for _ in 0..(MAX_EVENT / chunk.len() + 2) {
            if p.push(&chunk).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused);
    }
}
