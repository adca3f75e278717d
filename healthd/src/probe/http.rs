//! A minimal HTTP/1.1 GET over hyper, for probes: status, headers and body, with a deadline.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// An HTTP response as probes need it.
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub body: Bytes,
    /// Time from the request to the last body byte.
    pub elapsed: Duration,
}

/// GETs `http://host:port/path`. Errors are the probe's failure detail.
pub async fn get(base: &str, path: &str, timeout: Duration) -> Result<Fetched, String> {
    tokio::time::timeout(timeout, fetch(base, path))
        .await
        .map_err(|_| format!("GET {path}: no answer within {}ms", timeout.as_millis()))?
}

async fn fetch(base: &str, path: &str) -> Result<Fetched, String> {
    let host = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("unsupported URL {base:?}: expected http://HOST:PORT"))?;
    let host = host.trim_end_matches('/');
    let started = std::time::Instant::now();
    let stream = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| format!("connect {host}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "healthd")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("GET {path}: body: {e}"))?
        .to_bytes();
    Ok(Fetched {
        status,
        body,
        elapsed: started.elapsed(),
    })
}
