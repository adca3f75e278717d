//! A flood of queries from one source, counting what comes back, for the rate limiting test
//! and benchmark.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use testkit::dnsload::{self, Load, Pace, Report};

/// `count` resolvers, the Nth asking from 127.78.N.1 (each its own /24) `rate` queries per
/// second for `name` for `seconds`, each query with the Client Subnet of one of `subnets`
/// client /24s of its own: the legitimate side of a flood mix. Their reports when joined.
pub fn resolvers(
    server: SocketAddr,
    name: &str,
    count: u8,
    subnets: usize,
    rate: u32,
    seconds: u64,
) -> Vec<std::thread::JoinHandle<Report>> {
    (0..count)
        .map(|n| {
            let load = Load {
                source: Some(IpAddr::V4(std::net::Ipv4Addr::new(127, 78, n, 1))),
                sockets: 1,
                ..Load::new(
                    server,
                    name,
                    dnsload::spread_v4(subnets, 24, u64::from(n) + 1),
                    Pace::Rate(rate),
                    Duration::from_secs(seconds),
                )
            };
            std::thread::spawn(move || dnsload::run(&load).expect("the load runs"))
        })
        .collect()
}

/// What the flooding source saw.
#[derive(Debug, Default)]
pub struct Flood {
    pub sent: u64,
    /// Bytes it sent.
    pub bytes_out: u64,
    /// Answers with records, and truncated ones.
    pub full: u64,
    pub truncated: u64,
    /// Bytes it received.
    pub bytes_in: u64,
}

/// Sends `rate` A queries for `name` (with a Client Subnet option for `subnet`, if any) per
/// second from `source` for `seconds`, counting every answer.
pub fn flood(
    server: SocketAddr,
    source: IpAddr,
    name: &str,
    subnet: Option<&str>,
    rate: u32,
    seconds: u64,
) -> Flood {
    let socket = UdpSocket::bind((source, 0)).unwrap();
    // Room for the answers that arrive between two reads: they are what is counted.
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(8 << 20);
    socket.connect(server).unwrap();
    socket.set_nonblocking(true).unwrap();
    let query = dnsload::query(
        &hickory_proto::rr::Name::from_ascii(name).unwrap(),
        hickory_proto::rr::RecordType::A,
        subnet.map(|s| s.parse().unwrap()),
    )
    .to_vec()
    .unwrap();
    let mut seen = Flood::default();
    let mut buf = [0u8; 2048];
    let mut drain = |seen: &mut Flood| {
        while let Ok(n) = socket.recv(&mut buf) {
            seen.bytes_in += n as u64;
            match Message::from_vec(&buf[..n]) {
                Ok(m) if m.metadata.truncation => seen.truncated += 1,
                Ok(_) => seen.full += 1,
                Err(_) => {}
            }
        }
    };
    let started = Instant::now();
    // Every 10 ms, the queries due by then.
    while started.elapsed() < Duration::from_secs(seconds) {
        let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        while seen.sent < due {
            if socket.send(&query).is_ok() {
                seen.sent += 1;
                seen.bytes_out += query.len() as u64;
            }
        }
        drain(&mut seen);
        std::thread::sleep(Duration::from_millis(10));
    }
    let end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < end {
        drain(&mut seen);
        std::thread::sleep(Duration::from_millis(10));
    }
    seen
}
