//! Where an edge fetches from: its origins in order, an origin that failed skipped for a while
//! (the next one, or the anycast address, takes over at once). One connection per fetch: an
//! edge fetches each object once, however many viewers ask, so fetches are few.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use daemon::http::Method;
use futures_util::FutureExt;
use http_body_util::BodyExt;

use super::fill::{Fill, Head};

/// How long an origin that failed is passed over while another is left.
const SKIP: Duration = Duration::from_secs(2);

/// The origins of an edge.
#[derive(Debug)]
pub struct Origins {
    list: Vec<Origin>,
    timeout: Duration,
}

#[derive(Debug)]
struct Origin {
    addr: SocketAddr,
    /// Passed over until then.
    failed_until: Mutex<Option<Instant>>,
}

/// How a fetch went, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The origin answered (whatever the status) and the body came whole.
    Answered,
    /// Connection refused, no answer in time, a 5xx, or the body broke off.
    Failed,
}

impl Origins {
    pub fn new(addrs: Vec<SocketAddr>, timeout: Duration) -> Self {
        Self {
            list: addrs
                .into_iter()
                .map(|addr| Origin {
                    addr,
                    failed_until: Mutex::new(None),
                })
                .collect(),
            timeout,
        }
    }

    /// The origins in the order to try now: those not failing, then those failing.
    fn order(&self, now: Instant) -> Vec<&Origin> {
        let (mut ok, failing): (Vec<&Origin>, Vec<&Origin>) = self.list.iter().partition(|o| {
            o.failed_until
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none_or(|t| t <= now)
        });
        ok.extend(failing);
        ok
    }

    /// Fetches `path_and_query` into `fill`, trying the origins in turn until one answers;
    /// `report` hears of each attempt. The fill ends done or failed.
    pub async fn fetch(
        &self,
        path_and_query: &str,
        fill: &Fill,
        mut report: impl FnMut(SocketAddr, Outcome),
    ) {
        let mut last = String::from("no origin configured");
        for origin in self.order(Instant::now()) {
            let host = origin.addr.to_string();
            let failed = |why: String| {
                *origin
                    .failed_until
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + SKIP);
                why
            };
            let response =
                daemon::http::open(Method::GET, &host, path_and_query, None, None, self.timeout)
                    .await;
            let response = match response {
                Ok(r) if r.status().is_server_error() => {
                    report(origin.addr, Outcome::Failed);
                    last = failed(format!("{host} answered {}", r.status()));
                    continue;
                }
                Ok(r) => r,
                Err(e) => {
                    report(origin.addr, Outcome::Failed);
                    last = failed(e.to_string());
                    continue;
                }
            };
            let header = |name| response.headers().get(name);
            fill.head(Head {
                status: response.status().as_u16(),
                content_type: header(axum::http::header::CONTENT_TYPE).cloned(),
                length: header(axum::http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse().ok()),
            });
            // Bytes go to the readers as they come; past the head there is no other origin to
            // try (the readers have started), so a break is the fill's failure.
            let mut body = response.into_body();
            loop {
                match tokio::time::timeout(self.timeout, body.frame()).await {
                    Ok(Some(Ok(frame))) => {
                        // What else has arrived goes with it: every chunk wakes every reader,
                        // so fewer, larger chunks cost less than the socket's reads.
                        let mut pieces = vec![frame.into_data().unwrap_or_default()];
                        let mut end = None;
                        loop {
                            match body.frame().now_or_never() {
                                Some(Some(Ok(next))) => {
                                    pieces.push(next.into_data().unwrap_or_default());
                                }
                                Some(Some(Err(e))) => {
                                    end = Some(Err(e));
                                    break;
                                }
                                Some(None) => {
                                    end = Some(Ok(()));
                                    break;
                                }
                                None => break,
                            }
                        }
                        let data = match pieces.len() {
                            1 => pieces.pop().unwrap_or_default(),
                            _ => pieces.concat().into(),
                        };
                        if !data.is_empty() {
                            fill.push(data);
                        }
                        match end {
                            None => {}
                            Some(Ok(())) => {
                                fill.done();
                                report(origin.addr, Outcome::Answered);
                                return;
                            }
                            Some(Err(e)) => {
                                report(origin.addr, Outcome::Failed);
                                fill.fail(failed(format!("{host}: the body broke off: {e}")));
                                return;
                            }
                        }
                    }
                    Ok(None) => {
                        fill.done();
                        report(origin.addr, Outcome::Answered);
                        return;
                    }
                    Ok(Some(Err(e))) => {
                        report(origin.addr, Outcome::Failed);
                        fill.fail(failed(format!("{host}: the body broke off: {e}")));
                        return;
                    }
                    Err(_) => {
                        report(origin.addr, Outcome::Failed);
                        fill.fail(failed(format!(
                            "{host}: the body stalled for {:?}",
                            self.timeout
                        )));
                        return;
                    }
                }
            }
        }
        fill.fail(last);
    }
}
