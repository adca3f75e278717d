//! Shared by the integration tests (and the benchmark, through `#[path]`); each uses a part.
#![allow(dead_code)]

use std::net::SocketAddr;

use geodns::geo::Place;

pub mod gdnsd;

/// The three-site example deployment, the one the tests and the benchmark serve.
pub const EXAMPLE: &str = include_str!("../../../config/examples/three-sites.toml");

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

/// [`EXAMPLE`] answering on `dns` with the location database `geo.mmdb` beside it, its admin
/// endpoint on `admin`.
pub fn example_on(dns: SocketAddr, admin: SocketAddr) -> String {
    EXAMPLE
        .replace(
            "listen = [\"127.0.0.1:5353\"]",
            &format!("listen = [\"{dns}\"]\ngeoip_db = \"geo.mmdb\""),
        )
        .replace(
            "admin = \"127.0.0.1:9153\"",
            &format!("admin = \"{admin}\""),
        )
}
