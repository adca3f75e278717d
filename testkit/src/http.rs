//! HTTP for tests (metrics, status documents, admin calls), through the tree's one client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use daemon::http::{Method, blocking};

/// GETs `path` from `addr`; returns the status code and body, or `None` on connection errors.
pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    request(addr, Method::GET, path, None)
}

/// POSTs an empty body to `path`.
pub fn post(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    request(addr, Method::POST, path, None)
}

/// POSTs an empty body to `path` with `Authorization: Bearer TOKEN`.
pub fn post_with_token(addr: SocketAddr, path: &str, token: &str) -> Option<(u16, String)> {
    request(addr, Method::POST, path, Some(token))
}

fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> Option<(u16, String)> {
    let response = blocking(
        method,
        &addr.to_string(),
        path,
        token,
        Duration::from_secs(5),
    )
    .ok()?;
    Some((response.status, response.body))
}

/// What a server-sent event stream said, and when it reached the test.
#[derive(Debug, Clone, PartialEq)]
pub enum Streamed {
    /// An event's data.
    Data(String),
    /// A comment line (a heartbeat).
    Comment,
    /// The stream ended: closed by the server, or failed (why).
    Ended(String),
}

/// A server-sent event stream read in the background, for tests that time what it says.
pub struct EventStream {
    pub status: u16,
    rx: mpsc::Receiver<(Instant, Streamed)>,
}

impl EventStream {
    /// GETs `path` from `addr` as a stream; `None` when the request fails.
    pub fn open(addr: SocketAddr, path: &str) -> Option<Self> {
        use http_body_util::BodyExt;
        let (head_tx, head_rx) = mpsc::channel();
        let (tx, rx) = mpsc::channel();
        let path = path.to_owned();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let opened = daemon::http::open(
                    Method::GET,
                    &addr.to_string(),
                    &path,
                    None,
                    Some("text/event-stream"),
                    Duration::from_secs(5),
                )
                .await;
                let response = match opened {
                    Ok(r) => r,
                    Err(_) => {
                        let _ = head_tx.send(None);
                        return;
                    }
                };
                let _ = head_tx.send(Some(response.status().as_u16()));
                let mut body = response.into_body();
                let mut parser = daemon::sse::SseParser::default();
                loop {
                    let ended = match body.frame().await {
                        None => "closed by the server".to_owned(),
                        Some(Err(e)) => e.to_string(),
                        Some(Ok(frame)) => {
                            let Ok(bytes) = frame.into_data() else {
                                continue;
                            };
                            match parser.push(&bytes) {
                                Ok(frames) => {
                                    let now = Instant::now();
                                    for f in frames {
                                        let said = match f {
                                            daemon::sse::Frame::Data(d) => Streamed::Data(d),
                                            daemon::sse::Frame::Comment => Streamed::Comment,
                                        };
                                        if tx.send((now, said)).is_err() {
                                            return;
                                        }
                                    }
                                    continue;
                                }
                                Err(n) => format!("an event over {n} bytes"),
                            }
                        }
                    };
                    let _ = tx.send((Instant::now(), Streamed::Ended(ended)));
                    return;
                }
            });
        });
        let status = head_rx.recv_timeout(Duration::from_secs(6)).ok()??;
        Some(Self { status, rx })
    }

    /// The next thing the stream says within `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<(Instant, Streamed)> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The first event whose data `accept` takes within `timeout`, and when it came; `None`
    /// on timeout or when the stream ends first.
    pub fn wait_data(
        &self,
        timeout: Duration,
        mut accept: impl FnMut(&str) -> bool,
    ) -> Option<(Instant, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.next(left)? {
                (at, Streamed::Data(d)) if accept(&d) => return Some((at, d)),
                (_, Streamed::Ended(_)) => return None,
                _ => {}
            }
        }
    }

    /// Everything said within `window`.
    pub fn during(&self, window: Duration) -> Vec<(Instant, Streamed)> {
        let deadline = Instant::now() + window;
        let mut said = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left) {
                Some(s) => said.push(s),
                None => break,
            }
        }
        said
    }
}

/// One HTTP/1.1 connection as a player keeps it: alive while the server allows (a new one
/// after `Connection: close`), or one per request. Any failure is returned: a refused or
/// reset connection, a short body, a connection closed before the answer (no retry).
pub struct Connection {
    addr: SocketAddr,
    keep_alive: bool,
    stream: Option<BufReader<TcpStream>>,
}

impl Connection {
    pub fn new(addr: SocketAddr, keep_alive: bool) -> Self {
        Self {
            addr,
            keep_alive,
            stream: None,
        }
    }

    /// GET `path`: the status and the whole body, or why not. Any failure counts: a refused
    /// or reset connection, a short body, a connection closed before the answer.
    pub fn get(&mut self, path: &str) -> Result<(u16, Vec<u8>), String> {
        let reused = self.stream.is_some();
        let result = self.exchange(path);
        if result.is_err() {
            self.stream = None;
        }
        result.map_err(|e| format!("GET {path} (connection reused: {reused}): {e}"))
    }

    fn exchange(&mut self, path: &str) -> Result<(u16, Vec<u8>), String> {
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
                .map_err(|e| format!("connect: {e}"))?;
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .map_err(|e| e.to_string())?;
            self.stream = Some(BufReader::new(stream));
        }
        let reader = self.stream.as_mut().ok_or("no connection")?;
        let close = if self.keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        };
        reader
            .get_mut()
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: node\r\n{close}\r\n").as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("status line: {e}"))?;
        if line.is_empty() {
            return Err("closed before the answer".into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let (mut length, mut closing) = (None, !self.keep_alive);
        loop {
            line.clear();
            reader
                .read_line(&mut line)
                .map_err(|e| format!("headers: {e}"))?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse::<usize>().ok(),
                "connection" if value.trim().eq_ignore_ascii_case("close") => closing = true,
                _ => {}
            }
        }
        let length = length.ok_or("no Content-Length")?;
        let mut body = vec![0u8; length];
        reader
            .read_exact(&mut body)
            .map_err(|e| format!("body of {length} bytes: {e}"))?;
        if closing {
            self.stream = None;
        }
        Ok((status, body))
    }
}
