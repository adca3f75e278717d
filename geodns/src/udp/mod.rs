//! DNS over UDP: one OS thread per core, each with its own `SO_REUSEPORT` socket (as gdnsd
//! does), datagrams moved in batches ([`batch`]) and answered by [`query::handle_udp`].
//!
//! A worker must never go quiet while the process looks alive: a panic while answering one
//! datagram drops that datagram only (counted, logged, the worker's memo rebuilt), a panic
//! anywhere else in the loop restarts the worker on the same socket, and the worker beats its
//! liveness at least every few hundred milliseconds, so `/healthz` turns 503 if it stops.

mod batch;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use daemon::{Beat, Liveness};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tracing::{debug, error, warn};

use crate::memo::Memo;
use crate::query;
use crate::state::Shared;
use batch::Batch;

/// How long a worker blocks for datagrams before looking at `stop` and beating.
const WAKE: Duration = Duration::from_millis(250);
/// Longest a worker may go without beating before `/healthz` reports it.
pub const LIVENESS_BOUND: Duration = Duration::from_secs(2);
/// How often a busy worker beats.
const BEAT: Duration = Duration::from_millis(100);

/// Receive buffer asked for each worker's socket (the kernel caps it at `net.core.rmem_max`):
/// the default 208 KiB holds a few hundred datagrams, tens of milliseconds at a busy rate, so
/// a worker descheduled that long (a loaded host, a flood being rate limited) would drop
/// everyone's queries in the kernel before the limiter could tell flood from resolver.
const RECV_BUFFER: usize = 4 << 20;

/// Binds one `SO_REUSEPORT` socket for a worker.
pub fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer still serves.
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.bind(&SockAddr::from(addr))?;
    socket.set_read_timeout(Some(WAKE))?;
    Ok(socket.into())
}

/// Runs a worker on each of `sockets` (bound to `addr`, or received from the geodns this one
/// replaces) until `stop` is set, each registered in `liveness`.
pub fn spawn_on(
    shared: Arc<Shared>,
    addr: SocketAddr,
    sockets: Vec<UdpSocket>,
    stop: Arc<AtomicBool>,
    liveness: &Liveness,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut handles = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        // A received socket keeps the options it was bound with; the wake-up is ours to set.
        socket.set_read_timeout(Some(WAKE))?;
        let shared = shared.clone();
        let stop = stop.clone();
        let beat = liveness.heartbeat(format!("dns udp worker {i} on {addr}"), LIVENESS_BOUND);
        handles.push(
            std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || supervise(&shared, &socket, &stop, &beat))?,
        );
    }
    Ok(handles)
}

/// Runs the worker loop, starting it again on the same socket if it panics outside the
/// handling of a datagram (which [`worker`] contains itself).
fn supervise(shared: &Shared, socket: &UdpSocket, stop: &AtomicBool, beat: &Beat) {
    loop {
        match catch_unwind(AssertUnwindSafe(|| worker(shared, socket, stop, beat))) {
            Ok(()) => return,
            Err(_) => {
                shared.metrics.worker_panics.inc();
                error!(worker = beat.name(), "DNS worker loop panicked: restarted");
            }
        }
    }
}

fn worker(shared: &Shared, socket: &UdpSocket, stop: &AtomicBool, beat: &Beat) {
    let mut batch = Batch::new();
    let mut memo = Memo::new(shared);
    let fd = socket.as_raw_fd();
    let mut next_beat = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let received = match batch.receive(fd) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                // Idle: a good moment to publish this worker's counts.
                memo.tally.flush();
                beat.beat();
                continue;
            }
            Err(e) => {
                warn!("UDP receive failed: {e}");
                continue;
            }
        };
        let started = Instant::now();
        for i in 0..received {
            let Some(from) = batch.source(i) else {
                continue;
            };
            let (query, out) = batch.query_and_out(i);
            contained(shared, &mut memo, query, from, out, |memo, out| {
                query::handle_udp(shared, memo, query, from, started, out)
            });
        }
        if let Err(e) = batch.send(fd, received) {
            debug!("UDP send failed: {e}");
        }
        let finished = Instant::now();
        let per_query = (finished - started).as_secs_f64() / received.max(1) as f64;
        for _ in 0..received {
            memo.tally.latency.observe(per_query);
        }
        memo.tally.flush_if_due(finished);
        if finished >= next_beat {
            beat.beat();
            next_beat = finished + BEAT;
        }
    }
}

/// Answers one datagram with `answer` into `out` (left empty when nothing is to be sent); a
/// panic drops that datagram only: counted, logged with its bytes, the memo rebuilt since what
/// it held mid-answer is not trusted.
fn contained(
    shared: &Shared,
    memo: &mut Memo,
    query: &[u8],
    from: SocketAddr,
    out: &mut Vec<u8>,
    answer: impl FnOnce(&mut Memo, &mut Vec<u8>) -> bool,
) {
    out.clear();
    match catch_unwind(AssertUnwindSafe(|| answer(memo, out))) {
        Ok(true) => {}
        Ok(false) => out.clear(),
        Err(_) => {
            out.clear();
            shared.metrics.worker_panics.inc();
            error!(%from, query = %hex(query), "panic while answering a datagram: dropped it, the worker goes on");
            *memo = Memo::new(shared);
        }
    }
}

/// The first bytes of a datagram in hex, for a log line.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(2 * bytes.len().min(512));
    for b in bytes.iter().take(512) {
        let _ = write!(text, "{b:02x}");
    }
    if bytes.len() > 512 {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_answering_drops_only_that_datagram() {
        let text = include_str!("../../../config/examples/three-sites.toml");
        let deployment =
            config::Deployment::parse(text, std::path::Path::new("three-sites.toml")).unwrap();
        let shared = crate::server::offline(deployment).unwrap();
        let mut memo = Memo::new(&shared);
        let from = SocketAddr::from(([192, 0, 2, 1], 5300));
        let mut out = vec![1, 2, 3];
        contained(&shared, &mut memo, b"boom", from, &mut out, |_, out| {
            out.push(9);
            panic!("a bug");
        });
        assert!(out.is_empty(), "nothing half-written goes out");
        assert_eq!(shared.metrics.worker_panics.get(), 1);
        // The next datagram is answered as usual, with the rebuilt memo.
        let query = [
            0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 4, b'l', b'i', b'v', b'e', 2, b't', b'v', 7, b'e',
            b'x', b'a', b'm', b'p', b'l', b'e', 3, b'n', b'e', b't', 0, 0, 1, 0, 1,
        ];
        contained(&shared, &mut memo, &query, from, &mut out, |memo, out| {
            query::handle_udp(&shared, memo, &query, from, Instant::now(), out)
        });
        assert_eq!(&out[..2], &[0, 7], "answered");
        assert_eq!(out[3] & 0x0F, 0, "NOERROR");
        assert_eq!(shared.metrics.worker_panics.get(), 1);
    }
}
