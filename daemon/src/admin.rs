//! The admin HTTP endpoint: `/metrics` and `/healthz` for everyone, and the routes a daemon
//! adds (drain, admin state, ...), which change state and so need credentials.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use tracing::{info, warn};

use crate::liveness::Liveness;

/// Produces the metrics text at scrape time.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Why the admin endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for the admin endpoint on {addr}: {cause}")]
pub struct AdminError {
    pub addr: SocketAddr,
    pub cause: std::io::Error,
}

/// The open routes: `/metrics` (the daemon's metrics and its contained panics, as
/// `DAEMON_panics_total`) and `/healthz` (200 while every part in `liveness` serves, else 503
/// naming those that do not). Merge the daemon's own routes, wrapped in [`protected`].
pub fn router(daemon: &'static str, render: Render, liveness: Liveness) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = render() + &crate::panics::metrics_text(daemon);
                async move {
                    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let problems = liveness.problems();
                async move {
                    if problems.is_empty() {
                        (StatusCode::OK, "ok\n".to_owned())
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not serving:\n{}\n", problems.join("\n")),
                        )
                    }
                }
            }),
        )
}

/// Requires `Authorization: Bearer TOKEN` on every route of `routes` when `token` is set: a
/// missing or wrong token is answered 401 before the handler runs (no state changes), and
/// logged. Without a token the routes are open: `check-config` allows that only on loopback.
pub fn protected(routes: Router, token: Option<String>) -> Router {
    let Some(token) = token else {
        return routes;
    };
    let token: Arc<[u8]> = Arc::from(token.into_bytes());
    routes.route_layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let token = token.clone();
            async move {
                let given = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::as_bytes);
                if given.is_some_and(|g| same(g, &token)) {
                    return next.run(request).await;
                }
                warn!(
                    method = %request.method(),
                    path = %request.uri().path(),
                    "admin request refused: {} token",
                    if given.is_some() { "wrong" } else { "no" }
                );
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    "admin token required: send Authorization: Bearer TOKEN (the admin_token of the deployment file)\n",
                )
                    .into_response()
            }
        },
    ))
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Binds `addr` and serves `router` in a background task.
pub async fn serve(addr: SocketAddr, router: Router) -> Result<Serving, AdminError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|cause| AdminError { addr, cause })?;
    Ok(serve_on(listener, router))
}

/// Serves `router` on `listener` (bound here, or received from the process this one replaces)
/// in a background task.
pub fn serve_on(listener: tokio::net::TcpListener, router: Router) -> Serving {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    info!(%addr, "admin endpoint listening (/metrics, /healthz)");
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stopped.notified().await });
        if let Err(e) = served.await {
            warn!(%addr, "admin endpoint stopped: {e}");
        }
    });
    Serving { task, stop }
}

/// A running admin endpoint; dropping the handle leaves it running.
pub struct Serving {
    task: tokio::task::JoinHandle<()>,
    stop: Arc<tokio::sync::Notify>,
}

impl Serving {
    /// Stops accepting (connections waiting on the listener stay for whoever reads it next:
    /// a replacement holding the same socket); requests in flight are answered and their
    /// connections closed, for at most `within`.
    pub async fn finish(mut self, within: std::time::Duration) {
        self.stop.notify_one();
        if tokio::time::timeout(within, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }

    /// Stops accepting (from any thread); requests in flight are answered. [`Serving::finish`]
    /// waits for them.
    pub fn stop_accepting(&self) -> impl Fn() + Send + Sync + 'static {
        let stop = self.stop.clone();
        move || stop.notify_one()
    }

    /// Stops at once, with every connection.
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// Encodes a registry in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = Vec::new();
    // Encoding into a Vec cannot fail for the text format.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn state_changing_routes_refuse_a_missing_or_wrong_token_before_acting() {
        let changes = Arc::new(AtomicU32::new(0));
        let counted = changes.clone();
        let own = Router::new().route(
            "/drain",
            axum::routing::post(move || async move {
                counted.fetch_add(1, Ordering::Relaxed);
                "draining\n"
            }),
        );
        let app = router("test", Arc::new(String::new), Liveness::default())
            .merge(protected(own, Some("s3cret".into())));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let call = |method, path: &'static str, token: Option<&'static str>| {
            let host = host.clone();
            async move {
                crate::http::request(
                    method,
                    &host,
                    path,
                    token,
                    std::time::Duration::from_secs(5),
                )
                .await
                .unwrap()
                .status
            }
        };
        use crate::http::Method;
        assert_eq!(call(Method::POST, "/drain", None).await, 401);
        assert_eq!(call(Method::POST, "/drain", Some("wrong")).await, 401);
        assert_eq!(changes.load(Ordering::Relaxed), 0, "no state change");
        assert_eq!(call(Method::POST, "/drain", Some("s3cret")).await, 200);
        assert_eq!(changes.load(Ordering::Relaxed), 1);
        // Reading stays open.
        assert_eq!(call(Method::GET, "/metrics", None).await, 200);
        assert_eq!(call(Method::GET, "/healthz", None).await, 200);
        assert_eq!(call(Method::GET, "/nothing", None).await, 404);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
    }
}
