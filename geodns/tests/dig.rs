//! geodns end to end: a running server asked with dig/kdig, a location database generated
//! for the test, admin overrides through the CLI.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use geodns::geo::{Place, synthetic_db};
use testkit::net::Loopback;
use testkit::process::{Daemon, TempDir, run, wait_for};

const EXAMPLE: &str = include_str!("../../config/examples/three-sites.toml");

/// Test cities: networks from the documentation ranges, placed where the city is.
fn places() -> Vec<Place<'static>> {
    let p = |net: &str, country, continent, latitude, longitude| Place {
        network: net.parse().unwrap(),
        country,
        continent,
        latitude,
        longitude,
    };
    vec![
        p("198.51.100.0/24", "NL", "EU", 52.37, 4.90), // Amsterdam
        p("203.0.113.0/24", "DE", "EU", 50.11, 8.68),  // Frankfurt
        p("192.0.2.0/25", "GB", "EU", 51.51, -0.13),   // London
        p("192.0.2.128/25", "IE", "EU", 53.35, -6.26), // Dublin (override: lon first)
        p("100.64.0.0/16", "FR", "EU", 48.86, 2.35),   // Paris
        p("100.65.0.0/16", "PL", "EU", 52.23, 21.01),  // Warsaw
        p("100.66.0.0/16", "DE", "EU", 52.52, 13.40),  // Berlin (upper half overridden to London)
        p("2001:db8:1::/48", "DE", "EU", 50.11, 8.68), // Frankfurt, IPv6
    ]
}

struct GeoDns {
    daemon: Daemon,
    dns: SocketAddr,
    admin: SocketAddr,
    config: std::path::PathBuf,
    _dir: TempDir,
}

impl GeoDns {
    fn start() -> Self {
        let net = Loopback::fresh();
        let dir = TempDir::new("geodns");
        std::fs::write(
            dir.path().join("geo.mmdb"),
            synthetic_db(&places()).unwrap(),
        )
        .unwrap();
        let dns = SocketAddr::from((net.host(53), 5353));
        let admin = SocketAddr::from((net.host(53), 9153));
        // A TXT record too big for a 512-byte UDP answer, to see TC and the TCP retry.
        let big: Vec<String> = (0..6)
            .map(|i| format!("\\\"{}\\\"", char::from(b'a' + i).to_string().repeat(120)))
            .collect();
        let text = EXAMPLE
            .replace("listen = [\"127.0.0.1:5353\"]", &format!("listen = [\"{dns}\"]\ngeoip_db = \"geo.mmdb\"\nadmin_state = \"admin-state.json\"\nquery_log_sample = 1.0"))
            .replace("admin = \"127.0.0.1:9153\"", &format!("admin = \"{admin}\""))
            .replace(
                "  { name = \"@\", type = \"TXT\", data = \"v=spf1 -all\" },",
                &format!("  {{ name = \"@\", type = \"TXT\", data = \"v=spf1 -all\" }},\n  {{ name = \"big\", type = \"TXT\", data = \"{}\" }},", big.join(" ")),
            );
        let text = common::steering_beside(&text, dns);
        // A second zone from an RFC 1035 zone file, and a network override.
        std::fs::write(
            dir.path().join("static.zone"),
            "$ORIGIN static.example.net.\n@ 300 IN SOA ns1 hostmaster 7 3600 600 604800 60\n@ 300 IN NS ns1\nns1 IN A 192.0.2.53\nwww 120 IN AAAA 2001:db8::80\n",
        )
        .unwrap();
        let text = format!(
            "{text}\n[[dns.zones]]\norigin = \"static.example.net\"\nfile = \"static.zone\"\n\n[[dns.overrides]]\nnetworks = [\"100.66.128.0/17\"]\nsites = [\"lon\"]\n"
        );
        let config = dir.path().join("deploy.toml");
        std::fs::write(&config, text).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_geodns"));
        cmd.arg("--config").arg(&config);
        let daemon =
            Daemon::spawn("geodns", cmd, &dir.path().join("geodns.log")).expect("start geodns");
        let server = Self {
            daemon,
            dns,
            admin,
            config,
            _dir: dir,
        };
        let up = wait_for(Duration::from_secs(10), || {
            server
                .dig(&["tv.example.net", "SOA", "+short"])
                .contains("hostmaster")
                .then_some(())
        });
        assert!(
            up.is_some(),
            "geodns did not start:\n{}",
            server.daemon.log_text()
        );
        server
    }

    /// Stops geodns and starts it again on the same files.
    fn restart(&mut self) {
        self.daemon.signal("TERM");
        self.daemon.wait_exit(Duration::from_secs(10));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_geodns"));
        cmd.arg("--config").arg(&self.config);
        self.daemon = Daemon::spawn("geodns", cmd, &self.config.with_file_name("geodns-2.log"))
            .expect("restart geodns");
        let up = wait_for(Duration::from_secs(10), || {
            self.dig(&["tv.example.net", "SOA", "+short"])
                .contains("hostmaster")
                .then_some(())
        });
        assert!(
            up.is_some(),
            "geodns did not restart:\n{}",
            self.daemon.log_text()
        );
    }

    fn dig(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("dig");
        cmd.arg(format!("@{}", self.dns.ip()))
            .arg("-p")
            .arg(self.dns.port().to_string())
            .args(["+tries=1", "+time=2"])
            .args(args);
        let out = run(cmd, Duration::from_secs(10)).expect("dig runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_geodns"));
        cmd.arg("--config").arg(&self.config).args(args);
        let out = run(cmd, Duration::from_secs(10)).expect("geodns cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// The TTL of the live.tv.example.net A answer for a client in `subnet`.
    fn ttl(&self, subnet: &str) -> u32 {
        let out = self.dig(&[
            "live.tv.example.net",
            "A",
            &format!("+subnet={subnet}"),
            "+noall",
            "+answer",
        ]);
        out.lines()
            .find_map(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }

    /// The A records answered for `name` to a client in `subnet`, sorted, and the ECS line.
    fn service(&self, subnet: &str) -> (Vec<String>, String) {
        let out = self.dig(&["live.tv.example.net", "A", &format!("+subnet={subnet}")]);
        let mut addrs: Vec<String> = out
            .lines()
            .filter(|l| l.starts_with("live.tv.example.net.") && l.contains("\tA\t"))
            .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
            .collect();
        addrs.sort();
        let ecs = out
            .lines()
            .find(|l| l.contains("CLIENT-SUBNET"))
            .unwrap_or("")
            .to_owned();
        (addrs, ecs)
    }
}

fn needs_dig(test: &str) -> bool {
    testkit::require(test, &[("dig", "bind9-dnsutils")], false).is_some()
}

const AMS: [&str; 2] = ["127.0.11.1", "127.0.11.2"];
const FRA: [&str; 2] = ["127.0.21.1", "127.0.21.2"];
const LON: [&str; 2] = ["127.0.31.1", "127.0.31.2"];

#[test]
fn clients_are_sent_to_the_nearest_site_with_the_database_scope() {
    if !needs_dig("clients_are_sent_to_the_nearest_site_with_the_database_scope") {
        return;
    }
    let g = GeoDns::start();
    let (addrs, ecs) = g.service("198.51.100.0/24");
    assert_eq!(addrs, AMS, "Amsterdam");
    assert!(
        ecs.contains("198.51.100.0/24/24"),
        "scope from the /24 database network: {ecs}"
    );
    assert_eq!(g.service("203.0.113.0/24").0, FRA, "Frankfurt");
    let (addrs, ecs) = g.service("192.0.2.0/24");
    assert_eq!(addrs, LON, "London");
    // London and Dublin are two /25s whose site orders match (Dublin by override): the answer
    // holds for the whole /24, as gdnsd would say.
    assert!(
        ecs.contains("192.0.2.0/24/24"),
        "sibling /25s with the same order merge: {ecs}"
    );
    assert_eq!(
        g.service("100.64.7.0/24").0,
        LON,
        "Paris is nearest to London"
    );
    assert_eq!(
        g.service("100.65.1.0/24").0,
        FRA,
        "Warsaw is nearest to Frankfurt"
    );
    assert_eq!(
        g.service("192.0.2.200/32").0,
        LON,
        "Dublin: override puts London first"
    );
}

#[test]
fn aaaa_answers_come_from_the_nearest_site_with_ipv6_nodes() {
    if !needs_dig("aaaa_answers_come_from_the_nearest_site_with_ipv6_nodes") {
        return;
    }
    let g = GeoDns::start();
    // Only ams-1 has an IPv6 address in the example: a client in Frankfurt gets A records
    // from Frankfurt and AAAA from Amsterdam, the nearest site that can answer IPv6.
    let out = g.dig(&[
        "live.tv.example.net",
        "AAAA",
        "+subnet=2001:db8:1::/48",
        "+short",
    ]);
    assert_eq!(out.trim(), "fd00:0:11::1", "AAAA for a Frankfurt client");
    let out = g.dig(&[
        "live.tv.example.net",
        "A",
        "+subnet=203.0.113.0/24",
        "+short",
    ]);
    assert!(out.contains("127.0.21."), "A for a Frankfurt client: {out}");
    let out = g.dig(&[
        "live.tv.example.net",
        "AAAA",
        "+subnet=198.51.100.0/24",
        "+short",
    ]);
    assert_eq!(out.trim(), "fd00:0:11::1");
}

#[test]
fn a_site_forced_down_sends_its_clients_to_the_next_nearest() {
    if !needs_dig("a_site_forced_down_sends_its_clients_to_the_next_nearest") {
        return;
    }
    let mut g = GeoDns::start();
    assert_eq!(g.service("198.51.100.0/24").0, AMS);
    assert_eq!(
        g.ttl("198.51.100.0/24"),
        20,
        "the service TTL in steady state"
    );
    assert!(g.cli(&["admin", "ams", "down"]).contains("ok"));
    // A failover in progress: short TTLs for clients whose answer depends on Amsterdam, the
    // usual TTL for clients that never depended on it.
    assert_eq!(
        g.ttl("198.51.100.0/24"),
        5,
        "changing_ttl while Amsterdam's state is fresh"
    );
    assert_eq!(
        g.ttl("203.0.113.0/24"),
        20,
        "Frankfurt's viewers are not affected"
    );
    assert_eq!(
        g.service("198.51.100.0/24").0,
        LON,
        "London (358 km) before Frankfurt (364 km)"
    );
    assert!(
        g.cli(&["admin", "lon", "--node", "lon-1", "down"])
            .contains("ok")
    );
    assert_eq!(
        g.service("198.51.100.0/24").0,
        ["127.0.31.2"],
        "only the healthy node of London"
    );
    // The overrides are saved (dns.admin_state) and outlive a restart.
    g.restart();
    assert_eq!(
        g.service("198.51.100.0/24").0,
        ["127.0.31.2"],
        "Amsterdam still forced down and lon-1 still out after a restart"
    );
    let metrics = testkit::http::get(SocketAddr::from((g.dns.ip(), 9153)), "/metrics")
        .unwrap()
        .1;
    assert!(
        metrics.contains("geodns_admin_state{node=\"\",site=\"ams\"} -1"),
        "forced state visible in metrics: {metrics}"
    );
    assert!(g.cli(&["admin", "ams", "clear"]).contains("ok"));
    assert_eq!(g.service("198.51.100.0/24").0, AMS);
}

#[test]
fn every_site_down_fails_open_instead_of_answering_empty() {
    if !needs_dig("every_site_down_fails_open_instead_of_answering_empty") {
        return;
    }
    let g = GeoDns::start();
    for node in ["ams-1", "ams-2"] {
        assert!(
            g.cli(&["admin", "ams", "--node", node, "down"])
                .contains("ok")
        );
    }
    for (site, nodes) in [("fra", ["fra-1", "fra-2"]), ("lon", ["lon-1", "lon-2"])] {
        for node in nodes {
            assert!(
                g.cli(&["admin", site, "--node", node, "down"])
                    .contains("ok")
            );
        }
    }
    let (addrs, _) = g.service("198.51.100.0/24");
    assert_eq!(addrs, AMS, "the nearest site's nodes, fail open");
    let explain = g.cli(&["explain", "live.tv.example.net", "198.51.100.1", "--json"]);
    assert!(explain.contains("\"fail_open\": true"), "{explain}");
    // The table an operator reads says so too, naming the site.
    let table = g.cli(&["explain", "live.tv.example.net", "198.51.100.1"]);
    assert!(table.contains("chosen      ams (FAIL OPEN"), "{table}");
    assert!(table.contains("  ams "), "{table}");
    let metrics = testkit::http::get(SocketAddr::from((g.dns.ip(), 9153)), "/metrics")
        .unwrap()
        .1;
    assert!(
        metrics.contains("geodns_fail_open_answers_total 1"),
        "{metrics}"
    );
}

#[test]
fn static_data_follows_the_standards() {
    if !needs_dig("static_data_follows_the_standards") {
        return;
    }
    let g = GeoDns::start();
    let soa = g.dig(&["tv.example.net", "SOA"]);
    assert!(
        soa.contains("status: NOERROR") && soa.contains("flags: qr aa"),
        "{soa}"
    );
    assert!(!soa.contains(" ra"), "no recursion available: {soa}");
    let ns = g.dig(&["tv.example.net", "NS", "+short"]);
    assert!(
        ns.contains("ns1.tv.example.net.") && ns.contains("ns2.tv.example.net."),
        "{ns}"
    );
    let nx = g.dig(&["nope.tv.example.net", "A"]);
    assert!(
        nx.contains("status: NXDOMAIN") && nx.contains("AUTHORITY: 1"),
        "NXDOMAIN with the SOA: {nx}"
    );
    assert!(
        nx.contains("\t30\tIN\tSOA"),
        "negative TTL is the SOA minimum (RFC 2308): {nx}"
    );
    let nodata = g.dig(&["ns1.tv.example.net", "AAAA"]);
    assert!(
        nodata.contains("status: NOERROR")
            && nodata.contains("ANSWER: 0")
            && nodata.contains("AUTHORITY: 1"),
        "NODATA: {nodata}"
    );
    let refused = g.dig(&["www.example.org", "A"]);
    assert!(
        refused.contains("status: REFUSED") && !refused.contains(" aa"),
        "{refused}"
    );
    let mx = g.dig(&["tv.example.net", "MX", "+short"]);
    assert_eq!(mx.trim(), "10 mail.example.net.");
    let caa = g.dig(&["tv.example.net", "CAA", "+short"]);
    assert!(caa.contains("issue \"letsencrypt.org\""), "{caa}");
    let cname = g.dig(&["WWW.tv.EXAMPLE.net", "A", "+subnet=203.0.113.0/24"]);
    assert!(
        cname.contains("CNAME\tlive.tv.example.net.") && cname.contains("127.0.21."),
        "alias followed to the steered answer: {cname}"
    );
    assert!(
        cname.contains(";WWW.tv.EXAMPLE.net."),
        "question case preserved: {cname}"
    );
    // A service name in mixed case (0x20 randomisation) is steered like the lower-case one.
    let mixed = g.dig(&["LiVe.Tv.example.NET", "A", "+subnet=198.51.100.0/24"]);
    assert!(
        mixed.contains(";LiVe.Tv.example.NET.") && mixed.contains("LiVe.Tv.example.NET.\t"),
        "question and answer owner in the case asked: {mixed}"
    );
    assert!(mixed.contains("127.0.11."), "steered to Amsterdam: {mixed}");
    let log = g.daemon.log_text();
    assert!(
        log.contains("query") && log.contains("answered"),
        "every query sampled into the log: {log}"
    );
    // ANY gets one RRset, never everything (RFC 8482): no amplification through it.
    for name in ["tv.example.net", "live.tv.example.net"] {
        let any = g.dig(&[name, "ANY", "+subnet=198.51.100.0/24"]);
        assert!(
            any.contains("status: NOERROR") && !any.contains("ANSWER: 0"),
            "{any}"
        );
        let types: std::collections::BTreeSet<&str> = any
            .lines()
            .skip_while(|l| !l.contains("ANSWER SECTION"))
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .filter_map(|l| l.split_whitespace().nth(3))
            .collect();
        assert_eq!(types.len(), 1, "one RRset for ANY: {any}");
    }
}

#[test]
fn big_answers_are_truncated_over_udp_and_complete_over_tcp() {
    if !needs_dig("big_answers_are_truncated_over_udp_and_complete_over_tcp") {
        return;
    }
    let g = GeoDns::start();
    let udp = g.dig(&["big.tv.example.net", "TXT", "+noedns", "+ignore"]);
    assert!(
        udp.contains(" tc"),
        "truncated over UDP without EDNS: {udp}"
    );
    let tcp = g.dig(&["big.tv.example.net", "TXT", "+tcp"]);
    assert!(
        !tcp.contains(" tc") && tcp.contains("ffffff"),
        "complete over TCP: {tcp}"
    );
    // kdig agrees.
    if testkit::find_program("kdig").is_some() {
        let mut cmd = Command::new("kdig");
        cmd.arg(format!("@{}", g.dns.ip()))
            .arg("-p")
            .arg(g.dns.port().to_string())
            .args(["+tcp", "big.tv.example.net", "TXT"]);
        let out = String::from_utf8_lossy(&run(cmd, Duration::from_secs(10)).unwrap().stdout)
            .into_owned();
        assert!(out.contains("NOERROR") && out.contains("ffffff"), "{out}");
    }
}

#[test]
fn source_prefix_zero_uses_the_resolver_address_with_scope_zero() {
    if !needs_dig("source_prefix_zero_uses_the_resolver_address_with_scope_zero") {
        return;
    }
    let g = GeoDns::start();
    let (addrs, ecs) = g.service("0.0.0.0/0");
    // The resolver (loopback) is in no database network: default order, Amsterdam first.
    assert_eq!(addrs, AMS);
    assert!(ecs.contains("0.0.0.0/0/0"), "{ecs}");
}

/// A query for live.tv.example.net A with an ECS option whose SCOPE is not zero.
fn query_with_bad_ecs() -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in ["live", "tv", "example", "net"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    // OPT: root, type 41, payload 1232, rcode/flags 0, rdlen 11, ECS code 8 len 7:
    // family 1, source 24, scope 24 (must be 0 in a query), 3 address bytes.
    q.extend_from_slice(&[
        0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 11, 0, 8, 0, 7, 0, 1, 24, 24, 198, 51, 100,
    ]);
    q
}

#[test]
fn malformed_client_subnet_gets_formerr_and_garbage_never_crashes() {
    let mut g = GeoDns::start();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket.send_to(&query_with_bad_ecs(), g.dns).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = socket.recv_from(&mut buf).expect("an answer to a bad ECS");
    assert!(n >= 12);
    assert_eq!(buf[3] & 0x0f, 1, "FORMERR");
    let mut state: u64 = 0x1234_5678;
    for i in 0..3000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 600) as usize;
        let mut packet: Vec<u8> = (0..len)
            .map(|j| (state >> (j % 56)) as u8 ^ j as u8)
            .collect();
        if i % 2 == 0 && len > 20 {
            // Mostly-valid headers reach deeper into the parser.
            packet[2] = 0x01;
            packet[5] = 1;
        }
        let _ = socket.send_to(&packet, g.dns);
    }
    // The datagram that once killed a worker thread, sent from many source ports so that
    // SO_REUSEPORT spreads it over every worker: each gets FORMERR.
    let mut long = vec![0x13, 0x37, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for len in [63u8, 63, 63, 62, 63] {
        long.push(len);
        long.extend(std::iter::repeat_n(b'a', usize::from(len)));
    }
    long.extend_from_slice(&[0, 0, 1, 0, 1]);
    for _ in 0..32 {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        // Asked again from the same port (so of the same worker) when the garbage burst above
        // still fills the queue, as any resolver asks again: a dead worker never answers.
        let answer = (0..3).find_map(|_| {
            s.send_to(&long, g.dns).unwrap();
            s.recv_from(&mut buf).ok()
        });
        let (n, _) = answer.expect("an answer to an over-long name");
        assert!(n >= 12 && buf[3] & 0x0f == 1, "FORMERR: {:02x?}", &buf[..n]);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        g.daemon.running(),
        "geodns survived garbage:\n{}",
        g.daemon.log_text()
    );
    // Every worker still answers right, not only the process: queries from 64 source ports.
    let mut q = query_with_bad_ecs();
    let scope = q.len() - 4;
    q[scope] = 0;
    for _ in 0..64 {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.send_to(&q, g.dns).unwrap();
        let (n, _) = s.recv_from(&mut buf).expect("every worker answers");
        let m = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
        let addrs: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
        assert!(
            !addrs.is_empty() && addrs.iter().all(|a| AMS.contains(&a.as_str())),
            "Amsterdam's nodes: {addrs:?}"
        );
    }
    let (status, body) = testkit::http::get(g.admin, "/healthz").expect("admin answers");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (_, metrics) = testkit::http::get(g.admin, "/metrics").unwrap();
    for counter in ["geodns_worker_panics_total 0", "geodns_panics_total 0"] {
        assert!(metrics.contains(counter), "{counter}:\n{metrics}");
    }
    let soa = g.dig(&["tv.example.net", "SOA", "+short"]);
    assert!(soa.contains("hostmaster"), "still answering: {soa}");
    g.restart();
}

#[test]
fn zone_files_anycast_services_and_network_overrides() {
    if !needs_dig("zone_files_anycast_services_and_network_overrides") {
        return;
    }
    let g = GeoDns::start();
    let aaaa = g.dig(&["www.static.example.net", "AAAA"]);
    assert!(
        aaaa.contains("2001:db8::80") && aaaa.contains(" aa"),
        "from the zone file: {aaaa}"
    );
    let soa = g.dig(&["static.example.net", "SOA", "+short"]);
    assert!(soa.contains(" 7 3600 600 604800 60"), "{soa}");
    let vod = g.dig(&["vod.tv.example.net", "A", "+subnet=198.51.100.0/24"]);
    assert!(vod.contains("203.0.113.10"), "anycast answer: {vod}");
    assert!(
        vod.contains("198.51.100.0/24/0"),
        "the same for everyone: scope 0: {vod}"
    );
    let (berlin, ecs) = g.service("100.66.1.0/24");
    assert_eq!(berlin, FRA, "Berlin's lower half: nearest is Frankfurt");
    assert!(
        ecs.contains("/17"),
        "a more specific override inside the database /16 narrows the scope: {ecs}"
    );
    let (upper, ecs) = g.service("100.66.200.0/24");
    assert_eq!(upper, LON, "network override");
    assert!(ecs.contains("/17"), "{ecs}");
}

#[test]
fn location_database_is_reloaded_when_the_file_changes() {
    if !needs_dig("location_database_is_reloaded_when_the_file_changes") {
        return;
    }
    let g = GeoDns::start();
    assert_eq!(g.service("198.51.100.0/24").0, AMS);
    // The same network, now placed in Frankfurt.
    let moved = [Place {
        network: "198.51.100.0/24".parse().unwrap(),
        country: "DE",
        continent: "EU",
        latitude: 50.11,
        longitude: 8.68,
    }];
    let db = g._dir.path().join("geo.mmdb");
    let tmp = g._dir.path().join("geo.mmdb.new");
    std::fs::write(&tmp, synthetic_db(&moved).unwrap()).unwrap();
    std::fs::rename(&tmp, &db).unwrap();
    let reloaded = wait_for(Duration::from_secs(8), || {
        (g.service("198.51.100.0/24").0 == FRA).then_some(())
    });
    assert!(reloaded.is_some(), "{}", g.daemon.log_text());
}

#[test]
fn a_reload_that_removes_a_site_keeps_every_answer_right() {
    if !needs_dig("a_reload_that_removes_a_site_keeps_every_answer_right") {
        return;
    }
    let g = GeoDns::start();
    assert_eq!(g.service("203.0.113.0/24").0, FRA);
    assert_eq!(g.service("192.0.2.0/24").0, LON);
    // An operator's override on London must survive the reload.
    assert!(
        g.cli(&["admin", "lon", "--node", "lon-1", "down"])
            .contains("ok")
    );
    // Frankfurt leaves the deployment: London becomes the second site in the file.
    let text = std::fs::read_to_string(&g.config).unwrap();
    let start = text.find("[[sites]]\nname = \"fra\"").unwrap();
    let end = start + 1 + text[start + 1..].find("[[sites]]").unwrap();
    let without = format!("{}{}", &text[..start], &text[end..])
        .replace("[\"ams\", \"fra\", \"lon\"]", "[\"ams\", \"lon\"]")
        .replace("[\"lon\", \"ams\", \"fra\"]", "[\"lon\", \"ams\"]");
    std::fs::write(&g.config, without).unwrap();
    g.daemon.signal("HUP");
    let moved = wait_for(Duration::from_secs(5), || {
        (g.service("203.0.113.0/24").0 == AMS).then_some(())
    });
    assert!(
        moved.is_some(),
        "Frankfurt's clients go to the nearest remaining site:\n{}",
        g.daemon.log_text()
    );
    assert_eq!(
        g.service("192.0.2.0/24").0,
        ["127.0.31.2"],
        "London answered with London's nodes, its override kept"
    );
    assert_eq!(g.service("198.51.100.0/24").0, AMS);
}
