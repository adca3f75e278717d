//! A DNS load generator that sends what resolvers send: every query carries an EDNS Client
//! Subnet of its own, taken in turn from a list of client networks. dnsperf puts one fixed ECS
//! option on every query, so it only ever measures one hot client; real traffic comes from
//! resolvers all over the address space.
//!
//! The queries are built before the run (only the ID changes when one is sent) and spread over
//! several sockets, each with a thread that matches answers to questions by ID and records the
//! latency, the rcode and, when asked, the answer. Two paces: open loop at a fixed rate (the
//! load does not slow down when the server does, as real clients do not), or closed loop with
//! at most N questions in flight (dnsperf's `-q`), which finds the rate at saturation.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use ipnet::IpNet;

/// How queries are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Open loop: this many queries per second, whatever the answers do.
    Rate(u32),
    /// Closed loop: a new query as soon as fewer than this many are in flight.
    Outstanding(u32),
}

/// A run: what to ask, of whom, how fast and for how long.
#[derive(Debug, Clone)]
pub struct Load {
    pub server: SocketAddr,
    pub name: String,
    pub record_type: RecordType,
    /// The client networks, one per query in turn (ECS source prefix = the network's length).
    /// Empty: no ECS at all.
    pub subnets: Vec<IpNet>,
    pub pace: Pace,
    pub duration: Duration,
    pub sockets: usize,
    /// A question unanswered this long is lost.
    pub timeout: Duration,
    /// Keep the first answer seen for each subnet (for agreement checks).
    pub keep_answers: bool,
    /// The address to send from (any of 127.0.0.0/8 on loopback): one resolver among many.
    /// `None`: the system's choice.
    pub source: Option<IpAddr>,
}

impl Load {
    /// A run of `duration` asking `server` for the A records of `name`, one socket per core
    /// (at least two), a one-second timeout.
    pub fn new(
        server: SocketAddr,
        name: &str,
        subnets: Vec<IpNet>,
        pace: Pace,
        duration: Duration,
    ) -> Self {
        Self {
            server,
            name: name.to_owned(),
            record_type: RecordType::A,
            subnets,
            pace,
            duration,
            sockets: std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            timeout: Duration::from_secs(1),
            keep_answers: false,
            source: None,
        }
    }
}

/// What a run saw.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub sent: u64,
    pub answered: u64,
    /// Unanswered within the timeout.
    pub lost: u64,
    /// Answers that came after their question was counted lost, or twice.
    pub late: u64,
    /// Sends the kernel refused (a full socket buffer).
    pub send_errors: u64,
    /// Answers by rcode.
    pub rcodes: BTreeMap<u8, u64>,
    /// Every answer's latency, sorted.
    pub latencies: Vec<Duration>,
    /// From the first query sent to the last.
    pub sending: Duration,
    /// The first answer to each subnet's query (index as in [`Load::subnets`]), when kept.
    pub answers: Vec<Option<Vec<u8>>>,
}

impl Report {
    /// Answers per second over the sending time.
    pub fn answer_rate(&self) -> f64 {
        self.answered as f64 / self.sending.as_secs_f64().max(1e-9)
    }

    /// The `p`th latency percentile (0 to 1), nearest rank.
    pub fn latency(&self, p: f64) -> Option<Duration> {
        crate::percentile(&self.latencies, p)
    }

    /// The share of sent queries lost, 0 to 1.
    pub fn loss(&self) -> f64 {
        self.lost as f64 / (self.sent.max(1)) as f64
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        write!(
            f,
            "{} sent, {} answered ({:.0}/s), {} lost ({:.2}%), {} late, {} send errors, latency p50 {:.3} ms p99 {:.3} ms, rcodes {:?}",
            self.sent,
            self.answered,
            self.answer_rate(),
            self.lost,
            self.loss() * 100.0,
            self.late,
            self.send_errors,
            ms(self.latency(0.5)),
            ms(self.latency(0.99)),
            self.rcodes
        )
    }
}

/// The questions one socket has in flight, by ID: when each was sent (nanoseconds since the
/// start, plus one; 0 for none) and which query it was.
struct InFlight {
    sent_at: Vec<AtomicU64>,
    query: Vec<AtomicU32>,
}

impl InFlight {
    fn new() -> Self {
        Self {
            sent_at: (0..=u16::MAX).map(|_| AtomicU64::new(0)).collect(),
            query: (0..=u16::MAX).map(|_| AtomicU32::new(0)).collect(),
        }
    }
}

/// What one socket's receiver counted.
#[derive(Default)]
struct Received {
    answered: u64,
    late: u64,
    rcodes: BTreeMap<u8, u64>,
    latencies: Vec<Duration>,
    answers: Vec<(usize, Vec<u8>)>,
}

/// A query for `record_type` records of `name`, ID 0, with EDNS and, when `subnet` is given,
/// an EDNS Client Subnet option for it (source prefix = its length), as a resolver sends for a
/// client there.
pub fn query(name: &Name, record_type: RecordType, subnet: Option<IpNet>) -> Message {
    let mut query = Message::new(0, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(name.clone(), record_type));
    let mut edns = Edns::new();
    if let Some(net) = subnet {
        edns.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(
                net.network(),
                net.prefix_len(),
                0,
            )));
    }
    query.set_edns(edns);
    query
}

/// One query per subnet (a single one without ECS when there are none), ID 0.
fn build_queries(load: &Load) -> io::Result<Vec<Vec<u8>>> {
    let name = Name::from_ascii(&load.name).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad name {:?}: {e}", load.name),
        )
    })?;
    let build = |subnet: Option<IpNet>| -> io::Result<Vec<u8>> {
        query(&name, load.record_type, subnet)
            .to_vec()
            .map_err(io::Error::other)
    };
    if load.subnets.is_empty() {
        return Ok(vec![build(None)?]);
    }
    load.subnets.iter().map(|n| build(Some(*n))).collect()
}

fn bind(server: SocketAddr, source: Option<IpAddr>) -> io::Result<UdpSocket> {
    let local: SocketAddr = match (source, server.ip()) {
        (Some(source), _) => (source, 0).into(),
        (None, IpAddr::V4(_)) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        (None, IpAddr::V6(_)) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(local),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Room for a burst of answers while the receiver thread waits for a core.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&local.into())?;
    let socket: UdpSocket = socket.into();
    socket.connect(server)?;
    socket.set_read_timeout(Some(Duration::from_millis(20)))?;
    Ok(socket)
}

/// Runs the load and reports what it saw.
pub fn run(load: &Load) -> io::Result<Report> {
    let queries = build_queries(load)?;
    let sockets: Vec<Arc<UdpSocket>> = (0..load.sockets.max(1))
        .map(|_| bind(load.server, load.source).map(Arc::new))
        .collect::<io::Result<_>>()?;
    let tables: Vec<Arc<InFlight>> = sockets.iter().map(|_| Arc::new(InFlight::new())).collect();
    let in_flight = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let receivers: Vec<_> = sockets
        .iter()
        .zip(&tables)
        .map(|(socket, table)| {
            let (socket, table, stop, in_flight) = (
                socket.clone(),
                table.clone(),
                stop.clone(),
                in_flight.clone(),
            );
            let keep = load.keep_answers;
            std::thread::spawn(move || receive(&socket, &table, &stop, &in_flight, start, keep))
        })
        .collect();

    let mut report = Report::default();
    let mut next_id = vec![0u16; sockets.len()];
    let mut buf = Vec::with_capacity(512);
    let mut i: u64 = 0;
    let mut last_sweep = Instant::now();
    loop {
        let elapsed = start.elapsed();
        if elapsed >= load.duration {
            break;
        }
        let due = match load.pace {
            Pace::Rate(rate) => (elapsed.as_secs_f64() * f64::from(rate)) as u64,
            Pace::Outstanding(n) => {
                i + u64::from(n).saturating_sub(in_flight.load(Ordering::Relaxed))
            }
        };
        if due <= i {
            // Closed loop: questions that will never be answered must not hold places.
            if matches!(load.pace, Pace::Outstanding(_)) && last_sweep.elapsed() >= load.timeout / 4
            {
                report.lost += sweep(&tables, &in_flight, start, load.timeout);
                last_sweep = Instant::now();
            }
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        while i < due {
            let s = (i % sockets.len() as u64) as usize;
            let id = next_id[s];
            next_id[s] = id.wrapping_add(1);
            let q = (i % queries.len() as u64) as usize;
            buf.clear();
            buf.extend_from_slice(&queries[q]);
            buf[..2].copy_from_slice(&id.to_be_bytes());
            let table = &tables[s];
            let now = start.elapsed().as_nanos() as u64 + 1;
            // A question still unanswered since the ID last came round is lost.
            if table.sent_at[usize::from(id)].swap(now, Ordering::AcqRel) != 0 {
                report.lost += 1;
                in_flight.fetch_sub(1, Ordering::Relaxed);
            }
            table.query[usize::from(id)].store(q as u32, Ordering::Release);
            in_flight.fetch_add(1, Ordering::Relaxed);
            match sockets[s].send(&buf) {
                Ok(_) => report.sent += 1,
                Err(_) => {
                    report.send_errors += 1;
                    table.sent_at[usize::from(id)].store(0, Ordering::Release);
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                }
            }
            i += 1;
        }
    }
    report.sending = start.elapsed();
    // Stragglers get the timeout to arrive; then whatever is still in flight is lost.
    let wait_until = Instant::now() + load.timeout;
    while in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < wait_until {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    report.lost += sweep(&tables, &in_flight, start, Duration::ZERO);
    if load.keep_answers {
        report.answers = vec![None; queries.len()];
    }
    for handle in receivers {
        let got = handle
            .join()
            .map_err(|_| io::Error::other("a receiver thread panicked"))?;
        report.answered += got.answered;
        report.late += got.late;
        for (rcode, n) in got.rcodes {
            *report.rcodes.entry(rcode).or_default() += n;
        }
        report.latencies.extend(got.latencies);
        for (q, answer) in got.answers {
            if let Some(slot) = report.answers.get_mut(q) {
                slot.get_or_insert(answer);
            }
        }
    }
    report.latencies.sort();
    Ok(report)
}

/// Counts as lost, and clears, every question older than `timeout`.
fn sweep(
    tables: &[Arc<InFlight>],
    in_flight: &AtomicU64,
    start: Instant,
    timeout: Duration,
) -> u64 {
    let now = start.elapsed().as_nanos() as u64 + 1;
    let limit = timeout.as_nanos() as u64;
    let mut lost = 0;
    for table in tables {
        for slot in &table.sent_at {
            let at = slot.load(Ordering::Acquire);
            if at != 0
                && now.saturating_sub(at) >= limit
                && slot
                    .compare_exchange(at, 0, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                lost += 1;
                in_flight.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
    lost
}

fn receive(
    socket: &UdpSocket,
    table: &InFlight,
    stop: &AtomicBool,
    in_flight: &AtomicU64,
    start: Instant,
    keep: bool,
) -> Received {
    let mut got = Received::default();
    let mut seen = std::collections::HashSet::new();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            // An ICMP error from an earlier send (nothing listening): the question is lost.
            Err(_) => continue,
        };
        if n < 12 {
            continue;
        }
        let now = start.elapsed().as_nanos() as u64 + 1;
        let id = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
        let sent = table.sent_at[id].swap(0, Ordering::AcqRel);
        if sent == 0 {
            got.late += 1;
            continue;
        }
        in_flight.fetch_sub(1, Ordering::Relaxed);
        got.answered += 1;
        got.latencies
            .push(Duration::from_nanos(now.saturating_sub(sent)));
        *got.rcodes.entry(buf[3] & 0x0f).or_default() += 1;
        if keep {
            let q = table.query[id].load(Ordering::Acquire) as usize;
            if seen.insert(q) {
                got.answers.push((q, buf[..n].to_vec()));
            }
        }
    }
    got
}

/// `count` distinct client networks of `prefix_len` bits spread over the IPv4 unicast space
/// (a fixed-seed shuffle, so runs and servers see the same clients).
pub fn spread_v4(count: usize, prefix_len: u8, seed: u64) -> Vec<IpNet> {
    let mut state = seed | 1;
    let mut seen = std::collections::HashSet::with_capacity(count);
    let mut nets = Vec::with_capacity(count);
    let prefix_len = prefix_len.min(32);
    let shift = 32 - u32::from(prefix_len);
    while nets.len() < count {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let addr = ((state >> 16) as u32) >> shift << shift;
        let ip = Ipv4Addr::from(addr);
        // Public unicast only, as resolvers' addresses are.
        if addr >> 24 == 0
            || ip.is_private()
            || ip.is_loopback()
            || ip.is_link_local()
            || ip.is_multicast()
            || addr >> 28 == 0xf
        {
            continue;
        }
        if seen.insert(addr) {
            nets.push(
                IpNet::new(IpAddr::V4(Ipv4Addr::from(addr)), prefix_len).expect("prefix ≤ 32"),
            );
        }
    }
    nets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_networks_are_distinct_public_and_repeatable() {
        let a = spread_v4(10_000, 24, 7);
        assert_eq!(a.len(), 10_000);
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(distinct.len(), a.len());
        assert!(
            a.iter()
                .all(|n| n.prefix_len() == 24 && n.network() == n.addr())
        );
        assert!(a.iter().all(|n| match n.addr() {
            IpAddr::V4(v4) => !v4.is_private() && !v4.is_loopback() && !v4.is_multicast(),
            IpAddr::V6(_) => false,
        }));
        assert_eq!(a, spread_v4(10_000, 24, 7));
    }

    #[test]
    fn queries_carry_each_subnet_and_no_id() {
        let subnets = spread_v4(3, 24, 1);
        let load = Load::new(
            "127.0.0.1:53".parse().unwrap(),
            "live.tv.example.net.",
            subnets.clone(),
            Pace::Rate(1),
            Duration::ZERO,
        );
        let queries = build_queries(&load).unwrap();
        assert_eq!(queries.len(), 3);
        for (bytes, net) in queries.iter().zip(&subnets) {
            let m = Message::from_vec(bytes).unwrap();
            assert_eq!(m.metadata.id, 0);
            let ecs = m.edns.as_ref().and_then(|e| {
                match e.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet) {
                    Some(EdnsOption::Subnet(cs)) => Some((cs.addr(), cs.source_prefix())),
                    _ => None,
                }
            });
            assert_eq!(ecs, Some((net.network(), 24)));
        }
    }

    /// A server on loopback that answers every query by echoing it with QR set, and drops
    /// every tenth: the generator must count exactly those as lost.
    #[test]
    fn answers_and_losses_are_counted_against_a_real_socket() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        server
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let echo = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut n_seen = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, from)) = server.recv_from(&mut buf) else {
                    continue;
                };
                n_seen += 1;
                if n_seen.is_multiple_of(10) {
                    continue;
                }
                buf[2] |= 0x80;
                let _ = server.send_to(&buf[..n], from);
            }
            n_seen
        });
        let mut load = Load::new(
            addr,
            "live.tv.example.net.",
            spread_v4(47, 24, 3),
            Pace::Rate(2_000),
            Duration::from_millis(500),
        );
        load.timeout = Duration::from_millis(200);
        load.keep_answers = true;
        let report = run(&load).unwrap();
        stop.store(true, Ordering::Relaxed);
        let received = echo.join().unwrap();
        assert_eq!(received, report.sent, "{report}");
        assert!(report.sent >= 900, "{report}");
        assert_eq!(report.answered + report.lost, report.sent, "{report}");
        assert_eq!(report.lost, report.sent / 10, "{report}");
        assert_eq!(report.rcodes.get(&0), Some(&report.answered));
        // 47 subnets, every tenth query dropped: each subnet still has answers.
        assert_eq!(report.answers.iter().filter(|a| a.is_some()).count(), 47);
    }
}
