//! A service's canary in a running geodns: a share of client networks answered with the nodes
//! labelled with the canary's version, each network always on one side, the canary counted in
//! the metrics, a side with no node up answered by the other, and `geodns canary SERVICE
//! withdraw` taking it out of every answer, across a restart, until `restore`.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use ipnet::IpNet;
use testkit::net::Loopback;
use testkit::process::{Daemon, TempDir, run, wait_for};

const SHARE: f64 = 0.2;
/// The canary's node at each site (the example has two nodes per site, one of each side).
const CANARY_NODES: [&str; 3] = ["ams-2", "fra-2", "lon-2"];
const CANARY: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 11, 2),
    Ipv4Addr::new(127, 0, 21, 2),
    Ipv4Addr::new(127, 0, 31, 2),
];

/// The example with a canary of `live` on one node per site, and its admin state kept (and
/// no rate limit: one source asks for thousands of clients).
fn deployment(dns: SocketAddr, admin: SocketAddr) -> String {
    let text = common::example_on(dns, admin) + common::UNLIMITED;
    let mut text = text.replacen("[dns]\n", "[dns]\nadmin_state = \"admin-state.json\"\n", 1);
    for node in CANARY_NODES {
        let line = format!("name = \"{node}\"\n");
        text = text.replacen(&line, &format!("{line}version = \"2.4.0\"\n"), 1);
    }
    text.replacen(
        "degrade = { action = \"graceful-shutdown\", delay = \"5s\" }\n",
        &format!(
            "degrade = {{ action = \"graceful-shutdown\", delay = \"5s\" }}\ncanary = {{ version = \"2.4.0\", share = {SHARE} }}\n"
        ),
        1,
    )
}

struct GeoDns {
    daemon: Option<Daemon>,
    dns: SocketAddr,
    admin: SocketAddr,
    dir: TempDir,
}

impl GeoDns {
    fn start() -> Self {
        let net = Loopback::fresh();
        let dir = TempDir::new("geodns-canary");
        // Wide networks in each site's city, so that clients spread over the address space
        // reach every site (and the atlas's scope for them is far wider than the split's).
        let place = |net: &str, country, latitude, longitude| geodns::geo::Place {
            network: net.parse().unwrap(),
            country,
            continent: "EU",
            latitude,
            longitude,
        };
        let db = geodns::geo::synthetic_db(&[
            place("64.0.0.0/3", "NL", 52.37, 4.90),
            place("96.0.0.0/3", "DE", 50.11, 8.68),
            place("128.0.0.0/2", "GB", 51.51, -0.13),
        ])
        .unwrap();
        std::fs::write(dir.path().join("geo.mmdb"), db).unwrap();
        let dns = SocketAddr::from((net.host(57), 5353));
        let admin = SocketAddr::from((net.host(57), 9153));
        let mut g = Self {
            daemon: None,
            dns,
            admin,
            dir,
        };
        g.spawn();
        g
    }

    fn spawn(&mut self) {
        self.daemon = Some(common::spawn_geodns(
            self.dir.path(),
            "geodns",
            &deployment(self.dns, self.admin),
        ));
        assert!(
            wait_for(Duration::from_secs(20), || common::answers(self.dns)
                .then_some(()))
            .is_some(),
            "geodns did not answer:\n{}",
            self.daemon.as_ref().unwrap().log_text()
        );
    }

    fn restart(&mut self) {
        let mut daemon = self.daemon.take().unwrap();
        daemon.signal("TERM");
        assert!(daemon.wait_exit(Duration::from_secs(10)).is_some());
        self.spawn();
    }

    fn cli(&self, args: &[&str]) -> (bool, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_geodns"));
        cmd.arg("--config")
            .arg(self.dir.path().join("geodns.toml"))
            .args(args);
        let out = run(cmd, Duration::from_secs(20)).expect("run the geodns CLI");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// The A answer for a client in `net`, asked as a resolver does (ECS with the network), and
    /// the scope it came with.
    fn ask(&self, socket: &UdpSocket, net: IpNet) -> (Vec<Ipv4Addr>, u8) {
        let name = Name::from_ascii("live.tv.example.net.").unwrap();
        let mut query = testkit::dnsload::query(&name, RecordType::A, Some(net));
        for attempt in 0..5u16 {
            query.metadata.id = attempt;
            socket.send_to(&query.to_vec().unwrap(), self.dns).unwrap();
            let mut buf = [0u8; 1500];
            let Ok((n, _)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let m = Message::from_vec(&buf[..n]).expect("answers decode");
            if m.metadata.id != attempt {
                continue;
            }
            let addresses = m
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect();
            let scope = m
                .edns
                .as_ref()
                .and_then(|e| match e.option(EdnsCode::Subnet) {
                    Some(EdnsOption::Subnet(s)) => Some(s.scope_prefix()),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{net}: an ECS answer has a scope: {m:?}"));
            return (addresses, scope);
        }
        panic!("no answer for {net} after 5 tries");
    }

    /// The canary's answers among `clients`' (each must be one node of one side), and how
    /// many came from each site's other node.
    fn sides(&self, clients: &[IpNet]) -> (Vec<bool>, BTreeMap<Ipv4Addr, usize>) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut others = BTreeMap::new();
        let sides = clients
            .iter()
            .map(|&net| {
                let (addresses, scope) = self.ask(&socket, net);
                assert_eq!(
                    addresses.len(),
                    1,
                    "{net}: one node per side at each site, so one address: {addresses:?}"
                );
                assert!(scope >= 24, "{net}: scope /{scope} is wider than the split");
                let canary = CANARY.contains(&addresses[0]);
                if !canary {
                    *others.entry(addresses[0]).or_default() += 1;
                }
                canary
            })
            .collect();
        (sides, others)
    }

    fn canary_answers(&self) -> f64 {
        let (_, text) = testkit::http::get(self.admin, "/metrics").expect("metrics");
        text.lines()
            .filter(|l| l.starts_with("geodns_canary_answers_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for GeoDns {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(d) = &self.daemon
        {
            eprintln!("geodns log:\n{}", d.log_text());
        }
    }
}

fn share(sides: &[bool]) -> f64 {
    sides.iter().filter(|c| **c).count() as f64 / sides.len() as f64
}

#[test]
fn a_share_of_client_networks_goes_to_the_canary_until_it_is_withdrawn() {
    let g = &mut GeoDns::start();
    // 3,000 networks spread over the address space, and one other host in each.
    let clients = testkit::dnsload::spread_v4(3000, 24, 0x5eed);
    let neighbours: Vec<IpNet> = clients
        .iter()
        .map(|n| match n.network() {
            IpAddr::V4(a) => IpNet::new(IpAddr::V4(Ipv4Addr::from(a.to_bits() | 77)), 32).unwrap(),
            IpAddr::V6(_) => unreachable!(),
        })
        .collect();
    let before = g.canary_answers();
    let (sides, others) = g.sides(&clients);
    let measured = share(&sides);
    // 3,000 draws: one standard deviation is 0.7 points.
    assert!(
        (measured - SHARE).abs() < 0.035,
        "{measured} of the networks on the canary, configured {SHARE}"
    );
    assert!(others.len() == 3, "every site answers: {others:?}");
    let (again, _) = g.sides(&neighbours);
    assert_eq!(
        sides, again,
        "a network stays on its side, whichever host asks"
    );
    let counted = wait_for(Duration::from_secs(5), || {
        let n = g.canary_answers() - before;
        (n >= 2.0 * sides.iter().filter(|c| **c).count() as f64).then_some(n)
    });
    assert!(
        counted.is_some(),
        "geodns_canary_answers_total counts the canary's answers"
    );

    // A canary node down: its side at that site is answered by the other node, never empty.
    let (ok, said) = g.cli(&["admin", "ams", "--node", "ams-2", "down"]);
    assert!(ok, "{said}");
    let (down, _) = g.sides(&clients);
    assert!(
        share(&down) < measured && share(&down) > 0.0,
        "ams's canary viewers moved to ams-1: {} of {measured}",
        share(&down)
    );
    let (ok, said) = g.cli(&["admin", "ams", "--node", "ams-2", "clear"]);
    assert!(ok, "{said}");

    // Withdrawn in one command: nobody on the canary, across a restart.
    let (ok, said) = g.cli(&["canary", "live", "withdraw"]);
    assert!(
        ok && said.contains("canary 2.4.0 of live withdrawn"),
        "{said}"
    );
    assert_eq!(
        share(&g.sides(&clients).0),
        0.0,
        "withdrawn: nobody on the canary"
    );
    let (_, explained) = g.cli(&["explain", "live.tv.example.net", "198.51.100.7"]);
    assert!(explained.contains("WITHDRAWN"), "{explained}");
    g.restart();
    assert_eq!(
        share(&g.sides(&clients).0),
        0.0,
        "the withdrawal outlives a restart (dns.admin_state)"
    );
    let (ok, said) = g.cli(&["canary", "live", "restore"]);
    assert!(ok && said.contains("restored"), "{said}");
    assert_eq!(
        g.sides(&clients).0,
        sides,
        "restored: the same networks on the canary as before"
    );

    // Mistakes are named.
    let (ok, said) = g.cli(&["canary", "vod", "withdraw"]);
    assert!(!ok && said.contains("has no canary"), "{said}");
    let (ok, said) = g.cli(&["canary", "live", "sideways"]);
    assert!(
        !ok && said.contains("expected withdraw or restore"),
        "{said}"
    );
}
