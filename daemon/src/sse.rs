//! Server-sent events, both ways: reading them incrementally and within bounds (only what our
//! streams use: `data:` lines making one event per blank line, and `:` comments as
//! heartbeats), and serving a stream that a task writes. The site feed and a node's status
//! stream both use it. The reader is written here rather than taken from a crate because a
//! follower must bound what a broken or hostile stream can make it buffer, and the whole of it
//! is this page.

/// Largest event accepted (our documents are a few kilobytes).
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

/// A stream of what the task `body` sends on its channel, for a response body (axum's
/// `Sse`): the task ends when the client goes, as its next send fails.
pub fn from_task<F, Fut, T>(body: F) -> impl futures_core::Stream<Item = T> + Send + 'static
where
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(body(tx));
    ReceiverStream(rx)
}

/// The `Stream` glue over an mpsc receiver (keeps the dependency list short).
struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
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
