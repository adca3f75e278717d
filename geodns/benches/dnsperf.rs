//! geodns against gdnsd (geoip plugin, auto_dc_coords), same sites, coordinates and location
//! database, measured with dnsperf in one run: geo answers with EDNS Client Subnet, first with
//! one server thread each, then with every core.
//!
//! Run: `cargo bench -p geodns --bench dnsperf` (needs gdnsd and dnsperf installed).
//! Machines are shared and noisy: compare the ratios, not the absolute figures.
//!
//! `cargo bench -p geodns --bench dnsperf -- rrl` measures what response rate limiting costs
//! clean traffic: geodns with the limiter off and on (checked, never limiting), alternately;
//! the `instructions` mode below also counts geodns without it.
//!
//! `cargo bench -p geodns --bench dnsperf -- canary` measures what a service's canary costs an
//! answer on the real-size database, and the share of answers it gets.
//!
//! `cargo bench -p geodns --bench dnsperf -- flood` (needs knot) sends one flood mix (one /24
//! flooding beside 50 resolvers) to geodns and to Knot DNS with `mod-rrl`, both limiting as
//! Knot does by default, then to geodns at its own defaults: legitimate answers delivered,
//! what the flooding prefix receives, and each server's CPU per query.
//!
//! `cargo bench -p geodns --bench dnsperf -- instructions` (needs valgrind) counts instead the
//! user-space instructions each server executes per answered query, under callgrind, with the
//! counters zeroed once the server is ready and dumped after a fixed number of queries: a
//! figure that does not move with the machine's load. It leaves out the kernel's UDP path,
//! which is the same for both servers and, on loopback, most of their CPU time.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use geodns::geo::synthetic_db;
use testkit::net::Loopback;
use testkit::process::{Daemon, TempDir, cpu_times, run, wait_for};

#[path = "../tests/common/mod.rs"]
mod common;

use common::{CITIES, CLIENTS, SLASH24S, SLASH48S, UNLIMITED, example_on, gdnsd, write_geo_db};

const SECONDS: u32 = 8;
/// ECS option for 198.51.100.0/24 (family 1, source 24, scope 0): Amsterdam.
const ECS: &str = "8:000118006333c8";

struct Figures {
    qps: f64,
    /// Server CPU time per answered query, in microseconds: the efficiency figure that still
    /// means something when dnsperf, on the same two cores, is what limits the rate.
    cpu_us: f64,
    /// The user-space part of `cpu_us`: the server's own code, without the kernel's UDP path
    /// (on loopback that path also carries dnsperf's receive work, and is most of the time).
    user_us: f64,
    mean_ms: f64,
    stddev_ms: f64,
    lost: String,
}

/// User + system CPU seconds a process has used.
fn dnsperf(server: SocketAddr, queries: &Path, pid: u32) -> Figures {
    let (user_before, sys_before) = cpu_times(pid);
    let mut cmd = Command::new(testkit::find_program("dnsperf").expect("dnsperf"));
    cmd.arg("-s")
        .arg(server.ip().to_string())
        .arg("-p")
        .arg(server.port().to_string())
        .arg("-d")
        .arg(queries)
        .arg("-l")
        .arg(SECONDS.to_string())
        .args(["-c", "4", "-q", "200", "-E", ECS]);
    let out = run(cmd, Duration::from_secs(u64::from(SECONDS) + 30)).expect("dnsperf runs");
    let (user_after, sys_after) = cpu_times(pid);
    let (user, cpu) = (
        user_after - user_before,
        user_after + sys_after - user_before - sys_before,
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |label: &str| -> Option<String> {
        text.lines()
            .find(|l| l.trim_start().starts_with(label))
            .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
    };
    let number = |s: Option<String>| {
        s.and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let qps = number(field("Queries per second"));
    Figures {
        qps,
        cpu_us: cpu / (qps * f64::from(SECONDS)).max(1.0) * 1e6,
        user_us: user / (qps * f64::from(SECONDS)).max(1.0) * 1e6,
        mean_ms: number(field("Average Latency (s)")) * 1000.0,
        stddev_ms: number(field("Latency StdDev (s)")) * 1000.0,
        lost: field("Queries lost").unwrap_or_default(),
    }
}

/// geodns with its rate limiter on the path but never limiting: every load here comes from
/// one source, far above any real resolver's rate.
fn start_geodns(dir: &Path, addr: SocketAddr, admin: SocketAddr, threads: usize) -> Daemon {
    start_geodns_under(dir, addr, admin, threads, UNLIMITED, &[])
}

/// [`start_geodns`] with `extra` appended to its deployment file, run by `wrapper` (a program
/// and its arguments) when not empty.
fn start_geodns_under(
    dir: &Path,
    addr: SocketAddr,
    admin: SocketAddr,
    threads: usize,
    extra: &str,
    wrapper: &[String],
) -> Daemon {
    spawn_geodns_text(dir, &(example_on(addr, admin) + extra), threads, wrapper)
}

/// geodns with the deployment `text`, `threads` UDP threads, run by `wrapper` when not empty.
fn spawn_geodns_text(dir: &Path, text: &str, threads: usize, wrapper: &[String]) -> Daemon {
    let config = dir.join(format!("geodns-{threads}.toml"));
    std::fs::write(&config, text).expect("write deployment");
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(env!("CARGO_BIN_EXE_geodns"));
            cmd
        }
        None => Command::new(env!("CARGO_BIN_EXE_geodns")),
    };
    cmd.arg("--config")
        .arg(&config)
        .arg("--threads")
        .arg(threads.to_string())
        .env("RUST_LOG", "warn");
    Daemon::spawn("geodns", cmd, &dir.join(format!("geodns-{threads}.log"))).expect("start geodns")
}

fn ready(server: SocketAddr) -> bool {
    let mut cmd = Command::new("dig");
    cmd.arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args([
            "+short",
            "+tries=1",
            "+time=1",
            "live.tv.example.net",
            "+subnet=198.51.100.0/24",
        ]);
    run(cmd, Duration::from_secs(5))
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("127.0.11."))
}

/// The distinct IPv6 /48s asking in the IPv6 load.
const V6_CLIENTS: usize = 100_000;
const SPREAD_RATE: u32 = 20_000;
const SPREAD_SECONDS: u64 = 10;
const SPREAD_REPETITIONS: usize = 3;
/// Queries kept in flight to find the rate at saturation: enough to keep a server busy over
/// loopback, few enough that the generator's own work does not dominate.
const SATURATION_OUTSTANDING: u32 = 64;
const SATURATION_SECONDS: u64 = 5;

/// What one server did under one load.
struct Spread {
    load: testkit::dnsload::Report,
    cpu_us: f64,
    user_us: f64,
    rss_mib: f64,
    /// Answers per second with [`SATURATION_OUTSTANDING`] queries always in flight.
    saturated: f64,
    /// From the server's start to its first answer (geodns compiles its atlas meanwhile).
    started_s: f64,
}

fn spread_run(pid: u32, load: &testkit::dnsload::Load) -> Spread {
    let (user_before, sys_before) = cpu_times(pid);
    let report = testkit::dnsload::run(load).expect("the load runs");
    let (user_after, sys_after) = cpu_times(pid);
    let answered = (report.answered as f64).max(1.0);
    Spread {
        cpu_us: (user_after + sys_after - user_before - sys_before) / answered * 1e6,
        user_us: (user_after - user_before) / answered * 1e6,
        rss_mib: testkit::process::memory_mib(pid, false),
        load: report,
        saturated: 0.0,
        started_s: 0.0,
    }
}

/// geodns and gdnsd on a real-size database (1,048,576 IPv4 /26 networks and 262,144 IPv6 /48s
/// in 300 cities): (a) 200,000 distinct client /24s in ECS, each in turn, (b) one hot /24, (c)
/// the clients of (a) in a Zipf-like mix, (d) 100,000 distinct IPv6 client /48s; each paced at 20,000 queries per second for 10 s (CPU per answered query,
/// losses, latency, memory), then saturated (the answer rate with queries always in flight),
/// from `testkit::dnsload`; one UDP thread each, then every core; repeated in alternating order.
fn spread() {
    use testkit::dnsload::{Load, Pace};
    let dir = TempDir::new("bench-dns-spread");
    let mut state = 0x5EED_2026_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let started = std::time::Instant::now();
    let generated = common::Generated::new(SLASH24S, SLASH48S, CITIES, 0x5EED_2026);
    let (networks, slash24s, slash48s) =
        (&generated.places, &generated.slash24s, &generated.slash48s);
    let db = dir.path().join("geo.mmdb");
    std::fs::write(&db, synthetic_db(networks).expect("database")).expect("write database");
    println!(
        "database: {} networks ({} IPv6) in {CITIES} cities, {:.1} MB, written in {:.1} s",
        networks.len(),
        slash48s.len(),
        std::fs::metadata(&db).map_or(0, |m| m.len()) as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let clients: Vec<ipnet::IpNet> = slash24s[..CLIENTS].to_vec();
    // Busy resolvers ask far more than quiet ones: the k-th most active client's share is
    // proportional to 1/k (Zipf, s = 1), drawn for as many queries as the run sends.
    let zipf = {
        let mut cumulative = Vec::with_capacity(clients.len());
        let mut total = 0.0;
        for k in 1..=clients.len() {
            total += 1.0 / k as f64;
            cumulative.push(total);
        }
        let draws = SPREAD_RATE as usize * SPREAD_SECONDS as usize;
        (0..draws)
            .map(|_| {
                let u = (next() >> 11) as f64 / (1u64 << 53) as f64 * total;
                clients[cumulative
                    .partition_point(|c| *c < u)
                    .min(clients.len() - 1)]
            })
            .collect::<Vec<_>>()
    };
    let loads = [
        ("(a) 200,000 client /24s, each in turn", clients),
        ("(b) one hot /24", vec![slash24s[0]]),
        (
            "(c) the same clients as (a), Zipf-like (the k-th busiest asks 1/k as often)",
            zipf,
        ),
        (
            "(d) 100,000 IPv6 client /48s, each in turn",
            slash48s[..V6_CLIENTS].to_vec(),
        ),
    ];
    let net = Loopback::fresh();
    let ours_addr = SocketAddr::from((net.host(1), 5353));
    let ours_admin = SocketAddr::from((net.host(1), 9153));
    let theirs_addr = SocketAddr::from((net.host(2), 5353));
    let line = |who: &str, s: &Spread| {
        println!(
            "  {who:<6} {:.2} cpu-us/query (user {:.2}), {:.0} answers/s, lost {:.2}%, latency p50 {:.3} ms p99 {:.3} ms, RSS {:.0} MiB; saturated {:.0} answers/s; answering {:.1} s after start",
            s.cpu_us,
            s.user_us,
            s.load.answer_rate(),
            s.load.loss() * 100.0,
            s.load
                .latency(0.5)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0),
            s.load
                .latency(0.99)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0),
            s.rss_mib,
            s.saturated,
            s.started_s,
        );
    };
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    for (threads, repetitions) in [(1, SPREAD_REPETITIONS), (cores, 2)] {
        for (label, subnets) in &loads {
            println!(
                "\n{label}, {SPREAD_RATE}/s for {SPREAD_SECONDS} s then saturated ({SATURATION_OUTSTANDING} outstanding) for {SATURATION_SECONDS} s, {threads} UDP thread(s) each:"
            );
            let paced = |addr| {
                let mut l = Load::new(
                    addr,
                    "live.tv.example.net.",
                    subnets.clone(),
                    Pace::Rate(SPREAD_RATE),
                    Duration::from_secs(SPREAD_SECONDS),
                );
                l.sockets = 2;
                l
            };
            let saturated = |addr| {
                let mut l = paced(addr);
                l.pace = Pace::Outstanding(SATURATION_OUTSTANDING);
                l.duration = Duration::from_secs(SATURATION_SECONDS);
                l
            };
            let measure = |pid: u32, addr: SocketAddr, started: std::time::Instant| {
                let started_s = started.elapsed().as_secs_f64();
                let mut s = spread_run(pid, &paced(addr));
                s.started_s = started_s;
                s.saturated = testkit::dnsload::run(&saturated(addr))
                    .expect("the load runs")
                    .answer_rate();
                s
            };
            let run_ours = || {
                let started = std::time::Instant::now();
                let ours = start_geodns(dir.path(), ours_addr, ours_admin, threads);
                let up = wait_for(Duration::from_secs(120), || {
                    ready_for(ours_addr, slash24s[0]).then_some(())
                });
                assert!(up.is_some(), "geodns did not start: {}", ours.log_text());
                let s = measure(ours.pid(), ours_addr, started);
                let atlas = atlas_figures(ours_admin);
                (s, atlas)
            };
            let run_theirs = || {
                let started = std::time::Instant::now();
                let theirs = gdnsd::start(dir.path(), &db, theirs_addr, threads);
                let up = wait_for(Duration::from_secs(120), || {
                    ready_for(theirs_addr, slash24s[0]).then_some(())
                });
                assert!(up.is_some(), "gdnsd did not start: {}", theirs.log_text());
                measure(theirs.pid(), theirs_addr, started)
            };
            // The order alternates: a machine that gets busier or quieter during a run favours
            // neither server.
            for repetition in 0..repetitions {
                let ((a, atlas), b) = if repetition % 2 == 0 {
                    let a = run_ours();
                    (a, run_theirs())
                } else {
                    let b = run_theirs();
                    (run_ours(), b)
                };
                line("geodns", &a);
                line("gdnsd", &b);
                println!(
                    "  geodns/gdnsd: CPU per query {:.2}x (user {:.2}x), saturated rate {:.2}x, RSS {:.2}x; geodns's atlas: {atlas}",
                    a.cpu_us / b.cpu_us.max(1e-9),
                    a.user_us / b.user_us.max(1e-9),
                    a.saturated / b.saturated.max(1e-9),
                    a.rss_mib / b.rss_mib.max(1e-9)
                );
            }
        }
    }
}

/// `cargo bench -p geodns --bench dnsperf -- canary`: what a canary costs an answer. geodns
/// on the real-size database without and with a canary (one node per site labelled, share
/// 5%), alternately, 200,000 client /24s in turn: CPU per answered query, the saturated answer
/// rate, and the share of answers the canary got.
fn canary_cost() {
    use testkit::dnsload::{Load, Pace};
    let dir = TempDir::new("bench-dns-canary");
    let generated = common::Generated::new(SLASH24S, SLASH48S, CITIES, 0x5EED_2026);
    std::fs::write(
        dir.path().join("geo.mmdb"),
        synthetic_db(&generated.places).expect("database"),
    )
    .expect("write database");
    let clients: Vec<ipnet::IpNet> = generated.slash24s[..CLIENTS].to_vec();
    let net = Loopback::fresh();
    let addr = SocketAddr::from((net.host(1), 5353));
    let admin = SocketAddr::from((net.host(1), 9153));
    let plain = example_on(addr, admin) + UNLIMITED;
    let mut canary = plain.clone();
    for node in ["ams-2", "fra-2", "lon-2"] {
        let line = format!("name = \"{node}\"\n");
        canary = canary.replacen(&line, &format!("{line}version = \"2.4.0\"\n"), 1);
    }
    let canary = canary.replacen(
        "check = \"stream\"\n",
        "check = \"stream\"\ncanary = { version = \"2.4.0\", share = 0.05 }\n",
        1,
    );
    println!(
        "real-size database, {CLIENTS} client /24s in turn, {SPREAD_RATE}/s for {SPREAD_SECONDS} s then saturated, 1 UDP thread:"
    );
    for repetition in 0..4 {
        for (label, text) in [("without", &plain), ("canary 5%", &canary)] {
            let geodns = spawn_geodns_text(dir.path(), text, 1, &[]);
            let up = wait_for(Duration::from_secs(120), || {
                ready_for(addr, clients[0]).then_some(())
            });
            assert!(up.is_some(), "geodns did not start: {}", geodns.log_text());
            let mut load = Load::new(
                addr,
                "live.tv.example.net.",
                clients.clone(),
                Pace::Rate(SPREAD_RATE),
                Duration::from_secs(SPREAD_SECONDS),
            );
            load.sockets = 2;
            let s = spread_run(geodns.pid(), &load);
            load.pace = Pace::Outstanding(SATURATION_OUTSTANDING);
            load.duration = Duration::from_secs(SATURATION_SECONDS);
            let saturated = testkit::dnsload::run(&load)
                .expect("the load runs")
                .answer_rate();
            let sum = |name: &str| {
                let (_, text) = testkit::http::get(admin, "/metrics").unwrap_or_default();
                text.lines()
                    .filter(|l| l.starts_with(name))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>()
            };
            let share = sum("geodns_canary_answers_total{service=\"live\"")
                / sum("geodns_answers_by_site_total{service=\"live\"").max(1.0);
            println!(
                "  {label:<10} {:.2} cpu-us/query, lost {:.2}%, saturated {:.0} answers/s, canary's share of answers {:.2}%{}",
                s.cpu_us,
                s.load.loss() * 100.0,
                saturated,
                share * 100.0,
                if repetition == 0 {
                    " (first round: warming)"
                } else {
                    ""
                }
            );
        }
    }
}

/// What geodns's metrics say its atlas took to compile and holds.
fn atlas_figures(admin: SocketAddr) -> String {
    let value = |name: &str| common::metric(admin, name).unwrap_or(f64::NAN);
    format!(
        "compiled in {:.2} s, {:.1} MB, {} runs, {} site orders",
        value("geodns_atlas_compile_seconds"),
        value("geodns_atlas_bytes") / 1e6,
        value("geodns_atlas_runs{family=\"ipv4\"}"),
        value("geodns_atlas_classes"),
    )
}

/// Whether `server` answers the service's A query for a client in `subnet`.
fn ready_for(server: SocketAddr, subnet: ipnet::IpNet) -> bool {
    let load = testkit::dnsload::Load::new(
        server,
        "live.tv.example.net.",
        vec![subnet],
        testkit::dnsload::Pace::Rate(20),
        Duration::from_millis(200),
    );
    testkit::dnsload::run(&load).is_ok_and(|r| r.rcodes.get(&0).is_some_and(|n| *n > 0))
}

fn main() {
    // `cargo bench -p geodns --bench dnsperf -- spread`: the real-size database and clients.
    if std::env::args().any(|a| a == "spread") {
        if testkit::find_program("gdnsd").is_none() {
            println!("geodns spread benchmark skipped: install gdnsd");
            return;
        }
        spread();
        return;
    }
    let missing: Vec<&str> = [
        ("gdnsd", "gdnsd"),
        ("dnsperf", "dnsperf"),
        ("dig", "bind9-dnsutils"),
    ]
    .iter()
    .filter(|(p, _)| testkit::find_program(p).is_none())
    .map(|(_, pkg)| *pkg)
    .collect();
    if !missing.is_empty() {
        println!("geodns benchmark skipped: install {}", missing.join(" "));
        return;
    }
    let dir = TempDir::new("bench-dns");
    write_geo_db(dir.path());
    let queries = dir.path().join("queries.txt");
    std::fs::write(&queries, "live.tv.example.net A\n").expect("query file");
    if std::env::args().any(|a| a == "instructions") {
        instructions(dir.path(), &queries);
        return;
    }
    if std::env::args().any(|a| a == "rrl") {
        rate_limiting_cost(dir.path(), &queries);
        return;
    }
    if std::env::args().any(|a| a == "canary") {
        canary_cost();
        return;
    }
    if std::env::args().any(|a| a == "flood") {
        if testkit::find_program("knotd").is_none() {
            println!("geodns flood benchmark skipped: install knot");
            return;
        }
        flood_mix(dir.path());
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "geodns vs gdnsd, dnsperf {SECONDS}s each, A with ECS 198.51.100.0/24, 4 clients, 200 outstanding\n"
    );
    for threads in [1, cores] {
        let net = Loopback::fresh();
        let ours_addr = SocketAddr::from((net.host(1), 5353));
        let theirs_addr = SocketAddr::from((net.host(2), 5353));
        let ours = start_geodns(
            dir.path(),
            ours_addr,
            SocketAddr::from((net.host(1), 9153)),
            threads,
        );
        assert!(
            wait_for(Duration::from_secs(10), || ready(ours_addr).then_some(())).is_some(),
            "geodns did not start: {}",
            ours.log_text()
        );
        let a = dnsperf(ours_addr, &queries, ours.pid());
        drop(ours);
        let theirs = gdnsd::start(
            dir.path(),
            &dir.path().join("geo.mmdb"),
            theirs_addr,
            threads,
        );
        assert!(
            wait_for(Duration::from_secs(10), || ready(theirs_addr).then_some(())).is_some(),
            "gdnsd did not start: {}",
            theirs.log_text()
        );
        let b = dnsperf(theirs_addr, &queries, theirs.pid());
        drop(theirs);
        println!(
            "{threads} server thread(s): geodns {:.0} qps, {:.2} cpu-us/query of which user {:.2} (mean {:.3} ms, sd {:.3} ms, lost {}) | gdnsd {:.0} qps, {:.2} cpu-us/query of which user {:.2} (mean {:.3} ms, sd {:.3} ms, lost {}) -> rate geodns/gdnsd = {:.2}x, CPU per query gdnsd/geodns = {:.2}x, user CPU per query gdnsd/geodns = {:.2}x",
            a.qps,
            a.cpu_us,
            a.user_us,
            a.mean_ms,
            a.stddev_ms,
            a.lost,
            b.qps,
            b.cpu_us,
            b.user_us,
            b.mean_ms,
            b.stddev_ms,
            b.lost,
            a.qps / b.qps,
            b.cpu_us / a.cpu_us,
            b.user_us / a.user_us.max(1e-9)
        );
    }
}

/// What response rate limiting costs clean traffic: geodns with the limiter off, then on (every
/// response checked against its source prefix's bucket, none limited), one UDP thread, dnsperf
/// at saturation, three times in alternating order.
fn rate_limiting_cost(dir: &Path, queries: &Path) {
    println!(
        "geodns, rate limiting off vs on (never limiting), dnsperf {SECONDS}s each, one UDP thread\n"
    );
    let net = Loopback::fresh();
    let addr = SocketAddr::from((net.host(1), 5353));
    let admin = SocketAddr::from((net.host(1), 9153));
    let run = |extra: &str| {
        let server = start_geodns_under(dir, addr, admin, 1, extra, &[]);
        assert!(
            wait_for(Duration::from_secs(10), || ready(addr).then_some(())).is_some(),
            "geodns did not start: {}",
            server.log_text()
        );
        dnsperf(addr, queries, server.pid())
    };
    let off = "\n[dns.rate_limit]\nenabled = false\n";
    for repetition in 0..3 {
        let (a, b) = if repetition % 2 == 0 {
            let a = run(off);
            (a, run(UNLIMITED))
        } else {
            let b = run(UNLIMITED);
            (run(off), b)
        };
        println!(
            "off {:.0} qps, {:.2} cpu-us/query (user {:.2}) | on {:.0} qps, {:.2} cpu-us/query (user {:.2}) -> rate on/off {:.3}x, CPU per query on/off {:.3}x (user {:.3}x)",
            a.qps,
            a.cpu_us,
            a.user_us,
            b.qps,
            b.cpu_us,
            b.user_us,
            b.qps / a.qps,
            b.cpu_us / a.cpu_us,
            b.user_us / a.user_us.max(1e-9)
        );
    }
}

/// The flood mix: one /24 asking this fast, beside this many resolvers (each its own /24) at
/// this rate, for this long.
const FLOOD_RATE: u32 = 20_000;
const FLOOD_RESOLVERS: u8 = 50;
const RESOLVER_RATE: u32 = 20;
const FLOOD_SECONDS: u64 = 10;

/// What one server did with the flood mix.
struct Mix {
    legit_sent: u64,
    legit_answered: u64,
    legit_p99_ms: f64,
    flood: common::flood::Flood,
    /// Server CPU per query received (flood and resolvers), microseconds.
    cpu_us: f64,
}

/// Sends the flood mix to `server` (process `pid`).
fn flood_mix_run(server: SocketAddr, pid: u32) -> Mix {
    use std::net::{IpAddr, Ipv4Addr};
    let (user, sys) = cpu_times(pid);
    let resolvers = common::flood::resolvers(
        server,
        "live.tv.example.net.",
        FLOOD_RESOLVERS,
        500,
        RESOLVER_RATE,
        FLOOD_SECONDS,
    );
    let flood = common::flood::flood(
        server,
        IpAddr::V4(Ipv4Addr::new(127, 77, 7, 1)),
        "live.tv.example.net.",
        None,
        FLOOD_RATE,
        FLOOD_SECONDS,
    );
    let mut latencies = Vec::new();
    let (mut legit_sent, mut legit_answered) = (0, 0);
    for resolver in resolvers {
        let report = resolver.join().expect("resolver thread");
        legit_sent += report.sent;
        legit_answered += report.answered;
        latencies.extend(report.latencies);
    }
    latencies.sort();
    let (user_after, sys_after) = cpu_times(pid);
    let queries = (flood.sent + legit_sent).max(1) as f64;
    Mix {
        legit_sent,
        legit_answered,
        legit_p99_ms: testkit::percentile(&latencies, 0.99)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0),
        flood,
        cpu_us: (user_after + sys_after - user - sys) / queries * 1e6,
    }
}

/// The flood mix against geodns and Knot DNS (`mod-rrl`), both at Knot's default limit (50
/// responses per second per /24, every limited response truncated; Knot 3.2 has no instant
/// limit, geodns's burst is the 125 of Knot's later default), and against geodns at its own
/// defaults. One UDP thread each.
fn flood_mix(dir: &Path) {
    println!(
        "flood mix: one /24 at {FLOOD_RATE} A queries/s beside {FLOOD_RESOLVERS} resolvers (each its own /24, {RESOLVER_RATE}/s with ECS) for {FLOOD_SECONDS}s; one UDP thread per server\n"
    );
    let knot_like = "\n[dns.rate_limit]\nrate = 50\nburst = 125\nslip = 1\n";
    let servers: [(&str, &str); 3] = [
        ("geodns (rate 50, burst 125, slip 1)", knot_like),
        ("knot mod-rrl (rate-limit 50, slip 1)", ""),
        ("geodns at its defaults (rate 2000, burst 4000, slip 2)", ""),
    ];
    for (name, extra) in servers {
        let net = Loopback::fresh();
        let addr = SocketAddr::from((net.host(1), 5353));
        let server = if name.starts_with("knot") {
            common::knot::start(dir, addr, 1, 50, 1)
        } else {
            start_geodns_under(
                dir,
                addr,
                SocketAddr::from((net.host(1), 9153)),
                1,
                extra,
                &[],
            )
        };
        assert!(
            wait_for(Duration::from_secs(10), || ready(addr).then_some(())).is_some(),
            "{name} did not start: {}",
            server.log_text()
        );
        let mix = flood_mix_run(addr, server.pid());
        let f = &mix.flood;
        let seconds = FLOOD_SECONDS as f64;
        println!(
            "{name}: legitimate answered {:.2}% ({} of {}, p99 {:.2} ms) | flooding /24 sent {:.0}/s, got {:.0} full/s + {:.0} truncated/s, bytes out/in {:.2} | CPU {:.2} us/query",
            100.0 * mix.legit_answered as f64 / mix.legit_sent.max(1) as f64,
            mix.legit_answered,
            mix.legit_sent,
            mix.legit_p99_ms,
            f.sent as f64 / seconds,
            f.full as f64 / seconds,
            f.truncated as f64 / seconds,
            f.bytes_in as f64 / f.bytes_out.max(1) as f64,
            mix.cpu_us,
        );
    }
}

/// Queries sent in the instruction count, and their rate: slow enough for a server running
/// under callgrind (tens of times slower than native) to answer every one.
const COUNTED: u32 = 20_000;
const COUNTED_RATE: u32 = 2_000;

/// Instructions per answered query of each server, one UDP thread each, under callgrind.
fn instructions(dir: &Path, queries: &Path) {
    let Some(valgrind) = testkit::find_program("valgrind") else {
        println!("instruction count skipped: install valgrind");
        return;
    };
    println!(
        "user-space instructions per answered query under callgrind ({COUNTED} queries at {COUNTED_RATE}/s, A with ECS 198.51.100.0/24, one UDP thread each)\n"
    );
    let net = Loopback::fresh();
    let wrapper = |name: &str| -> Vec<String> {
        vec![
            valgrind.display().to_string(),
            "--tool=callgrind".into(),
            format!(
                "--callgrind-out-file={}",
                dir.join(format!("callgrind.{name}.%p")).display()
            ),
        ]
    };
    let ours_addr = SocketAddr::from((net.host(1), 5353));
    let ours = start_geodns_under(
        dir,
        ours_addr,
        SocketAddr::from((net.host(1), 9153)),
        1,
        UNLIMITED,
        &wrapper("geodns"),
    );
    let a = counted(&ours, ours_addr, queries, dir, "geodns");
    drop(ours);
    // The same without the rate limiter: what checking every answer against its source's
    // bucket costs.
    let unlimited = start_geodns_under(
        dir,
        ours_addr,
        SocketAddr::from((net.host(1), 9153)),
        1,
        "\n[dns.rate_limit]\nenabled = false\n",
        &wrapper("geodns-unlimited"),
    );
    let off = counted(&unlimited, ours_addr, queries, dir, "geodns-unlimited");
    drop(unlimited);
    let theirs_addr = SocketAddr::from((net.host(2), 5353));
    let theirs = gdnsd::start_under(
        dir,
        &dir.join("geo.mmdb"),
        theirs_addr,
        1,
        &wrapper("gdnsd"),
    );
    let b = counted(&theirs, theirs_addr, queries, dir, "gdnsd");
    drop(theirs);
    println!(
        "geodns {:.0} instructions/query | gdnsd {:.0} instructions/query -> gdnsd/geodns = {:.2}x",
        a,
        b,
        b / a
    );
    println!(
        "geodns without rate limiting {off:.0} instructions/query: the limiter costs {:.0} ({:+.1}%)",
        a - off,
        (a - off) / off * 100.0
    );
}

/// Zeroes the server's callgrind counters, sends the counted queries, dumps the counters and
/// returns instructions per answered query.
fn counted(server: &Daemon, addr: SocketAddr, queries: &Path, dir: &Path, name: &str) -> f64 {
    assert!(
        wait_for(Duration::from_secs(60), || ready(addr).then_some(())).is_some(),
        "{name} did not start under callgrind: {}",
        server.log_text()
    );
    let control = |flag: &str| {
        let mut cmd = Command::new("callgrind_control");
        cmd.arg(flag).arg(server.pid().to_string());
        let out = run(cmd, Duration::from_secs(30)).expect("callgrind_control");
        assert!(
            out.status.success(),
            "callgrind_control {flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    control("--zero");
    let mut cmd = Command::new(testkit::find_program("dnsperf").expect("dnsperf"));
    cmd.arg("-s")
        .arg(addr.ip().to_string())
        .arg("-p")
        .arg(addr.port().to_string())
        .arg("-d")
        .arg(queries)
        .args(["-n", "1000000", "-t", "5", "-E", ECS])
        .args(["-Q", &COUNTED_RATE.to_string()])
        .args(["-l", &(COUNTED / COUNTED_RATE).to_string()]);
    let out = run(
        cmd,
        Duration::from_secs(u64::from(COUNTED / COUNTED_RATE) + 60),
    )
    .expect("dnsperf");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let completed: f64 = text
        .lines()
        .find(|l| l.trim_start().starts_with("Queries completed"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    // The dump's "Events: Ir" totals go to the output file named after the process.
    let before: Vec<std::path::PathBuf> = dump_files(dir, name, server.pid());
    control("--dump");
    let dumped = wait_for(Duration::from_secs(30), || {
        dump_files(dir, name, server.pid())
            .into_iter()
            .find(|f| !before.contains(f))
    })
    .expect("callgrind wrote no dump");
    let total = wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&dumped)
            .ok()?
            .lines()
            .find_map(|l| {
                l.strip_prefix("totals:")
                    .or_else(|| l.strip_prefix("summary:"))
            })
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
    })
    .expect("a total in the dump");
    assert!(completed > 0.0, "no query answered: {text}");
    total / completed
}

/// The callgrind output files in `dir` of the server `name` running as `pid` (one per dump).
fn dump_files(dir: &Path, name: &str, pid: u32) -> Vec<std::path::PathBuf> {
    let prefix = format!("callgrind.{name}.{pid}");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix))
                })
                .collect()
        })
        .unwrap_or_default()
}
