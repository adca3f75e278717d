//! The accept loop of HTTP servers the public reaches (a stream node's viewers, geodns's
//! steering server): a cap on connections served at once, TLS through rustls when
//! the node has certificates, HTTP/1.1 and HTTP/2 (ALPN over TLS, the connection preface in
//! clear text), and limits on slow clients.
//!
//! `axum::serve` has none of these knobs, so connections are served here with hyper-util's
//! protocol-detecting builder and the axum router as the service.
//!
//! - Past `max_connections`, new connections wait in the kernel's listen queue instead of each
//!   taking memory and a task: a permit is taken before `accept` and leaves with the connection.
//! - A client must finish its TLS handshake and its request headers within
//!   [`Limits::header_timeout`].
//! - A connection on which no byte moves either way for [`Limits::idle_timeout`] is closed: an
//!   idle keep-alive connection, or a viewer that stopped reading a segment.
//! - A client holding its limit of connections has the next one closed (reset) as soon as it
//!   is accepted, before any TLS; a client over its request rate is answered 429 (see
//!   [`crate::admission`]).
//! - Asked to [`Finish`] (its replacement serves on the same listener), a server stops
//!   accepting, answers each kept-alive connection's next request with `Connection: close`,
//!   then closes what is left gracefully, requests in flight completing, for at most
//!   [`FINISH_WITHIN`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;

/// How long a finishing server lets its responses in flight complete (a segment to a slow
/// viewer) before it closes what is left.
pub const FINISH_WITHIN: Duration = Duration::from_secs(10);

/// How long a finishing server waits for each kept-alive connection's next request (answered
/// with `Connection: close`): a player asks every target duration, 2 to 6 s.
pub const KEEP_ALIVE_GRACE: Duration = Duration::from_secs(6);

/// Asks a server to stop accepting and finish what it has in flight.
#[derive(Debug, Clone)]
pub struct Finish(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Finish {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::channel(false).0))
    }
}

impl Finish {
    pub fn now(&self) {
        self.0.send_replace(true);
    }

    async fn requested(&self) {
        let mut asked = self.0.subscribe();
        let _ = asked.wait_for(|finish| *finish).await;
    }
}

/// The viewer's address, as handlers see it through `ConnectInfo`.
#[derive(Debug, Clone, Copy)]
pub struct Client(pub SocketAddr);

/// Limits on what one connection may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: u32,
    /// TLS handshake and request headers must arrive within this.
    pub header_timeout: Duration,
    /// Closed when no byte moved either way for this long.
    pub idle_timeout: Duration,
}

impl Limits {
    /// A node's limits as its deployment entry sets them.
    pub fn of(node: &config::Node) -> Self {
        Self {
            max_connections: node.max_connections,
            header_timeout: node.header_timeout.get(),
            idle_timeout: node.idle_timeout.get(),
        }
    }
}

/// A node's certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read certificates: {reason}")]
    Certificates { path: String, reason: String },
    #[error("{path}: cannot read the private key: {reason}")]
    Key { path: String, reason: String },
    #[error("{cert} and {key}: {reason}")]
    Config {
        cert: String,
        key: String,
        reason: String,
    },
}

/// A TLS acceptor from PEM files, offering HTTP/2 and HTTP/1.1 by ALPN.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificates {
            path: cert.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Certificates {
            path: cert.display().to_string(),
            reason: "no PEM certificate in the file".into(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key_der))
        .map_err(|e| TlsError::Config {
            cert: cert.display().to_string(),
            key: key.display().to_string(),
            reason: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listener` until the task is dropped, every connection it serves ending with
/// it (a server stopped is stopped for its open connections too, as when its process dies), or
/// until asked to `finish`: then it returns once its connections are done, or after
/// [`FINISH_WITHIN`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    admission: Arc<crate::admission::Admission>,
    beat: crate::Beat,
    finish: Finish,
) {
    let _serving = beat.serving_while();
    let permits = Arc::new(Semaphore::new(limits.max_connections as usize));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let mut connections = tokio::task::JoinSet::new();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    loop {
        // Finished connections are reaped as new ones come, so the set stays as large as the
        // connections open.
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            biased;
            () = finish.requested() => break,
            accepted = async {
                let permit = permits.clone().acquire_owned().await.ok()?;
                Some((permit, listener.accept().await))
            } => accepted,
        };
        let Some((permit, accepted)) = accepted else {
            return;
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Some(admitted) = admission.connect(peer.ip()) else {
            // A reset frees the connection at once, with no FIN handshake or TIME-WAIT here.
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            tracing::debug!(%peer, "connection refused: the client holds its limit of connections");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, tls, builder) = (app.clone(), tls.clone(), builder.clone());
        let admission = admission.clone();
        let watcher = graceful.watcher();
        let closing = closing.clone();
        connections.spawn(async move {
            let _permit = permit;
            let limited = admitted.limited;
            let _admitted = admitted;
            let service = hyper::service::service_fn(move |mut request| {
                let over = limited && !admission.request(peer.ip(), crate::ratelimit::Tick::now());
                request.extensions_mut().insert(ConnectInfo(Client(peer)));
                let mut app = app.clone();
                let closing = closing.clone();
                async move {
                    let http1 = request.version() < axum::http::Version::HTTP_2;
                    let mut response = if over {
                        too_many_requests()
                    } else {
                        // The router is always ready: no poll_ready needed.
                        tower_service::Service::call(&mut app, request).await?
                    };
                    // Finishing: the client's next request goes to a new connection, hence to
                    // the replacement, after a complete answer here.
                    if http1 && closing.load(std::sync::atomic::Ordering::Relaxed) {
                        response.headers_mut().insert(
                            axum::http::header::CONNECTION,
                            axum::http::HeaderValue::from_static("close"),
                        );
                    }
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let stream = Idle::new(stream, limits.idle_timeout);
            let result = match tls {
                None => {
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(connection).await
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await;
                    match handshake {
                        Ok(Ok(tls)) => {
                            let connection = builder.serve_connection(TokioIo::new(tls), service);
                            watcher.watch(connection).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
    // Its replacement accepts from here on. Connections kept alive are not closed under their
    // clients (a request sent as the server closes is lost to a reset): each is answered once
    // more, with `Connection: close`, so its client moves on after a complete answer. Those
    // that stay idle past [`KEEP_ALIVE_GRACE`], and HTTP/2 connections (GOAWAY), are then
    // closed gracefully; requests in flight complete.
    drop(listener);
    closing.store(true, std::sync::atomic::Ordering::Relaxed);
    let finishing = Instant::now();
    tracing::info!(
        connections = graceful.count(),
        "finishing: no new connections, each open one answered once more with Connection: close"
    );
    while graceful.count() > 0 && finishing.elapsed() < KEEP_ALIVE_GRACE {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = FINISH_WITHIN.saturating_sub(finishing.elapsed());
    if tokio::time::timeout(left, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open {} s after finishing began: closed",
            FINISH_WITHIN.as_secs()
        );
    }
}

/// The answer to a request over its client's rate: cheap to send, and a player retries after
/// `Retry-After`.
fn too_many_requests() -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    // Players in pages of other origins must be able to read the refusal.
    (
        StatusCode::TOO_MANY_REQUESTS,
        [
            (header::RETRY_AFTER, "1"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        "too many requests from this client\n",
    )
        .into_response()
}

/// A stream that fails with `TimedOut` once no byte has moved either way for `timeout`.
///
/// Progress only records the time; the timer is re-armed when the stream would block, so the
/// hot path (reads and writes that succeed) costs a clock read, not a timer update.
struct Idle<S> {
    inner: S,
    timeout: Duration,
    last_progress: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<S> Idle<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            timeout,
            last_progress: now,
            timer: Box::pin(tokio::time::sleep_until(now + timeout)),
        }
    }

    /// Called when the inner stream is not ready: fails once the idle time is up, else makes
    /// sure the timer wakes the task when it will be.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let deadline = self.last_progress + self.timeout;
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "no data moved within the idle timeout",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.last_progress = Instant::now();
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(result) => {
                this.last_progress = Instant::now();
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                this.last_progress = Instant::now();
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out_and_a_busy_one_does_not() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut idle = Idle::new(a, Duration::from_secs(30));
        // Bytes keep arriving every 20 s: never idle for 30 s.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            b.write_all(b"x").await.unwrap();
            let mut byte = [0u8; 1];
            idle.read_exact(&mut byte).await.unwrap();
        }
        // Then silence: the read fails after the idle timeout.
        let started = Instant::now();
        let mut byte = [0u8; 1];
        let err = idle.read_exact(&mut byte).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_secs(30));
        drop(b);
    }
}
