//! The load generator (`testkit::dnsload`) checked against dnsperf on the case dnsperf can
//! send, one client subnet, so that its figures can be trusted where dnsperf cannot go (a
//! subnet per query): at the same rate against the same geodns both must count the same
//! queries answered and none lost. Then its per-query ECS: each city's query gets that city's
//! answer. The figures are printed (`-- --nocapture`).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use common::{example_on, write_geo_db};
use hickory_proto::op::Message;
use hickory_proto::rr::RData;
use testkit::dnsload::{self, Load, Pace};
use testkit::net::Loopback;
use testkit::process::{Daemon, TempDir, run, wait_for};

const NAME: &str = "live.tv.example.net.";
const RATE: u32 = 2_000;
const SECONDS: u64 = 2;

fn start(dir: &TempDir, dns: SocketAddr, admin: SocketAddr) -> Daemon {
    write_geo_db(dir.path());
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, example_on(dns, admin)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_geodns"));
    cmd.arg("--config").arg(&config).env("RUST_LOG", "warn");
    Daemon::spawn("geodns", cmd, &dir.path().join("geodns.log")).expect("start geodns")
}

/// A `dnsperf` output field's first number.
fn field(text: &str, label: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.trim_start().starts_with(label))?
        .split(':')
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn addresses(answer: &[u8]) -> Vec<IpAddr> {
    let m = Message::from_vec(answer).expect("an answer that parses");
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_load_generator_counts_what_dnsperf_counts_and_sends_each_subnet() {
    let test = "the_load_generator_counts_what_dnsperf_counts_and_sends_each_subnet";
    if testkit::require(test, &[("dnsperf", "dnsperf")], false).is_none() {
        return;
    }
    let net = Loopback::fresh();
    let dir = TempDir::new("dnsload");
    let dns = SocketAddr::from((net.host(53), 5353));
    let server = start(&dir, dns, SocketAddr::from((net.host(53), 9153)));
    let amsterdam: ipnet::IpNet = "198.51.100.0/24".parse().unwrap();
    let probe = Load {
        keep_answers: true,
        ..Load::new(
            dns,
            NAME,
            vec![amsterdam],
            Pace::Rate(10),
            Duration::from_millis(300),
        )
    };
    let up = wait_for(Duration::from_secs(10), || {
        dnsload::run(&probe)
            .ok()
            .filter(|r| r.answered > 0)
            .map(|_| ())
    });
    assert!(
        up.is_some(),
        "geodns did not answer:\n{}",
        server.log_text()
    );

    // One subnet, the same rate, the same server: ours, then dnsperf's.
    let ours = dnsload::run(&Load::new(
        dns,
        NAME,
        vec![amsterdam],
        Pace::Rate(RATE),
        Duration::from_secs(SECONDS),
    ))
    .expect("the load runs");
    let queries = dir.path().join("queries.txt");
    std::fs::write(&queries, format!("{NAME} A\n")).unwrap();
    let mut cmd = Command::new(testkit::find_program("dnsperf").expect("dnsperf"));
    cmd.arg("-s")
        .arg(dns.ip().to_string())
        .arg("-p")
        .arg(dns.port().to_string())
        .arg("-d")
        .arg(&queries)
        .args([
            "-l",
            &SECONDS.to_string(),
            "-Q",
            &RATE.to_string(),
            "-c",
            "2",
        ])
        // ECS for 198.51.100.0/24 (family 1, source 24, scope 0).
        .args(["-E", "8:000118006333c8"]);
    let out = run(cmd, Duration::from_secs(SECONDS + 30)).expect("dnsperf runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let completed = field(&text, "Queries completed").expect("dnsperf's report");
    let lost = field(&text, "Queries lost").expect("dnsperf's report");
    let latency_ms = field(&text, "Average Latency (s)").unwrap_or(0.0) * 1000.0;
    println!("ours at {RATE}/s for {SECONDS} s: {ours}");
    println!(
        "dnsperf at {RATE}/s for {SECONDS} s: {completed} answered, {lost} lost, latency mean {latency_ms:.3} ms"
    );
    assert_eq!(ours.lost, 0, "{ours}");
    assert_eq!(ours.answered, ours.sent, "{ours}");
    assert_eq!(ours.rcodes.get(&0), Some(&ours.answered), "{ours}");
    assert_eq!(lost, 0.0, "{text}");
    let expected = f64::from(RATE) * SECONDS as f64;
    for (who, n) in [("ours", ours.answered as f64), ("dnsperf", completed)] {
        assert!(
            (n - expected).abs() <= expected * 0.05,
            "{who} answered {n}, expected about {expected}"
        );
    }

    // A subnet per query: each city gets its own site's nodes.
    let cities: Vec<ipnet::IpNet> = ["198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    let spread = dnsload::run(&Load {
        keep_answers: true,
        ..Load::new(
            dns,
            NAME,
            cities,
            Pace::Rate(300),
            Duration::from_millis(500),
        )
    })
    .expect("the load runs");
    assert_eq!(spread.lost, 0, "{spread}");
    let answers: Vec<Vec<IpAddr>> = spread
        .answers
        .iter()
        .map(|a| addresses(a.as_deref().expect("every city answered")))
        .collect();
    println!("answers by city (Amsterdam, Frankfurt, London): {answers:?}");
    let first = |a: &[IpAddr]| a.first().map(IpAddr::to_string).unwrap_or_default();
    assert!(first(&answers[0]).starts_with("127.0.11."), "{answers:?}");
    assert_ne!(answers[0], answers[1], "{answers:?}");
    assert_ne!(answers[1], answers[2], "{answers:?}");
}
