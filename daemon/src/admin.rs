//! The admin HTTP endpoint: `/metrics` and `/healthz`, plus routes a daemon adds (drain, ...).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use tracing::info;

/// Produces the metrics text at scrape time.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Why the admin endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for the admin endpoint on {addr}: {cause}")]
pub struct AdminError {
    pub addr: SocketAddr,
    pub cause: std::io::Error,
}

/// The standard routes; merge a daemon's own routes into it.
pub fn router(render: Render) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = render();
                async move {
                    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
}

/// Binds `addr` and serves `router` in a background task.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
) -> Result<tokio::task::JoinHandle<()>, AdminError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|cause| AdminError { addr, cause })?;
    info!(%addr, "admin endpoint listening (/metrics, /healthz)");
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    }))
}

/// Encodes a registry in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = Vec::new();
    // Encoding into a Vec cannot fail for the text format.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}
