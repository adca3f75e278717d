//! The one HTTP client of the tree (hyper): admin calls from the CLIs, the feed follower, the
//! lab and tests. Plain HTTP/1.1 to `host:port`, one connection per request, everything bounded
//! by a deadline so a peer that stops answering never holds the caller.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to {host}: {cause}")]
    Connect { host: String, cause: std::io::Error },
    #[error("{host} did not answer within {timeout:?}")]
    Timeout { host: String, timeout: Duration },
    #[error("HTTP error talking to {host}: {cause}")]
    Http { host: String, cause: hyper::Error },
    #[error("bad request {0}")]
    Request(String),
}

/// A whole response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Sends `method path` to `host` (`ADDR:PORT`) with `Authorization: Bearer TOKEN` when `token`
/// is set, and returns the response head with its body still to read: the caller bounds the
/// reading (the feed follower reads a stream for hours).
pub async fn open(
    method: Method,
    host: &str,
    path: &str,
    token: Option<&str>,
    accept: Option<&str>,
    timeout: Duration,
) -> Result<hyper::Response<Incoming>, HttpError> {
    let bounded = async {
        let stream = tokio::net::TcpStream::connect(host)
            .await
            .map_err(|cause| HttpError::Connect {
                host: host.to_owned(),
                cause,
            })?;
        let _ = stream.set_nodelay(true);
        let http = |cause| HttpError::Http {
            host: host.to_owned(),
            cause,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, host);
        if let Some(token) = token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(accept) = accept {
            request = request.header(hyper::header::ACCEPT, accept);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| HttpError::Request(format!("{path}: {e}")))?;
        sender.send_request(request).await.map_err(http)
    };
    tokio::time::timeout(timeout, bounded)
        .await
        .map_err(|_| HttpError::Timeout {
            host: host.to_owned(),
            timeout,
        })?
}

/// Sends a request and reads the whole response within `timeout`.
pub async fn request(
    method: Method,
    host: &str,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let whole = async {
        let response = open(method, host, path, token, None, timeout).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|cause| HttpError::Http {
                host: host.to_owned(),
                cause,
            })?
            .to_bytes();
        Ok(Response {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(timeout, whole)
        .await
        .map_err(|_| HttpError::Timeout {
            host: host.to_owned(),
            timeout,
        })?
}

/// [`request`] from synchronous code (CLIs, tests): on a runtime of its own.
pub fn blocking(
    method: Method,
    host: &str,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|cause| HttpError::Connect {
            host: host.to_owned(),
            cause,
        })?;
    runtime.block_on(request(method, host, path, token, timeout))
}

pub use hyper::Method;
