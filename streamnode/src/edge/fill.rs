//! One object as it arrives from the origin, read by any number of viewers at once: each reads
//! the chunks already there and then waits for the next, so the bytes reach every waiter as
//! they reach the edge (nginx's `proxy_cache_lock` makes waiters wait for the whole object,
//! and lets a duplicate request through after `proxy_cache_lock_timeout`).

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::HeaderValue;
use tokio::sync::watch;

/// The origin's answer, before its body.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    pub content_type: Option<HeaderValue>,
    /// The body's length, when the origin said it.
    pub length: Option<u64>,
}

/// Where the fetch is.
#[derive(Debug, Clone)]
pub enum Progress {
    /// No answer yet.
    Waiting,
    /// The head came; the body is arriving.
    Body(Head),
    /// The whole body is here.
    Done(Head),
    /// No origin answered, or the body broke off.
    Failed(String),
}

/// An object being fetched, or fetched.
#[derive(Debug)]
pub struct Fill {
    chunks: Mutex<Vec<Bytes>>,
    progress: watch::Sender<Progress>,
}

impl Default for Fill {
    fn default() -> Self {
        Self {
            chunks: Mutex::new(Vec::new()),
            progress: watch::channel(Progress::Waiting).0,
        }
    }
}

impl Fill {
    pub fn head(&self, head: Head) {
        self.progress.send_replace(Progress::Body(head));
    }

    pub fn push(&self, chunk: Bytes) {
        self.chunks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(chunk);
        // Wakes the readers waiting for the next chunk.
        self.progress.send_modify(|_| {});
    }

    pub fn done(&self) {
        self.progress.send_modify(|p| {
            if let Progress::Body(head) = p {
                *p = Progress::Done(head.clone());
            }
        });
    }

    pub fn fail(&self, why: String) {
        self.progress.send_replace(Progress::Failed(why));
    }

    /// Where the fetch is now.
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// The head once it came, or why there is none: waits for it.
    pub async fn answered(&self) -> Result<Head, String> {
        let mut rx = self.progress.subscribe();
        loop {
            match &*rx.borrow_and_update() {
                Progress::Waiting => {}
                Progress::Body(head) | Progress::Done(head) => return Ok(head.clone()),
                Progress::Failed(why) => return Err(why.clone()),
            }
            if rx.changed().await.is_err() {
                return Err("the fetch was abandoned".to_owned());
            }
        }
    }

    /// Waits for the whole body; its bytes.
    pub async fn complete(&self) -> Result<Bytes, String> {
        let mut rx = self.progress.subscribe();
        loop {
            match &*rx.borrow_and_update() {
                Progress::Done(_) => return Ok(self.bytes()),
                Progress::Failed(why) => return Err(why.clone()),
                _ => {}
            }
            if rx.changed().await.is_err() {
                return Err("the fetch was abandoned".to_owned());
            }
        }
    }

    /// The body so far, in one piece.
    pub fn bytes(&self) -> Bytes {
        let chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        match chunks.as_slice() {
            [one] => one.clone(),
            many => Bytes::from(many.concat()),
        }
    }

    /// Bytes of the body so far.
    pub fn size(&self) -> usize {
        let chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        chunks.iter().map(Bytes::len).sum()
    }

    /// A response body reading the object from its first byte as it arrives; it ends with an
    /// error (the connection is cut, as the client must not take a short object for a whole
    /// one) if the fetch fails part way.
    pub fn body(self: &Arc<Self>) -> Body {
        let state = (self.clone(), self.progress.subscribe(), 0usize);
        let stream = futures_util::stream::unfold(state, |(fill, mut rx, next)| async move {
            // Past an error: the end.
            if next == usize::MAX {
                return None;
            }
            loop {
                let progress = rx.borrow_and_update().clone();
                let chunk = {
                    let chunks = fill.chunks.lock().unwrap_or_else(|e| e.into_inner());
                    chunks.get(next).cloned()
                };
                if let Some(chunk) = chunk {
                    return Some((Ok(chunk), (fill, rx, next + 1)));
                }
                match progress {
                    Progress::Done(_) => return None,
                    Progress::Failed(why) => {
                        let error = std::io::Error::other(why);
                        return Some((Err(error), (fill, rx, usize::MAX)));
                    }
                    Progress::Waiting | Progress::Body(_) => {}
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        });
        Body::from_stream(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn readers_get_every_chunk_as_it_arrives_and_a_break_is_an_error() {
        let fill = Arc::new(Fill::default());
        let early = fill.body();
        fill.head(Head {
            status: 200,
            content_type: None,
            length: None,
        });
        fill.push(Bytes::from_static(b"abc"));
        let mut reader = fill.body();
        // The first chunk is readable before the object is complete.
        let first = reader.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"abc");
        fill.push(Bytes::from_static(b"def"));
        fill.done();
        let rest = reader.collect().await.unwrap().to_bytes();
        assert_eq!(&rest[..], b"def");
        assert_eq!(&early.collect().await.unwrap().to_bytes()[..], b"abcdef");
        assert_eq!(
            fill.complete().await.unwrap(),
            Bytes::from_static(b"abcdef")
        );

        let broken = Arc::new(Fill::default());
        broken.head(Head {
            status: 200,
            content_type: None,
            length: None,
        });
        broken.push(Bytes::from_static(b"abc"));
        let body = broken.body();
        broken.fail("origin went away".into());
        assert!(body.collect().await.is_err(), "a short object is an error");
        assert!(broken.complete().await.is_err());
    }
}
