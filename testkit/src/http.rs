//! HTTP for tests (metrics, status documents, admin calls), through the tree's one client.

use std::net::SocketAddr;
use std::time::Duration;

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
