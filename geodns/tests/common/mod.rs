//! Shared by the integration tests (and the benchmark, through `#[path]`); each uses a part.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use geodns::geo::Place;
use testkit::process::Daemon;

pub mod flood;
pub mod gdnsd;
pub mod knot;

/// The three-site example deployment, the one the tests and the benchmark serve.
pub const EXAMPLE: &str = include_str!("../../../config/examples/three-sites.toml");

/// geodns run by `name` from `dir` with the deployment file `text` (written as `NAME.toml`),
/// logging to `NAME.log` (info: each atlas compile and reload is a line).
pub fn spawn_geodns(dir: &Path, name: &str, text: &str) -> Daemon {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, text).expect("write the deployment file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_geodns"));
    cmd.arg("--config").arg(&config).env("RUST_LOG", "info");
    Daemon::spawn(name, cmd, &dir.join(format!("{name}.log"))).expect("start geodns")
}

/// The value of the sample `name` (with its labels, as exposed) on `admin`'s `/metrics`.
pub fn metric(admin: SocketAddr, name: &str) -> Option<f64> {
    let (_, text) = testkit::http::get(admin, "/metrics")?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

/// A rate limit section no test load reaches (one source asks thousands of times a second), so
/// that the limiter is on the path but never limits.
pub const UNLIMITED: &str = "\n[dns.rate_limit]\nrate = 1000000\nburst = 4000000\n";

/// One network in each site's city: Amsterdam, Frankfurt, London.
pub fn three_cities() -> Vec<Place<'static>> {
    let p = |net: &str, country, latitude, longitude| Place {
        network: net.parse().unwrap(),
        country,
        continent: "EU",
        latitude,
        longitude,
    };
    vec![
        p("198.51.100.0/24", "NL", 52.37, 4.90),
        p("203.0.113.0/24", "DE", 50.11, 8.68),
        p("192.0.2.0/24", "GB", 51.51, -0.13),
    ]
}

/// Writes the three cities' location database into `dir` as `geo.mmdb`, where [`example_on`]
/// looks for it.
pub fn write_geo_db(dir: &Path) {
    let db = geodns::geo::synthetic_db(&three_cities()).expect("the three cities' database");
    std::fs::write(dir.join("geo.mmdb"), db).expect("write geo.mmdb");
}

/// [`EXAMPLE`] answering on `dns` with the location database `geo.mmdb` beside it, its admin
/// endpoint on `admin`.
pub fn example_on(dns: SocketAddr, admin: SocketAddr) -> String {
    let text = EXAMPLE
        .replace(
            "listen = [\"127.0.0.1:5353\"]",
            &format!("listen = [\"{dns}\"]\ngeoip_db = \"geo.mmdb\""),
        )
        .replace(
            "admin = \"127.0.0.1:9153\"",
            &format!("admin = \"{admin}\""),
        );
    steering_beside(&text, dns)
}

/// Whether `server` answers the service's A question now (a few queries at 10 per second).
pub fn answers(server: SocketAddr) -> bool {
    use testkit::dnsload::{self, Load, Pace};
    let probe = Load::new(
        server,
        "live.tv.example.net.",
        Vec::new(),
        Pace::Rate(10),
        std::time::Duration::from_millis(200),
    );
    dnsload::run(&probe).is_ok_and(|r| r.answered > 0)
}

/// [`example_on`] offering its sockets to a replacement at `handover` (`dns.handover`).
pub fn example_with_handover(dns: SocketAddr, admin: SocketAddr, handover: &Path) -> String {
    example_on(dns, admin).replacen(
        "[dns]\n",
        &format!("[dns]\nhandover = \"{}\"\n", handover.display()),
        1,
    )
}

/// The example's steering listener moved to `dns`'s address (port 8085), so that tests running
/// side by side each have their own.
pub fn steering_beside(text: &str, dns: SocketAddr) -> String {
    text.replace(
        "content_steering = { listen = [\"127.0.0.1:8085\"] }",
        &format!(
            "content_steering = {{ listen = [\"{}\"] }}",
            SocketAddr::new(dns.ip(), 8085)
        ),
    )
}

/// Cities of the benchmarks' real-size database: coordinates spread over the inhabited latitudes.
pub const CITIES: usize = 300;
/// /24s of the real-size database, each split into four /26s: 1,048,576 networks.
pub const SLASH24S: usize = 262_144;
/// IPv6 /48s of the real-size database.
pub const SLASH48S: usize = 262_144;
/// Distinct client /24s asking in the benchmarks' spread loads, as clients all over the world.
pub const CLIENTS: usize = 200_000;

/// A generated real-size location database: /24s spread over the public IPv4 space (each
/// split into four /26s) and IPv6 /48s in the regional registries' blocks, every network in
/// one of `cities` random cities between 50°S and 70°N.
pub struct Generated {
    pub places: Vec<Place<'static>>,
    pub slash24s: Vec<ipnet::IpNet>,
    pub slash48s: Vec<ipnet::IpNet>,
}

impl Generated {
    pub fn new(slash24s: usize, slash48s: usize, cities: usize, seed: u64) -> Self {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let cities: Vec<(f64, f64)> = (0..cities)
            .map(|_| {
                let lat = -50.0 + (next() % 12_000) as f64 / 100.0;
                let lon = -180.0 + (next() % 36_000) as f64 / 100.0;
                (lat, lon)
            })
            .collect();
        let mut city = || cities[(next() % cities.len() as u64) as usize];
        let place = |network, (latitude, longitude)| Place {
            network,
            country: "US",
            continent: "NA",
            latitude,
            longitude,
        };
        let v4 = testkit::dnsload::spread_v4(slash24s, 24, seed ^ 0x24);
        let mut places = Vec::with_capacity(v4.len() * 4 + slash48s);
        for net in &v4 {
            let std::net::IpAddr::V4(base) = net.network() else {
                continue;
            };
            for quarter in 0..4u32 {
                let first = std::net::Ipv4Addr::from(u32::from(base) + quarter * 64);
                let network = ipnet::IpNet::new(first.into(), 26).expect("a /26");
                places.push(place(network, city()));
            }
        }
        let mut v6 = std::collections::BTreeSet::new();
        let mut state6 = seed ^ 0x48 | 1;
        while v6.len() < slash48s {
            state6 ^= state6 << 13;
            state6 ^= state6 >> 7;
            state6 ^= state6 << 17;
            let first = [0x2400u128, 0x2600, 0x2800, 0x2a00, 0x2c00][(state6 % 5) as usize];
            let bits = (first | u128::from(state6 >> 8 & 0xF)) << 112
                | u128::from((state6 >> 16) as u32) << 80;
            v6.insert(bits);
        }
        let v6: Vec<ipnet::IpNet> = v6
            .into_iter()
            .map(|bits| {
                ipnet::IpNet::new(std::net::Ipv6Addr::from(bits).into(), 48).expect("a /48")
            })
            .collect();
        for net in &v6 {
            places.push(place(*net, city()));
        }
        Self {
            places,
            slash24s: v4,
            slash48s: v6,
        }
    }

    /// Every network moved to one place (a database that changed under a running server).
    pub fn moved_to(&self, latitude: f64, longitude: f64) -> Vec<Place<'static>> {
        self.places
            .iter()
            .map(|p| Place {
                latitude,
                longitude,
                ..p.clone()
            })
            .collect()
    }
}
