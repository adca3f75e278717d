//! Following a feed (geodns's side): one long-lived HTTP/1.1 request to `/feed/stream`, read
//! as server-sent events.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::SiteFeed;

/// What the stream said.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    /// A new version of the document.
    Document(SiteFeed),
    /// A keep-alive: the feed is alive and unchanged.
    Alive,
}

/// Why following stopped.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("feed URL {0:?} is not http://HOST:PORT[/path]")]
    Url(String),
    #[error("cannot connect to the feed at {url}: {cause}")]
    Connect { url: String, cause: std::io::Error },
    #[error("feed HTTP error: {0}")]
    Http(#[from] hyper::Error),
    #[error("the feed answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the feed ended")]
    Ended,
}

/// Splits `http://host:port/path` into the address and the path prefix.
fn parse(url: &str) -> Result<(String, String), FeedError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| FeedError::Url(url.to_owned()))?;
    let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    if host.is_empty() {
        return Err(FeedError::Url(url.to_owned()));
    }
    Ok((
        host.to_owned(),
        format!("/{}", path.trim_end_matches('/'))
            .trim_end_matches('/')
            .to_owned(),
    ))
}

/// Follows the feed at `url` (its base URL), calling `on_event` for each document and
/// keep-alive, until the connection ends or fails.
pub async fn follow(
    url: &str,
    token: Option<&str>,
    mut on_event: impl FnMut(FeedEvent),
) -> Result<(), FeedError> {
    let (host, prefix) = parse(url)?;
    let stream = tokio::net::TcpStream::connect(&host)
        .await
        .map_err(|cause| FeedError::Connect {
            url: url.to_owned(),
            cause,
        })?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = hyper::Request::get(format!("{prefix}/feed/stream"))
        .header(hyper::header::HOST, &host)
        .header(hyper::header::ACCEPT, "text/event-stream");
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| FeedError::Url(e.to_string()))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        return Err(FeedError::Status {
            status: status.as_u16(),
            body: text.trim().to_owned(),
        });
    }
    let mut parser = SseParser::default();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            for event in parser.push(&data) {
                on_event(event);
            }
        }
    }
    Err(FeedError::Ended)
}

/// Incremental server-sent-events parser (only what the feed uses: `data:` lines and comments).
#[derive(Default)]
struct SseParser {
    line: Vec<u8>,
    data: String,
}

impl SseParser {
    fn push(&mut self, bytes: &[u8]) -> Vec<FeedEvent> {
        let mut events = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let line = String::from_utf8_lossy(&self.line)
                .trim_end_matches('\r')
                .to_owned();
            self.line.clear();
            if line.is_empty() {
                if !self.data.is_empty() {
                    match serde_json::from_str::<SiteFeed>(&self.data) {
                        Ok(doc) => events.push(FeedEvent::Document(doc)),
                        Err(e) => tracing::warn!("feed event is not a site document, ignored: {e}"),
                    }
                    self.data.clear();
                }
            } else if line.starts_with(':') {
                events.push(FeedEvent::Alive);
            } else if let Some(data) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(data.strip_prefix(' ').unwrap_or(data));
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_are_reassembled() {
        let mut p = SseParser::default();
        let doc = serde_json::to_string(&SiteFeed {
            site: "ams".into(),
            generation: 3,
            ..Default::default()
        })
        .unwrap();
        let text = format!(": ping\n\nevent: feed\ndata: {doc}\n\n");
        let (a, b) = text.as_bytes().split_at(20);
        let mut events = p.push(a);
        events.extend(p.push(b));
        assert_eq!(events[0], FeedEvent::Alive);
        assert!(
            matches!(&events[1], FeedEvent::Document(d) if d.site == "ams" && d.generation == 3)
        );
    }

    #[test]
    fn urls_are_split_into_host_and_prefix() {
        assert_eq!(
            parse("http://127.0.0.1:9180").unwrap(),
            ("127.0.0.1:9180".into(), String::new())
        );
        assert_eq!(parse("http://h:1/x/").unwrap(), ("h:1".into(), "/x".into()));
        assert!(parse("ftp://h").is_err());
    }
}
