//! Agreement with gdnsd: both configured from the same sites, coordinates and location
//! database, asked for random client subnets, must choose the same site, and answer with the
//! same ECS scope (gdnsd's widening), for at least 99%: on a small database of scattered /24s,
//! and on a large generated one (262,144 /26 networks in 300 cities, where neighbours often
//! rank alike and scopes widen past the database's networks).
//! Disagreements are printed with both answers so they can be explained.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::{EXAMPLE, Generated, gdnsd};
use geodns::geo::{Place, synthetic_db};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use testkit::net::Loopback;
use testkit::process::{Daemon, TempDir, wait_for};

const NETWORKS: u32 = 300;
const QUERIES: usize = 1000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn float(&mut self, low: f64, high: f64) -> f64 {
        low + (self.next() % 1_000_000) as f64 / 1_000_000.0 * (high - low)
    }
}

/// The A records for live.tv.example.net asked with ECS `subnet`/24, and the answer's scope.
fn ask(
    socket: &UdpSocket,
    server: SocketAddr,
    subnet: Ipv4Addr,
    id: u16,
) -> (BTreeSet<IpAddr>, Option<u8>) {
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(
        Name::from_ascii("live.tv.example.net.").unwrap(),
        RecordType::A,
    ));
    let mut edns = Edns::new();
    edns.options_mut()
        .insert(EdnsOption::Subnet(ClientSubnet::new(
            IpAddr::V4(subnet),
            24,
            0,
        )));
    query.set_edns(edns);
    socket.send_to(&query.to_vec().unwrap(), server).unwrap();
    let mut buf = [0u8; 4096];
    for _ in 0..3 {
        let Ok((n, _)) = socket.recv_from(&mut buf) else {
            break;
        };
        let Ok(reply) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if reply.metadata.id != id {
            continue;
        }
        let scope = reply.edns.as_ref().and_then(|e| {
            match e.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet) {
                Some(EdnsOption::Subnet(cs)) => Some(cs.scope_prefix()),
                _ => None,
            }
        });
        let addresses = reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect();
        return (addresses, scope);
    }
    (BTreeSet::new(), None)
}

fn site_of(addresses: &BTreeSet<IpAddr>) -> &'static str {
    match addresses.iter().next().map(|a| a.to_string()) {
        Some(a) if a.starts_with("127.0.11.") => "ams",
        Some(a) if a.starts_with("127.0.21.") => "fra",
        Some(a) if a.starts_with("127.0.31.") => "lon",
        _ => "none",
    }
}

#[test]
fn geodns_and_gdnsd_choose_the_same_site_for_random_clients() {
    let Some(_) = testkit::require(
        "geodns_and_gdnsd_choose_the_same_site_for_random_clients",
        &[("gdnsd", "gdnsd")],
        false,
    ) else {
        return;
    };
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let countries = ["DE", "FR", "US", "BR", "JP", "NL", "GB", "PL", "ES", "IT"];
    // Random /24s in 100.64.0.0/10 placed anywhere between 50°S and 70°N.
    let mut networks: Vec<Place<'static>> = Vec::new();
    let mut used = BTreeSet::new();
    while networks.len() < NETWORKS as usize {
        let n = 0x6440_0000u32 + ((rng.next() as u32 % (1 << 14)) << 8);
        if !used.insert(n) {
            continue;
        }
        networks.push(Place {
            network: format!("{}/24", Ipv4Addr::from(n)).parse().unwrap(),
            country: countries[(rng.next() % countries.len() as u64) as usize],
            continent: "EU",
            latitude: rng.float(-50.0, 70.0),
            longitude: rng.float(-130.0, 150.0),
        });
    }
    // Most clients inside a database network, some outside (default order on both).
    let clients = (0..QUERIES)
        .map(|i| {
            if i % 10 == 0 {
                Ipv4Addr::from(0x6440_0000u32 + ((rng.next() as u32 % (1 << 14)) << 8))
            } else {
                first_v4(&networks[(rng.next() % u64::from(NETWORKS)) as usize])
            }
        })
        .collect();
    agree_with_gdnsd("agreement", &networks, clients);
}

#[test]
fn geodns_and_gdnsd_agree_on_a_large_generated_database() {
    let Some(_) = testkit::require(
        "geodns_and_gdnsd_agree_on_a_large_generated_database",
        &[("gdnsd", "gdnsd")],
        false,
    ) else {
        return;
    };
    let mut rng = Rng(0x5EED_1234_ABCD_0002);
    let generated = Generated::new(LARGE_SLASH24S, 0, 300, 0x26);
    let slash24s = &generated.slash24s;
    // Client /24s from the database and, one in ten, from anywhere in the public space.
    let anywhere = testkit::dnsload::spread_v4(QUERIES, 24, 0xA11);
    let clients = (0..QUERIES)
        .map(|i| {
            if i % 10 == 0 {
                first_v4_of(&anywhere[i])
            } else {
                first_v4_of(&slash24s[(rng.next() % slash24s.len() as u64) as usize])
            }
        })
        .collect();
    agree_with_gdnsd("agreement-large", &generated.places, clients);
}

/// /24s of the large generated database.
const LARGE_SLASH24S: usize = 65_536;

fn first_v4(place: &Place<'_>) -> Ipv4Addr {
    first_v4_of(&place.network)
}

fn first_v4_of(net: &ipnet::IpNet) -> Ipv4Addr {
    match net.network() {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!("IPv4 networks only"),
    }
}

/// Serves `networks` from geodns and gdnsd, asks both for each of `clients` (as ECS /24s) and
/// asserts that at least 99% choose the same site and answer with the same scope.
fn agree_with_gdnsd(name: &str, networks: &[Place<'static>], clients: Vec<Ipv4Addr>) {
    let dir = TempDir::new(name);
    let db = dir.path().join("geo.mmdb");
    std::fs::write(&db, synthetic_db(networks).unwrap()).unwrap();
    let net = Loopback::fresh();
    let ours = SocketAddr::from((net.host(1), 5353));
    let theirs = SocketAddr::from((net.host(2), 5353));
    // The example without its steering override (the comparison is about distances).
    let overrides = EXAMPLE.find("# Viewers in Ireland").unwrap();
    let text = EXAMPLE[..overrides]
        .replace(
            "listen = [\"127.0.0.1:5353\"]",
            &format!("listen = [\"{ours}\"]\ngeoip_db = \"geo.mmdb\""),
        )
        .replace(
            "admin = \"127.0.0.1:9153\"",
            &format!("admin = \"{}:9153\"", net.host(1)),
        );
    let text = common::steering_beside(&text, ours);
    std::fs::write(dir.path().join("deploy.toml"), text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_geodns"));
    cmd.arg("--config").arg(dir.path().join("deploy.toml"));
    let _geodns = Daemon::spawn("geodns", cmd, &dir.path().join("geodns.log")).unwrap();
    let _gdnsd = gdnsd::start(dir.path(), &db, theirs, 1);

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    for server in [ours, theirs] {
        let up = wait_for(Duration::from_secs(60), || {
            (!ask(&socket, server, clients[0], 1).0.is_empty()).then_some(())
        });
        assert!(up.is_some(), "{server} did not start");
    }

    let mut agree = 0;
    let mut same_scope = 0;
    let mut scope_differences = Vec::new();
    let mut differences = Vec::new();
    let queries = clients.len();
    for (i, &subnet) in clients.iter().enumerate() {
        let id = (i % 60000) as u16 + 2;
        let ((a, scope_a), (b, scope_b)) = (
            ask(&socket, ours, subnet, id),
            ask(&socket, theirs, subnet, id),
        );
        same_scope += usize::from(scope_a == scope_b);
        if scope_a != scope_b && scope_differences.len() < 5 {
            scope_differences.push(format!(
                "{subnet}/24: geodns scope {scope_a:?}, gdnsd scope {scope_b:?} ({})",
                site_of(&a)
            ));
        }
        if site_of(&a) == site_of(&b) {
            agree += 1;
        } else {
            differences.push(format!(
                "{subnet}/24: geodns {} {:?}, gdnsd {} {:?}",
                site_of(&a),
                a,
                site_of(&b),
                b
            ));
        }
    }
    let share = agree as f64 / queries as f64;
    eprintln!(
        "agreement with gdnsd ({} networks): {agree}/{queries} ({:.1}%) on the site, {same_scope}/{queries} on the ECS scope",
        networks.len(),
        share * 100.0
    );
    for d in &scope_differences {
        eprintln!("  scope differs: {d}");
    }
    for d in &differences {
        eprintln!("  differs: {d}");
    }
    assert!(
        same_scope as f64 / queries as f64 >= 0.99,
        "ECS scopes differ from gdnsd's too often: {same_scope}/{queries}\n{}",
        scope_differences.join("\n")
    );
    assert!(
        share >= 0.99,
        "only {:.1}% agreement:\n{}",
        share * 100.0,
        differences.join("\n")
    );
}
