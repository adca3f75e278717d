//! Reloads do not pause answers: geodns serving a real-size database (262,144 /26 networks)
//! to a steady stream of distinct clients is sent SIGHUP twice and has its database file
//! replaced; every query of the stream is answered with NOERROR, the replaced database's
//! answers follow, and each compile shows in the metrics with its time and memory.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::{Generated, UNLIMITED, example_on, metric, spawn_geodns};
use geodns::geo::synthetic_db;
use hickory_proto::op::Message;
use hickory_proto::rr::RData;
use testkit::dnsload::{self, Load, Pace};
use testkit::net::Loopback;
use testkit::process::{TempDir, wait_for};

const NAME: &str = "live.tv.example.net.";
/// Frankfurt, where the replaced database puts every network.
const FRANKFURT: (f64, f64) = (50.11, 8.68);

/// The site whose node answered `answer` (the example's node addresses), if any.
fn site(answer: &[u8]) -> Option<&'static str> {
    let reply = Message::from_vec(answer).ok()?;
    let first = reply.answers.iter().find_map(|r| match &r.data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        _ => None,
    })?;
    match first.to_string() {
        a if a.starts_with("127.0.11.") => Some("ams"),
        a if a.starts_with("127.0.21.") => Some("fra"),
        a if a.starts_with("127.0.31.") => Some("lon"),
        _ => None,
    }
}

/// The sites answering `clients`, one query each.
fn sites(server: SocketAddr, clients: &[ipnet::IpNet]) -> Vec<Option<&'static str>> {
    let mut load = Load::new(
        server,
        NAME,
        clients.to_vec(),
        Pace::Rate(2_000),
        Duration::from_millis(clients.len() as u64 / 2 + 1),
    );
    load.keep_answers = true;
    let report = dnsload::run(&load).expect("the load runs");
    report
        .answers
        .iter()
        .map(|a| a.as_deref().and_then(site))
        .collect()
}

#[test]
fn answers_go_on_through_configuration_and_database_reloads() {
    let generated = Generated::new(65_536, 16_384, 300, 0x4E10AD);
    let dir = TempDir::new("geodns-reload");
    let db = dir.path().join("geo.mmdb");
    std::fs::write(&db, synthetic_db(&generated.places).unwrap()).unwrap();
    let net = Loopback::fresh();
    let (dns, admin) = (
        SocketAddr::from((net.host(1), 5353)),
        SocketAddr::from((net.host(1), 9153)),
    );
    let geodns = spawn_geodns(dir.path(), "geodns", &(example_on(dns, admin) + UNLIMITED));
    let probe = &generated.slash24s[..50];
    let up = wait_for(Duration::from_secs(60), || {
        sites(dns, probe).iter().all(Option::is_some).then_some(())
    });
    assert!(up.is_some(), "geodns did not answer: {}", geodns.log_text());
    let before = sites(dns, probe);
    assert!(
        before.iter().any(|s| *s != Some("fra")),
        "the generated database sends some of these clients elsewhere than Frankfurt"
    );

    // The replacement is built beforehand: building it takes seconds in a debug build.
    let moved = synthetic_db(&generated.moved_to(FRANKFURT.0, FRANKFURT.1)).unwrap();
    // A steady stream of distinct clients, IPv4 and IPv6, while the configuration is reloaded
    // twice and the database is replaced (geodns notices within two seconds).
    let mut clients = generated.slash24s[..20_000].to_vec();
    clients.extend_from_slice(&generated.slash48s[..4_000]);
    let load = Load::new(
        dns,
        NAME,
        clients,
        Pace::Rate(2_000),
        Duration::from_secs(7),
    );
    let stream = std::thread::spawn(move || dnsload::run(&load).expect("the load runs"));
    std::thread::sleep(Duration::from_millis(800));
    geodns.signal("HUP");
    std::thread::sleep(Duration::from_millis(800));
    let staged = dir.path().join("geo.mmdb.new");
    std::fs::write(&staged, moved).unwrap();
    std::fs::rename(&staged, &db).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    geodns.signal("HUP");
    let report = stream.join().unwrap();
    let compiles = metric(admin, "geodns_atlas_compiles_total").unwrap_or(0.0);
    let events = || {
        geodns
            .log_text()
            .lines()
            .filter(|l| l.contains("compiled") || l.contains("reload") || l.contains("SIGHUP"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        compiles >= 4.0,
        "start, two reloads and a database change each compile, all while the stream ran: {compiles}\n{}",
        events()
    );
    eprintln!("through the reloads: {report}");
    assert_eq!(report.lost, 0, "{report}\n{}", geodns.log_text());
    assert_eq!(
        report.rcodes.keys().copied().collect::<Vec<_>>(),
        vec![0],
        "every answer NOERROR: {report}"
    );

    // The replaced database is in use: every client now goes to Frankfurt.
    let moved = wait_for(Duration::from_secs(10), || {
        sites(dns, probe)
            .iter()
            .all(|s| *s == Some("fra"))
            .then_some(())
    });
    assert!(
        moved.is_some(),
        "the replaced database is not in use: {}",
        geodns.log_text()
    );
    let seconds = metric(admin, "geodns_atlas_compile_seconds").unwrap_or(0.0);
    let bytes = metric(admin, "geodns_atlas_bytes").unwrap_or(0.0);
    eprintln!("last compile: {seconds:.3} s, {:.1} MB", bytes / 1e6);
    assert!(seconds > 0.0 && bytes > 0.0);
    assert!(
        geodns.log_text().contains("location atlas compiled"),
        "each compile is logged"
    );
}
