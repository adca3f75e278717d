//! The edge against nginx's cache, side by side in one run, in front of the same origin.
//!
//! Burst: N viewers ask for a segment the edge does not have yet, all at once (a match
//! starting), N = 100 and 1,000, several rounds each. The origin sends each 1.25 MB segment
//! (2 s at 5 Mbit/s) in 10 pieces over about 200 ms, as an origin across a network does; then
//! a slow origin (6.3 s a segment, past nginx's 5 s lock timeout, after which nginx passes
//! every waiter to the origin). For
//! our edge and for nginx (`proxy_cache` with `proxy_cache_lock on`): origin fetches per
//! segment, the viewers' time to first byte and to last byte (p50, p99), the proxy's CPU per
//! request and its memory. Steady state: segments and playlists served per second from the
//! cache over 16 kept-alive connections, and per CPU-second. Then a working set larger than
//! memory (96 segments, 120 MB): our edge holding it in memory, a second edge with 16 MiB of
//! memory and a disk tier, and nginx's cache (files), each asked for the segments in turn.
//!
//! Run: `cargo bench -p streamnode --bench edge` (needs nginx).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use testkit::net::Loopback;
use testkit::nginx::Nginx;
use testkit::percentile;
use testkit::process::{Daemon, TempDir, family_cpu_seconds, family_memory_mib, wait_for};

const MINIMAL: &str = include_str!("../../config/examples/minimal.toml");
const SEGMENT: usize = 188 * 6650;
const PIECES: usize = 10;
const GAP: Duration = Duration::from_millis(20);
/// Between the pieces of a segment whose path says `slow`: 6.3 s in all, past nginx's
/// `proxy_cache_lock_timeout` (5 s), as a congested or distant origin is.
const SLOW_GAP: Duration = Duration::from_millis(700);
const ROUNDS: usize = 5;
/// The disk-tier edge's memory, against a working set of `WORKING_SET` segments (120 MB).
const SMALL_MEMORY_MIB: u32 = 16;
const WORKING_SET: usize = 96;
const SLOW_ROUNDS: usize = 2;

/// The origin both proxies fetch from, counting requests per path.
struct Origin {
    addr: SocketAddr,
    requests: Arc<Mutex<HashMap<String, usize>>>,
}

impl Origin {
    fn start(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).expect("bind the origin");
        let requests = Arc::new(Mutex::new(HashMap::new()));
        let counted = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counted = counted.clone();
                std::thread::spawn(move || origin_connection(stream, &counted));
            }
        });
        Self { addr, requests }
    }

    fn fetches(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

/// Serves requests on one (kept-alive) connection.
fn origin_connection(stream: TcpStream, counted: &Mutex<HashMap<String, usize>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let piece: Vec<u8> = (0..SEGMENT / PIECES / 188)
        .flat_map(|_| {
            let mut p = vec![0xffu8; 188];
            p[0] = 0x47;
            p
        })
        .collect();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                break;
            }
        }
        let path = line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .split('?')
            .next()
            .unwrap_or("/")
            .to_owned();
        *counted.lock().unwrap().entry(path.clone()).or_default() += 1;
        if path.ends_with(".m3u8") {
            let body = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:2.0,\nseg1.ts\n";
            let _ = write!(
                writer,
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.apple.mpegurl\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            continue;
        }
        let _ = write!(
            writer,
            "HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nContent-Length: {}\r\n\r\n",
            piece.len() * PIECES
        );
        let gap = if path.contains("slow") { SLOW_GAP } else { GAP };
        for i in 0..PIECES {
            if writer.write_all(&piece).is_err() {
                return;
            }
            if i + 1 < PIECES {
                std::thread::sleep(gap);
            }
        }
    }
}

/// One viewer's GET: (time to first body byte, time to last, whole).
fn viewer(addr: SocketAddr, path: &str, start: Instant) -> Result<(Duration, Duration), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut buf = vec![0u8; 65536];
    let mut head = Vec::new();
    let mut body = 0usize;
    let mut first = None;
    loop {
        let n = stream
            .read(&mut buf)
            .map_err(|e| format!("read after {body} bytes: {e}"))?;
        if n == 0 {
            break;
        }
        if first.is_none() {
            head.extend_from_slice(&buf[..n]);
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                if !head.starts_with(b"HTTP/1.1 200") {
                    return Err(String::from_utf8_lossy(&head[..end]).into_owned());
                }
                let rest = head.len() - end - 4;
                if rest > 0 {
                    first = Some(start.elapsed());
                    body += rest;
                }
            }
        } else {
            body += n;
        }
        if first.is_none() && body > 0 {
            first = Some(start.elapsed());
        }
    }
    // Chunked framing adds a few bytes; short bodies are failures.
    if body < SEGMENT {
        return Err(format!("short body: {body} bytes"));
    }
    Ok((first.unwrap_or_default(), start.elapsed()))
}

struct Burst {
    fetches: Vec<usize>,
    first: Vec<Duration>,
    last: Vec<Duration>,
    failed: usize,
    /// The first failure, as the viewer saw it.
    why: Option<String>,
    cpu_per_request_us: f64,
}

/// `rounds` bursts of `n` viewers at `proxy` (pid `pid`), each for a segment of its own.
fn burst(
    proxy: SocketAddr,
    pid: u32,
    origin: &Origin,
    tag: &str,
    n: usize,
    rounds: usize,
) -> Burst {
    let mut result = Burst {
        fetches: Vec::new(),
        first: Vec::new(),
        last: Vec::new(),
        failed: 0,
        why: None,
        cpu_per_request_us: 0.0,
    };
    let cpu = family_cpu_seconds(pid);
    for round in 0..rounds {
        let path = format!("/test/{tag}-{n}-{round}.ts");
        let barrier = Arc::new(Barrier::new(n + 1));
        let start = Arc::new(Mutex::new(Instant::now()));
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (barrier, start, path) = (barrier.clone(), start.clone(), path.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let at = *start.lock().unwrap();
                    viewer(proxy, &path, at)
                })
            })
            .collect();
        *start.lock().unwrap() = Instant::now();
        barrier.wait();
        for h in handles {
            match h.join() {
                Ok(Ok((first, last))) => {
                    result.first.push(first);
                    result.last.push(last);
                }
                Ok(Err(why)) => {
                    result.failed += 1;
                    result.why.get_or_insert(why);
                }
                Err(_) => result.failed += 1,
            }
        }
        result.fetches.push(origin.fetches(&path));
        std::thread::sleep(Duration::from_millis(300));
    }
    result.cpu_per_request_us = (family_cpu_seconds(pid) - cpu) / (n * ROUNDS) as f64 * 1e6;
    result.first.sort();
    result.last.sort();
    result
}

/// Requests per second from the cache at `path` over 16 kept-alive connections for 5 s, and
/// requests per CPU-second of the proxy.
fn steady(proxy: SocketAddr, pid: u32, path: &str) -> (f64, f64) {
    let _ = testkit::http::Connection::new(proxy, false).get(path);
    steady_over(proxy, pid, &[path.to_owned()])
}

/// [`steady`] over `paths` (already cached): each connection walks them from its own place.
fn steady_over(proxy: SocketAddr, pid: u32, paths: &[String]) -> (f64, f64) {
    let paths = Arc::new(paths.to_vec());
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let cpu = family_cpu_seconds(pid);
    let start = Instant::now();
    let handles: Vec<_> = (0..16)
        .map(|connection| {
            let (stop, served, paths) = (stop.clone(), served.clone(), paths.clone());
            std::thread::spawn(move || {
                let mut c = testkit::http::Connection::new(proxy, true);
                let mut k = connection * 7;
                while !stop.load(Ordering::Relaxed) {
                    k += 1;
                    let path = &paths[k % paths.len()];
                    match c.get(path) {
                        Ok((200, _)) => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => c = testkit::http::Connection::new(proxy, true),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let seconds = start.elapsed().as_secs_f64();
    let n = served.load(Ordering::Relaxed) as f64;
    (n / seconds, n / (family_cpu_seconds(pid) - cpu).max(1e-9))
}

/// Our edge `name` on `addr`, fetching from `origin`, with `settings` in its `edge` table;
/// started and answering.
fn spawn_edge(
    dir: &TempDir,
    name: &str,
    addr: SocketAddr,
    origin: SocketAddr,
    settings: &str,
) -> Daemon {
    let text = MINIMAL.replacen(
        "[[services]]",
        &format!(
            "[[sites.nodes]]\nname = \"{name}\"\nipv4 = \"{}\"\nlisten = \"{addr}\"\ncapacity_mbps = 10000\nservices = [\"live\"]\nrole = \"edge\"\nmax_connections = 20000\nclient_limits = {{ enabled = false }}\nedge = {{ origins = [\"{origin}\"], {settings} }}\n\n[[services]]",
            addr.ip(),
        ),
        1,
    );
    let config = dir.path().join(format!("{name}.toml"));
    std::fs::write(&config, text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamnode"));
    cmd.arg("--config")
        .arg(&config)
        .args(["--node", name])
        .env("RUST_LOG", "warn");
    let daemon = Daemon::spawn(name, cmd, &dir.path().join(format!("{name}.log"))).unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || testkit::http::get(
            addr, "/status"
        )
        .map(|_| ()))
        .is_some(),
        "{}",
        daemon.log_text()
    );
    daemon
}

fn ms(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

fn main() {
    if testkit::require("edge benchmark", Nginx::PROGRAMS, false).is_none() {
        return;
    }
    // 1,000 viewers at once, on both proxies: file descriptors for them.
    // SAFETY: setrlimit with a valid struct; this process and the proxies it starts only.
    unsafe {
        let limit = libc::rlimit {
            rlim_cur: 65536,
            rlim_max: 65536,
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    let net = Loopback::fresh();
    let dir = TempDir::new("edge-bench");
    let origin = Origin::start(SocketAddr::from((net.host(3), 8080)));
    let edge = SocketAddr::from((net.host(2), 8080));
    let nginx_addr = SocketAddr::from((net.host(4), 8080));
    let ours = spawn_edge(&dir, "ams-e1", edge, origin.addr, "cache_mib = 1024");
    let nginx = Nginx::start_servers(
        &format!(
            "  proxy_cache_path {{dir}}/cache levels=1:2 keys_zone=edge:10m max_size=1g inactive=10m use_temp_path=off;\n\
               server {{ listen {nginx_addr};\n\
                 location / {{ proxy_pass http://{origin}; proxy_http_version 1.1; proxy_set_header Connection \"\";\n\
                   proxy_cache edge; proxy_cache_lock on; proxy_cache_lock_timeout 5s; proxy_cache_valid 200 60s; }}\n\
                 location ~ \\.m3u8$ {{ proxy_pass http://{origin}; proxy_http_version 1.1; proxy_set_header Connection \"\";\n\
                   proxy_cache edge; proxy_cache_lock on; proxy_cache_valid 200 1s; }}\n\
               }}\n",
            origin = origin.addr
        ),
        nginx_addr,
    );
    // A second edge with little memory and a disk tier, for a working set larger than memory.
    let small = SocketAddr::from((net.host(5), 8080));
    let tier = format!(
        "cache_mib = {SMALL_MEMORY_MIB}, disk = {{ path = \"{}\", mib = 1024 }}",
        dir.path().join("disk").display()
    );
    let with_disk = spawn_edge(&dir, "ams-e2", small, origin.addr, &tier);
    let proxies = [
        ("edge", edge, ours.pid()),
        ("nginx", nginx_addr, nginx.daemon.pid()),
    ];
    println!(
        "burst: N viewers at once for a segment not cached yet; the origin sends {:.2} MB in {PIECES} pieces over {} ms ({ROUNDS} rounds), or, slow, over {} ms ({SLOW_ROUNDS} rounds)",
        SEGMENT as f64 / 1e6,
        GAP.as_millis() * (PIECES as u128 - 1),
        SLOW_GAP.as_millis() * (PIECES as u128 - 1),
    );
    println!(
        "{:<6} {:>10} {:>16} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10} {:>9}",
        "proxy",
        "N",
        "origin fetches",
        "ttfb p50",
        "ttfb p99",
        "ttlb p50",
        "ttlb p99",
        "failed",
        "cpu us/req",
        "rss MiB"
    );
    let scenarios = [
        ("", 100, ROUNDS),
        ("", 1000, ROUNDS),
        ("slow", 100, SLOW_ROUNDS),
    ];
    for (kind, n, rounds) in scenarios {
        for (name, addr, pid) in proxies {
            let b = burst(addr, pid, &origin, &format!("{name}{kind}"), n, rounds);
            let fetches: Vec<String> = b.fetches.iter().map(|f| f.to_string()).collect();
            println!(
                "{:<6} {:>10} {:>16} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>8} {:>10.1} {:>9.1}",
                name,
                format!("{n} {kind}"),
                fetches.join(","),
                ms(percentile(&b.first, 0.5)),
                ms(percentile(&b.first, 0.99)),
                ms(percentile(&b.last, 0.5)),
                ms(percentile(&b.last, 0.99)),
                b.failed,
                b.cpu_per_request_us,
                family_memory_mib(pid),
            );
            if let Some(why) = b.why {
                println!("       first failure: {why}");
            }
        }
    }
    println!("steady state: from the cache, 16 kept-alive connections, 5 s");
    println!(
        "{:<6} {:>10} {:>14} {:>12} {:>14}",
        "proxy", "object", "requests/s", "per CPU-s", "vs nginx"
    );
    for (object, path) in [
        ("segment", "/test/steady.ts"),
        ("playlist", "/test/index.m3u8"),
    ] {
        let figures: Vec<(&str, f64, f64)> = proxies
            .iter()
            .map(|(name, addr, pid)| {
                let (rate, per_cpu) = steady(*addr, *pid, path);
                (*name, rate, per_cpu)
            })
            .collect();
        let nginx_per_cpu = figures[1].2;
        for (name, rate, per_cpu) in figures {
            println!(
                "{:<6} {:>10} {:>14.0} {:>12.0} {:>13.2}x",
                name,
                object,
                rate,
                per_cpu,
                per_cpu / nginx_per_cpu
            );
        }
    }
    println!(
        "working set larger than memory: {WORKING_SET} segments ({:.0} MB) cached, then asked in turn over 16 kept-alive connections, 5 s",
        (WORKING_SET * SEGMENT) as f64 / 1e6
    );
    println!(
        "{:<10} {:>14} {:>12} {:>14} {:>16} {:>12}",
        "proxy", "requests/s", "per CPU-s", "vs nginx", "origin fetches", "disk reads"
    );
    let paths: Vec<String> = (0..WORKING_SET)
        .map(|i| format!("/test/set{i}.ts"))
        .collect();
    let tiers = [
        ("edge mem", edge, ours.pid()),
        ("edge disk", small, with_disk.pid()),
        ("nginx", nginx_addr, nginx.daemon.pid()),
    ];
    let mut figures = Vec::new();
    for (name, addr, pid) in tiers {
        // Each segment once through the proxy, eight at a time: all cached (in memory, on
        // disk, or in nginx's cache files).
        std::thread::scope(|s| {
            for chunk in paths.chunks(WORKING_SET / 8) {
                s.spawn(move || {
                    for path in chunk {
                        let _ = testkit::http::Connection::new(addr, false).get(path);
                    }
                });
            }
        });
        let before: usize = paths.iter().map(|p| origin.fetches(p)).sum();
        let (rate, per_cpu) = steady_over(addr, pid, &paths);
        let fetched = paths.iter().map(|p| origin.fetches(p)).sum::<usize>() - before;
        let reads = testkit::http::get(addr, "/status")
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|v| v["edge"]["disk"]["reads"].as_u64());
        figures.push((name, rate, per_cpu, fetched, reads));
    }
    let nginx_per_cpu = figures[2].2;
    for (name, rate, per_cpu, fetched, reads) in figures {
        println!(
            "{:<10} {:>14.0} {:>12.0} {:>13.2}x {:>16} {:>12}",
            name,
            rate,
            per_cpu,
            per_cpu / nginx_per_cpu,
            fetched,
            reads.map_or("-".to_owned(), |r| r.to_string())
        );
    }
}
