//! Following a site's feed: the one follower geodns and healthd (for the other sites) use.
//!
//! One long-lived `GET /feed/stream`, read as server-sent events. It survives what a bad day
//! brings:
//! - a publisher that restarted: its documents carry a new instance id and are taken at once,
//!   even though their generation starts again from 1;
//! - a stream that goes silent without closing (the host lost power, a partition): with no
//!   event or heartbeat for [`SILENCE`] the connection is dropped and dialled again;
//! - a publisher that is down: dialled again after a backoff that doubles from
//!   [`BACKOFF_MIN`] to [`BACKOFF_MAX`], with jitter so that many followers do not reconnect in
//!   step;
//! - garbage on the stream: events are bounded in size, and one that is not a document is
//!   logged and skipped.

use std::time::Duration;

use http_body_util::BodyExt;
use tracing::{debug, info, warn};

use crate::{HEARTBEAT, SiteFeed, Version};
use daemon::sse::{Frame, SseParser};

/// A stream with no event and no heartbeat for this long is taken for dead.
pub const SILENCE: Duration = Duration::from_secs(3 * HEARTBEAT.as_secs());
/// First delay before dialling a feed again; doubles per failure up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest delay between attempts: a restarted publisher is followed within about this long.
pub const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// How long connecting and the response head may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the follower reports.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    /// A document newer than any seen before (or from a new publisher instance).
    Document(SiteFeed),
    /// The feed is alive: a heartbeat, or a document already seen.
    Alive,
}

/// Why one connection to a feed ended.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("feed URL {0:?} is not http://HOST:PORT[/path]")]
    Url(String),
    #[error(transparent)]
    Http(#[from] daemon::http::HttpError),
    #[error("reading the feed failed: {0}")]
    Read(#[from] hyper::Error),
    #[error("the feed answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the feed was silent for {0:?}: dropped, dialling again")]
    Silent(Duration),
    #[error("the feed sent an event over {0} bytes")]
    TooLarge(usize),
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
    let prefix = format!("/{}", path.trim_end_matches('/'));
    Ok((host.to_owned(), prefix.trim_end_matches('/').to_owned()))
}

/// How long after start a feed that was never reached is "not up yet" rather than lost.
const STARTUP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// What has been said of the feed being unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    None,
    /// Not reached yet since start, within the grace: said at INFO.
    Starting,
    /// Said at WARN.
    Reported,
}

/// Follows the feed at `url` (its base URL) for as long as the task lives, calling `on_event`
/// for each new document and each sign of life. `site` names the feed in logs.
pub async fn follow(
    site: &str,
    url: &str,
    token: Option<&str>,
    mut on_event: impl FnMut(FeedEvent),
) {
    let mut seen: Option<Version> = None;
    let mut backoff = BACKOFF_MIN;
    let mut outage = Outage::None;
    let mut ever = false;
    let started = std::time::Instant::now();
    let mut jitter = Jitter::new(site);
    loop {
        let mut heard = false;
        let result = follow_once(url, token, &mut seen, &mut |event| {
            heard = true;
            on_event(event);
        })
        .await;
        if heard {
            backoff = BACKOFF_MIN;
            ever = true;
            if outage == Outage::Reported {
                // At the level of the loss, so both show where warnings do.
                warn!(%site, %url, "site feed followed again");
            }
            outage = Outage::None;
        }
        if let Err(e) = result {
            // Sites start in any order: a feed not up yet is not an outage until the grace.
            let starting = !ever && started.elapsed() < STARTUP_GRACE;
            match (outage, starting) {
                (Outage::None, true) => {
                    info!(%site, %url, "site feed not up yet, dialling again: {e}");
                    outage = Outage::Starting;
                }
                // Said once per outage, not on every retry.
                (Outage::None | Outage::Starting, false) => {
                    warn!(%site, %url, "site feed lost, dialling again: {e}");
                    outage = Outage::Reported;
                }
                _ => debug!(%site, %url, "site feed still unavailable: {e}"),
            }
        }
        tokio::time::sleep(jitter.spread(backoff)).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection: returns when it ends, fails or goes silent.
async fn follow_once(
    url: &str,
    token: Option<&str>,
    seen: &mut Option<Version>,
    on_event: &mut impl FnMut(FeedEvent),
) -> Result<(), FeedError> {
    let (host, prefix) = parse(url)?;
    let response = daemon::http::open(
        daemon::http::Method::GET,
        &host,
        &format!("{prefix}/feed/stream"),
        token,
        Some("text/event-stream"),
        CONNECT_TIMEOUT,
    )
    .await?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let text = tokio::time::timeout(CONNECT_TIMEOUT, body.collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        return Err(FeedError::Status {
            status: status.as_u16(),
            body: text.trim().to_owned(),
        });
    }
    let mut parser = SseParser::default();
    loop {
        let frame = match tokio::time::timeout(SILENCE, body.frame()).await {
            Err(_) => return Err(FeedError::Silent(SILENCE)),
            Ok(None) => return Err(FeedError::Ended),
            Ok(Some(frame)) => frame?,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        for frame in parser.push(&data).map_err(FeedError::TooLarge)? {
            on_event(accept(seen, frame));
        }
    }
}

/// Turns a frame into what the follower reports, remembering the newest version seen.
fn accept(seen: &mut Option<Version>, frame: Frame) -> FeedEvent {
    let text = match frame {
        Frame::Comment => return FeedEvent::Alive,
        Frame::Data(text) => text,
    };
    match serde_json::from_str::<SiteFeed>(&text) {
        Ok(doc) => {
            let version = doc.version();
            if seen.as_ref().is_some_and(|s| !version.newer_than(s)) {
                return FeedEvent::Alive;
            }
            *seen = Some(version);
            FeedEvent::Document(doc)
        }
        Err(e) => {
            warn!("feed event is not a site document, ignored: {e}");
            FeedEvent::Alive
        }
    }
}

/// Spreads delays by up to a quarter either way, differently for each follower.
struct Jitter(u64);

impl Jitter {
    fn new(name: &str) -> Self {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let name = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Self((clock ^ name) | 1)
    }

    fn spread(&mut self, delay: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let factor = 0.75 + (self.0 % 1000) as f64 / 2000.0;
        delay.mul_f64(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(instance: &str, generation: u64) -> Frame {
        Frame::Data(
            serde_json::to_string(&SiteFeed {
                site: "ams".into(),
                instance: instance.into(),
                generation,
                ..Default::default()
            })
            .unwrap(),
        )
    }

    #[test]
    fn a_restarted_publisher_is_taken_at_once_and_old_documents_are_not() {
        let mut seen = None;
        assert!(matches!(
            accept(&mut seen, doc("a", 7)),
            FeedEvent::Document(_)
        ));
        assert_eq!(accept(&mut seen, doc("a", 7)), FeedEvent::Alive, "seen");
        assert_eq!(accept(&mut seen, doc("a", 6)), FeedEvent::Alive, "older");
        assert!(matches!(
            accept(&mut seen, doc("a", 8)),
            FeedEvent::Document(_)
        ));
        // The publisher restarted: generation 1 of a new instance is news.
        assert!(
            matches!(accept(&mut seen, doc("b", 1)), FeedEvent::Document(d) if d.generation == 1)
        );
        assert_eq!(accept(&mut seen, Frame::Comment), FeedEvent::Alive);
        assert_eq!(
            accept(&mut seen, Frame::Data("{not json".into())),
            FeedEvent::Alive
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
        assert!(parse("http:///x").is_err());
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        let mut j = Jitter::new("ams");
        for _ in 0..1000 {
            let d = j.spread(Duration::from_millis(400));
            assert!((300..=500).contains(&d.as_millis()), "{d:?}");
        }
    }
}
