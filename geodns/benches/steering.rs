//! The content steering server's cost: geodns answering steering requests from players all
//! over the world (a real-size location database, 200,000 client networks, each request
//! another's, as a load balancer in front forwards them with `X-Forwarded-For`), and nginx
//! serving one manifest of the same size as a static file on the same connections: the floor
//! for any HTTP answer, which a steering answer (atlas lookup, site health, JSON) is measured
//! against.
//!
//! Each server gets the same closed loop: `CONNECTIONS` keep-alive connections, each sending
//! its next request as soon as the last is answered, for `SECONDS`; requests per second,
//! latency, and the server's CPU time per request (from /proc), in alternating rounds.
//!
//! Run: `cargo bench -p geodns --bench steering` (needs nginx-light for the comparison).
//! The load generator shares the machine's cores: compare the CPU per request, and the ratio.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use geodns::geo::synthetic_db;
use testkit::net::Loopback;
use testkit::process::{Daemon, TempDir, family_cpu_seconds, wait_for};

#[path = "../tests/common/mod.rs"]
mod common;

use common::{CITIES, CLIENTS, SLASH24S, UNLIMITED, example_on};

const CONNECTIONS: usize = 16;
const SECONDS: u64 = 8;
const ROUNDS: usize = 2;
const PATH: &str = "/steer/live";

/// What one server did in one round.
struct Round {
    requests: u64,
    failed: u64,
    latencies: Vec<Duration>,
    cpu_us: f64,
    took: Duration,
}

/// Runs the closed loop against `server` (process `pid`), each request naming the next client
/// of `clients` in `X-Forwarded-For`.
fn load(server: SocketAddr, pid: u32, clients: &Arc<Vec<String>>) -> Round {
    let stop = Arc::new(AtomicBool::new(false));
    // nginx answers from a worker process: the family's time counts.
    let cpu = family_cpu_seconds(pid);
    let started = Instant::now();
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|w| {
            let (stop, clients) = (stop.clone(), clients.clone());
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut failed = 0;
                let mut next = w * (clients.len() / CONNECTIONS);
                let connect = || -> Option<(BufReader<TcpStream>, TcpStream)> {
                    let stream = TcpStream::connect(server).ok()?;
                    let _ = stream.set_nodelay(true);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    Some((BufReader::new(stream.try_clone().ok()?), stream))
                };
                let Some((mut reader, mut writer)) = connect() else {
                    return (latencies, 1);
                };
                while !stop.load(Ordering::Relaxed) {
                    let client = &clients[next % clients.len()];
                    next += 1;
                    let request = format!(
                        "GET {PATH}?_HLS_pathway=ams&_HLS_throughput=5000000 HTTP/1.1\r\nHost: steer\r\nX-Forwarded-For: {client}\r\n\r\n"
                    );
                    let sent = Instant::now();
                    if writer.write_all(request.as_bytes()).is_err() {
                        failed += 1;
                        break;
                    }
                    let (status, close) = match read_response(&mut reader) {
                        Some(answer) => answer,
                        None => {
                            failed += 1;
                            break;
                        }
                    };
                    if status == 200 {
                        latencies.push(sent.elapsed());
                    } else {
                        failed += 1;
                    }
                    // nginx closes a connection after its 1,000th request, and says so.
                    if close {
                        match connect() {
                            Some((r, w)) => (reader, writer) = (r, w),
                            None => break,
                        }
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(SECONDS));
    stop.store(true, Ordering::Relaxed);
    let mut round = Round {
        requests: 0,
        failed: 0,
        latencies: Vec::new(),
        cpu_us: 0.0,
        took: Duration::ZERO,
    };
    for w in workers {
        let (latencies, failed) = w.join().expect("worker");
        round.requests += latencies.len() as u64;
        round.failed += failed;
        round.latencies.extend(latencies);
    }
    round.took = started.elapsed();
    round.cpu_us = (family_cpu_seconds(pid) - cpu) / (round.requests.max(1) as f64) * 1e6;
    round.latencies.sort();
    round
}

/// Reads one response: its status code, and whether the server closes the connection after it.
fn read_response(reader: &mut BufReader<TcpStream>) -> Option<(u16, bool)> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|n| *n > 0)?;
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut length = 0usize;
    let mut close = false;
    loop {
        line.clear();
        reader.read_line(&mut line).ok().filter(|n| *n > 0)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.trim().eq_ignore_ascii_case("close");
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some((status, close))
}

fn print(who: &str, r: &Round) {
    let percentile = |p: f64| {
        r.latencies
            .get(((r.latencies.len() as f64 * p) as usize).min(r.latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "  {who:<7} {:>8.0} requests/s, {:.1} cpu-us/request, latency p50 {:.3} ms p99 {:.3} ms, {} failed",
        r.requests as f64 / r.took.as_secs_f64(),
        r.cpu_us,
        percentile(0.5),
        percentile(0.99),
        r.failed
    );
}

fn start_geodns(dir: &Path, dns: SocketAddr, admin: SocketAddr, steer: SocketAddr) -> Daemon {
    let text = example_on(dns, admin).replace(
        &format!(
            "content_steering = {{ listen = [\"{}\"] }}",
            SocketAddr::new(dns.ip(), 8085)
        ),
        &format!(
            "content_steering = {{ listen = [\"{steer}\"], trusted_proxies = [\"127.0.0.0/8\"] }}"
        ),
    ) + UNLIMITED;
    assert!(
        text.contains("trusted_proxies"),
        "the example's steering listener moved"
    );
    let config = dir.join("geodns.toml");
    std::fs::write(&config, text).expect("write deployment");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_geodns"));
    cmd.arg("--config")
        .arg(&config)
        .arg("--threads")
        .arg("1")
        .env("RUST_LOG", "warn");
    Daemon::spawn("geodns", cmd, &dir.join("geodns.log")).expect("start geodns")
}

fn main() {
    let dir = TempDir::new("bench-steering");
    let generated = common::Generated::new(SLASH24S, 0, CITIES, 0x5EED_2026);
    std::fs::write(
        dir.path().join("geo.mmdb"),
        synthetic_db(&generated.places).expect("database"),
    )
    .expect("write database");
    // One address inside each client network.
    let clients: Arc<Vec<String>> = Arc::new(
        generated.slash24s[..CLIENTS]
            .iter()
            .map(|n| match n.network() {
                std::net::IpAddr::V4(a) => std::net::Ipv4Addr::from(a.to_bits() | 7).to_string(),
                other => other.to_string(),
            })
            .collect(),
    );
    let net = Loopback::fresh();
    let (dns, admin) = (
        SocketAddr::from((net.host(1), 5353)),
        SocketAddr::from((net.host(1), 9153)),
    );
    let steer = SocketAddr::from((net.host(1), 8085));
    let geodns = start_geodns(dir.path(), dns, admin, steer);
    let answer = wait_for(Duration::from_secs(120), || {
        let (200, body) = testkit::http::get(steer, PATH)? else {
            return None;
        };
        Some(body)
    })
    .unwrap_or_else(|| {
        panic!(
            "geodns's steering server did not answer:\n{}",
            geodns.log_text()
        )
    });
    println!(
        "database: {} networks in {CITIES} cities; {CLIENTS} client networks; {CONNECTIONS} keep-alive connections for {SECONDS} s per round; geodns with one UDP thread (steering runs on its runtime)",
        generated.places.len()
    );
    println!("a steering answer: {answer}");
    let nginx = testkit::find_program("nginx").map(|_| {
        let root = dir.path().join("static");
        std::fs::create_dir_all(root.join("steer")).expect("nginx root");
        std::fs::write(root.join("steer/live"), &answer).expect("static manifest");
        let addr = SocketAddr::from((net.host(2), 8080));
        (testkit::nginx::Nginx::start(&[(addr, root)]), addr)
    });
    if nginx.is_none() {
        println!("nginx not installed: the static floor is left out (apt-get install nginx-light)");
    }
    for round in 1..=ROUNDS {
        println!("\nround {round}:");
        let ours = load(steer, geodns.pid(), &clients);
        print("geodns", &ours);
        if let Some((nginx, addr)) = &nginx {
            let theirs = load(*addr, nginx.daemon.pid(), &clients);
            print("nginx", &theirs);
            println!(
                "  a steering answer costs {:.2}x the CPU of nginx's static file",
                ours.cpu_us / theirs.cpu_us.max(1e-9)
            );
        }
    }
}
