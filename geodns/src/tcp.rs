//! DNS over TCP (RFC 7766): two-byte length framing, queries answered in order on each
//! connection by [`query::handle_tcp`], the same general path UDP uses.
//!
//! Why not hickory-server's TCP server: its handler receives decoded messages, and the rules
//! that need the query's bytes (a FORMERR that carries OPT, Client Subnet's exact length, more
//! than one OPT) would then hold on UDP only. Owning the loop also puts the limits in one place:
//! at most [`MAX_CONNECTIONS`] connections at once (more wait in the listen queue), each closed
//! after [`IDLE`] without a query or when a read or write takes longer.

use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use daemon::Beat;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tracing::{debug, error, warn};

use crate::query;
use crate::state::Shared;

/// Connections served at once per listener (gdnsd's default per thread is 256).
pub const MAX_CONNECTIONS: usize = 256;
/// A connection with no new query for this long is closed (RFC 7766 section 6.2.3 suggests
/// seconds, not minutes, for a server under load).
pub const IDLE: Duration = Duration::from_secs(10);

/// Accepts connections on `listener` until the task is dropped; `beat` stays serving while
/// the accept loop runs.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener, beat: Beat) {
    let _serving = beat.serving_while();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: say so and back off instead of spinning.
                warn!("DNS TCP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            connection(&shared, stream, from).await;
            drop(slot);
        });
    }
}

/// Answers the queries of one connection in order until it closes, idles or misbehaves.
async fn connection(shared: &Shared, mut stream: TcpStream, from: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut query = Vec::new();
    let mut out = Vec::with_capacity(512);
    loop {
        let len = match timeout(IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return,
        };
        query.resize(len, 0);
        if !matches!(
            timeout(IDLE, stream.read_exact(&mut query)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        out.clear();
        let answered = catch_unwind(AssertUnwindSafe(|| {
            query::handle_tcp(shared, &query, from, &mut out)
        }));
        match answered {
            Ok(true) => {}
            Ok(false) => continue,
            Err(_) => {
                shared.metrics.worker_panics.inc();
                error!(%from, query = %crate::udp::hex(&query), "panic while answering a TCP query: closed that connection");
                return;
            }
        }
        let Ok(length) = u16::try_from(out.len()) else {
            debug!(%from, "TCP answer longer than 65535 bytes: closing");
            return;
        };
        let mut framed = Vec::with_capacity(2 + out.len());
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(&out);
        if !matches!(timeout(IDLE, stream.write_all(&framed)).await, Ok(Ok(()))) {
            return;
        }
    }
}
