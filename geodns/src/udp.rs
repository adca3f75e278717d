//! DNS over UDP: one OS thread per core, each with its own `SO_REUSEPORT` socket (as gdnsd
//! does), answering the hot query shape without a general DNS parser.
//!
//! Why a hand-written path: measured with `cargo bench -p geodns --bench dnsperf`, answering
//! every query through hickory-server's generic path reached 0.41x gdnsd's rate on one thread.
//! Nearly all traffic is one shape — an A or AAAA question for a service hostname, with or
//! without EDNS and Client Subnet — so that shape is parsed by hand and its answer written
//! straight into the send buffer. Everything else (static zone data, errors, odd options) goes
//! through hickory-proto and the same [`respond`] the TCP server uses.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable, BinEncoder};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tracing::{debug, warn};

use crate::answer::{pick_weighted_into, sampled};
use crate::handler::{MAX_UDP_PAYLOAD, Question, respond};
use crate::health::changing_window;
use crate::memo::Memo;
use crate::state::Shared;
use crate::steering::{Family, SiteState, pick_site};

/// Binds one `SO_REUSEPORT` socket for a worker.
pub fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.bind(&SockAddr::from(addr))?;
    // Wake up now and then to notice shutdown.
    socket.set_read_timeout(Some(Duration::from_millis(250)))?;
    Ok(socket.into())
}

/// Runs workers on `addr` until `stop` is set.
pub fn spawn(
    shared: Arc<Shared>,
    addr: SocketAddr,
    threads: usize,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut handles = Vec::new();
    for i in 0..threads.max(1) {
        let socket = bind(addr)?;
        let shared = shared.clone();
        let stop = stop.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || worker(&shared, &socket, &stop))?,
        );
    }
    Ok(handles)
}

fn worker(shared: &Shared, socket: &UdpSocket, stop: &AtomicBool) {
    let mut batch = Batch::new();
    let mut memo = Memo::new(shared);
    let fd = socket.as_raw_fd();
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
            out.clear();
            if !handle(shared, &mut memo, query, from, started, out) {
                out.clear();
            }
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
    }
}

/// Datagrams moved with one `recvmmsg`/`sendmmsg` each way: with one system call per packet
/// the kernel's per-call cost dominated (profiled with `perf record` under dnsperf: syscall
/// entry, wakeups and UDP socket locking were most of the time, the answer itself ~2%).
struct Batch {
    queries: Vec<[u8; 4096]>,
    answers: Vec<Vec<u8>>,
    sources: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    /// Headers changed since they were last set up for receiving (by the kernel's last
    /// receive or by our send): only those are set up again, since under light load a call
    /// carries one datagram and resetting all of them was most of a query's instructions.
    touched: usize,
}

const BATCH: usize = 32;

impl Batch {
    fn new() -> Self {
        // SAFETY: all-zero is a valid value for these plain C structs.
        let zeroed = || unsafe { std::mem::zeroed::<libc::sockaddr_storage>() };
        Self {
            queries: vec![[0u8; 4096]; BATCH],
            answers: (0..BATCH).map(|_| Vec::with_capacity(1500)).collect(),
            sources: (0..BATCH).map(|_| zeroed()).collect(),
            iovecs: (0..BATCH)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            // SAFETY: as above.
            headers: (0..BATCH)
                .map(|_| unsafe { std::mem::zeroed::<libc::mmsghdr>() })
                .collect(),
            touched: BATCH,
        }
    }

    /// Blocks (up to the socket's read timeout) for at least one datagram; returns how many.
    fn receive(&mut self, fd: std::os::fd::RawFd) -> std::io::Result<usize> {
        for i in 0..self.touched {
            self.iovecs[i] = libc::iovec {
                iov_base: self.queries[i].as_mut_ptr().cast(),
                iov_len: self.queries[i].len(),
            };
            let h = &mut self.headers[i];
            h.msg_hdr.msg_name = (&raw mut self.sources[i]).cast();
            h.msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &raw mut self.iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_len = 0;
        }
        // SAFETY: every header points at buffers owned by `self` that outlive the call, with
        // their true lengths; the kernel writes at most those lengths.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            // Nothing was written: the headers stay as they were set up.
            self.touched = 0;
            return Err(std::io::Error::last_os_error());
        }
        self.touched = n as usize;
        Ok(n as usize)
    }

    fn source(&self, i: usize) -> Option<SocketAddr> {
        let storage = &self.sources[i];
        match i32::from(storage.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the kernel wrote a sockaddr_in, which fits.
                let a = unsafe {
                    &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
                };
                let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the kernel wrote a sockaddr_in6, which fits.
                let a = unsafe {
                    &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
                };
                let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::from((ip, u16::from_be(a.sin6_port))))
            }
            _ => None,
        }
    }

    fn query_and_out(&mut self, i: usize) -> (&[u8], &mut Vec<u8>) {
        let len = (self.headers[i].msg_len as usize).min(self.queries[i].len());
        (&self.queries[i][..len], &mut self.answers[i])
    }

    /// Sends the non-empty answers of the first `count` slots back to their sources.
    fn send(&mut self, fd: std::os::fd::RawFd, count: usize) -> std::io::Result<()> {
        let mut ready = 0;
        for i in 0..count {
            if self.answers[i].is_empty() {
                continue;
            }
            self.iovecs[ready] = libc::iovec {
                iov_base: self.answers[i].as_mut_ptr().cast(),
                iov_len: self.answers[i].len(),
            };
            let namelen = self.headers[i].msg_hdr.msg_namelen;
            self.sources.swap(ready, i);
            let h = &mut self.headers[ready];
            h.msg_hdr.msg_name = (&raw mut self.sources[ready]).cast();
            h.msg_hdr.msg_namelen = namelen;
            h.msg_hdr.msg_iov = &raw mut self.iovecs[ready];
            h.msg_hdr.msg_iovlen = 1;
            ready += 1;
        }
        self.touched = self.touched.max(ready);
        let mut sent = 0;
        while sent < ready {
            // SAFETY: headers `sent..ready` point at answer buffers and addresses owned by
            // `self`, alive for the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.headers[sent..].as_mut_ptr(),
                    (ready - sent) as libc::c_uint,
                    0,
                )
            };
            if n <= 0 {
                return Err(std::io::Error::last_os_error());
            }
            sent += n as usize;
        }
        Ok(())
    }
}

/// Writes the answer to `query` into `out`; false when nothing must be sent. `memo` is the
/// calling worker's (see `memo`), `now` when its batch of datagrams arrived.
pub fn handle(
    shared: &Shared,
    memo: &mut Memo,
    query: &[u8],
    from: SocketAddr,
    now: Instant,
    out: &mut Vec<u8>,
) -> bool {
    // Never answer what cannot be a query, nor to addresses that cannot be a client.
    if query.len() < 12 || query[2] & 0x80 != 0 || from.port() == 0 || from.ip().is_unspecified() {
        return false;
    }
    if let Some(hot) = HotQuery::parse(query) {
        if fast(shared, memo, &hot, query, from.ip(), now, out) {
            return true;
        }
        out.clear();
    }
    slow(shared, query, from.ip(), out)
}

/// The hot query shape, located in the datagram.
struct HotQuery {
    /// End of the question (name, type, class).
    question_end: usize,
    /// The question name, in wire form.
    name: std::ops::Range<usize>,
    qtype: u16,
    /// EDNS present.
    edns: bool,
    /// Client Subnet: family, source prefix, address bytes range.
    ecs: Option<(u16, u8, std::ops::Range<usize>)>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

impl HotQuery {
    /// Accepts only: standard query, one question of type A or AAAA and class IN, no answer
    /// or authority records, at most an OPT record (version 0) whose only option is a valid
    /// Client Subnet. Anything else returns `None` and takes the general path.
    fn parse(q: &[u8]) -> Option<Self> {
        let opcode = (q[2] >> 3) & 0x0F;
        if opcode != 0 || be16(q, 4)? != 1 || be16(q, 6)? != 0 || be16(q, 8)? != 0 {
            return None;
        }
        let additional = be16(q, 10)?;
        let mut at = 12;
        let name_start = at;
        loop {
            let len = usize::from(*q.get(at)?);
            if len == 0 {
                at += 1;
                break;
            }
            // Compression pointers cannot appear in a question of a first-hand query.
            if len > 63 || at - name_start > 255 {
                return None;
            }
            at += 1 + len;
        }
        let name = name_start..at;
        let qtype = be16(q, at)?;
        if !(qtype == 1 || qtype == 28) || be16(q, at + 2)? != 1 {
            return None;
        }
        let question_end = at + 4;
        let mut hot = Self {
            question_end,
            name,
            qtype,
            edns: false,
            ecs: None,
        };
        match additional {
            0 if question_end == q.len() => Some(hot),
            1 => {
                // OPT: root name, type 41, class = payload, TTL = ext-rcode/version/flags.
                let opt = question_end;
                if *q.get(opt)? != 0 || be16(q, opt + 1)? != 41 || *q.get(opt + 6)? != 0 {
                    return None;
                }
                let rdlen = usize::from(be16(q, opt + 9)?);
                let rdata = opt + 11;
                if rdata + rdlen != q.len() {
                    return None;
                }
                hot.edns = true;
                if rdlen == 0 {
                    return Some(hot);
                }
                // Exactly one option, Client Subnet, well formed (RFC 7871 section 6).
                let (code, len) = (be16(q, rdata)?, usize::from(be16(q, rdata + 2)?));
                if code != 8 || 4 + len != rdlen || len < 4 {
                    return None;
                }
                let family = be16(q, rdata + 4)?;
                let source = *q.get(rdata + 6)?;
                let scope = *q.get(rdata + 7)?;
                let max = match family {
                    1 => 32,
                    2 => 128,
                    _ => return None,
                };
                let bytes = usize::from(source).div_ceil(8);
                if scope != 0 || source > max || len - 4 != bytes {
                    return None;
                }
                let addr = rdata + 8..rdata + 8 + bytes;
                // No bits set past the source prefix.
                if source % 8 != 0 && q[addr.end - 1] & (0xFF >> (source % 8)) != 0 {
                    return None;
                }
                hot.ecs = Some((family, source, addr));
                Some(hot)
            }
            _ => None,
        }
    }

    fn client(&self, q: &[u8], source: IpAddr) -> IpAddr {
        match &self.ecs {
            Some((_, 0, _)) | None => source.to_canonical(),
            Some((family, _, range)) => {
                let mut b = [0u8; 16];
                b[..range.len()].copy_from_slice(&q[range.clone()]);
                if *family == 1 {
                    IpAddr::from([b[0], b[1], b[2], b[3]])
                } else {
                    IpAddr::from(b)
                }
            }
        }
    }
}

/// Answers a hot query for a service hostname whose chosen site has addresses; false hands
/// it to the general path (static names, empty answers).
fn fast(
    shared: &Shared,
    memo: &mut Memo,
    hot: &HotQuery,
    q: &[u8],
    source: IpAddr,
    now: Instant,
    out: &mut Vec<u8>,
) -> bool {
    memo.refresh(shared);
    let Memo { view, cache, tally } = memo;
    let prepared = &view.prepared;
    let raw = &q[hot.name.clone()];
    // Names nearly always arrive in lower case, as the keys are: look the name up as it came
    // and lower-case it (a byte loop that cost more than the lookup) only when that misses.
    let service = match prepared.service_wire.get(raw) {
        Some(&service) => service,
        None => {
            let mut name = [0u8; 256];
            let name = &mut name[..raw.len()];
            name.copy_from_slice(raw);
            // Lower-casing the length bytes too is harmless: lengths are at most 63 (< 'A').
            name.make_ascii_lowercase();
            match prepared.service_wire.get(&*name) {
                Some(&service) => service,
                None => return false,
            }
        }
    };
    let svc = &prepared.deployment.services[service];
    if svc.answer != config::service::AnswerMode::Nodes {
        return false;
    }
    let client = hot.client(q, source);
    let steered = cache.steer(prepared, view.geo.as_ref(), client);
    let health = &view.health;
    let v4 = hot.qtype == 1;
    let family = if v4 { Family::V4 } else { Family::V6 };
    let sites = view.choices.sites(service, family);
    let state = |i: usize| sites.get(i).map_or(SiteState::default(), |s| s.state);
    let Some((site, fail_open)) = pick_site(&steered.ranking.order, state) else {
        return false;
    };
    let changing_ttl = prepared
        .deployment
        .dns
        .as_ref()
        .map_or(5, |d| d.changing_ttl);
    // Most of the time no site changed lately and the walk down the ranking can be skipped.
    let ttl = match view.choices.last_change {
        Some(t) if now.saturating_duration_since(t) < changing_window(svc.ttl) => {
            let order = &steered.ranking.order;
            health.answer_ttl(order, site, svc.ttl, changing_ttl, now)
        }
        _ => svc.ttl,
    };
    let scope = match &hot.ecs {
        Some((_, source_prefix, _)) if *source_prefix != 0 => steered.scope(shared, prepared),
        _ => 0,
    };
    let nodes = &health.sites[site].nodes;
    pick_weighted_into(
        sites[site].candidates(fail_open).iter().copied(),
        usize::from(svc.answer_count),
        &mut cache.pool,
        &mut cache.picked,
    );
    if cache.picked.is_empty() {
        return false;
    }
    // The answer's length is known before its first byte: one resize, then plain stores.
    let rdlen = if v4 { 4 } else { 16 };
    let opt = match (&hot.edns, &hot.ecs) {
        (false, _) => 0,
        (true, None) => 11,
        (true, Some((_, _, addr))) => 11 + 8 + addr.len(),
    };
    out.resize(
        hot.question_end + cache.picked.len() * (12 + rdlen) + opt,
        0,
    );
    let mut w = Cursor { buf: out, at: 0 };
    // Header: same id, QR + AA, opcode 0, RD copied; RA 0; CD copied; NOERROR.
    w.put(&q[..2]);
    w.put(&[0x84 | (q[2] & 0x01), q[3] & 0x10, 0, 1]);
    w.put(&(cache.picked.len() as u16).to_be_bytes());
    w.put(&[0, 0, 0, u8::from(hot.edns)]);
    // The question as asked (case preserved).
    w.put(&q[12..hot.question_end]);
    for &i in &cache.picked {
        let node = &nodes[i];
        // Pointer to the question name, type, class IN.
        w.put(&[0xC0, 0x0C]);
        w.put(&hot.qtype.to_be_bytes());
        w.put(&[0, 1]);
        w.put(&ttl.to_be_bytes());
        match (node.ipv4, node.ipv6) {
            (Some(a), _) if v4 => {
                w.put(&[0, 4]);
                w.put(&a.octets());
            }
            (_, Some(a)) => {
                w.put(&[0, 16]);
                w.put(&a.octets());
            }
            _ => return false,
        }
    }
    if hot.edns {
        w.put(&[0, 0, 41]);
        w.put(&MAX_UDP_PAYLOAD.to_be_bytes());
        w.put(&[0, 0, 0, 0]);
        match &hot.ecs {
            None => w.put(&[0, 0]),
            Some((family, source_prefix, addr)) => {
                let len = 4 + addr.len() as u16;
                w.put(&(len + 4).to_be_bytes());
                w.put(&[0, 8]);
                w.put(&len.to_be_bytes());
                w.put(&family.to_be_bytes());
                w.put(&[*source_prefix, scope]);
                w.put(&q[addr.clone()]);
            }
        }
    }
    debug_assert_eq!(w.at, out.len(), "answer length worked out beforehand");
    let site_name = health.sites[site].name.as_str();
    if sampled(prepared) {
        let qname = String::from_utf8_lossy(raw);
        tracing::info!(target: "query", %client, name = %qname, qtype = if v4 { "A" } else { "AAAA" }, site = site_name, ttl, fail_open, "answered");
    }
    tally.answer((service, svc.name.as_str()), (site, site_name));
    if fail_open {
        shared.metrics.fail_open.inc();
    }
    tally.answered[usize::from(!v4)].inc();
    true
}

/// Writes fields one after another into a buffer already sized for them.
struct Cursor<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Cursor<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
}

/// Everything else: hickory-proto parses, [`respond`] answers, the encoder truncates to the
/// client's UDP payload size (setting TC).
fn slow(shared: &Shared, query: &[u8], source: IpAddr, out: &mut Vec<u8>) -> bool {
    let reply = match Message::from_vec(query) {
        Ok(request) => {
            if request.metadata.message_type != MessageType::Query {
                return false;
            }
            let question = (request.queries.len() == 1).then(|| {
                let q = &request.queries[0];
                Question {
                    name: q.name().clone(),
                    qtype: q.query_type(),
                    class: q.query_class(),
                }
            });
            let reply = respond(
                shared,
                &request.metadata,
                question,
                request.edns.as_ref(),
                source,
            );
            let mut message = Message::new(
                reply.metadata.id,
                MessageType::Response,
                reply.metadata.op_code,
            );
            message.metadata = reply.metadata;
            message.add_queries(request.queries.iter().cloned());
            message.add_answers(reply.answers);
            if let Some(soa) = reply.soa {
                message.add_authority(soa);
            }
            if let Some(edns) = reply.edns {
                message.set_edns(edns);
            }
            let limit = request
                .edns
                .as_ref()
                .map_or(512, |e| e.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            (message, limit)
        }
        Err(_) => {
            // Undecodable: FORMERR with the header only (RFC 1035 section 4.1.1).
            let Some(meta) = hickory_proto::op::Header::read(
                &mut hickory_proto::serialize::binary::BinDecoder::new(query),
            )
            .ok() else {
                return false;
            };
            let mut message = Message::error_msg(
                meta.metadata.id,
                meta.metadata.op_code,
                hickory_proto::op::ResponseCode::FormErr,
            );
            message.metadata.recursion_desired = meta.metadata.recursion_desired;
            shared
                .metrics
                .queries
                .with_label_values(&["-", "Form Error"])
                .inc();
            (message, 512)
        }
    };
    let (message, limit) = reply;
    let mut encoder = BinEncoder::new(out);
    encoder.set_max_size(limit);
    // Records that do not fit are left out and TC is set by the encoder.
    if message.emit(&mut encoder).is_err() {
        out.clear();
        let mut tc = message.truncate();
        tc.metadata.truncation = true;
        let mut encoder = BinEncoder::new(out);
        encoder.set_max_size(limit);
        return tc.emit(&mut encoder).is_ok();
    }
    true
}
