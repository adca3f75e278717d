//! `lab demo`: the system on one machine, without root, from an embedded deployment.
//!
//! Three sites (Amsterdam, Frankfurt, London) each run a bgp-speaker peered with a route
//! collector (a fourth speaker, passive, keeping what it receives), and geodns answers on
//! 127.0.0.1:5353 from a location database generated for a few sample cities. Everything runs
//! in this process; the deployment file is written out so the usual CLIs work against it.
//! Each site also runs its two stream nodes (the built-in test channel) and its healthd, which
//! plays their streams, announces the site's prefixes through the speaker and feeds geodns.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::collector::{Choice, Collector};
use bgp_speaker::speaker::{self, SpeakerHandle};
use config::site::{ImportPolicy, Peer, Site};
use config::types::{ControlEndpoint, HumanDuration};
use config::{Deployment, Diagnostics};
use geodns::geo::{Place, synthetic_db};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};

/// The deployment the demo runs: three sites on loopback addresses.
pub const EMBEDDED_DEPLOYMENT: &str = include_str!("../../config/examples/three-sites.toml");

/// The demo's subscriber token key (hex): anyone may mint the demo's tokens.
const DEMO_TOKEN_KEY: &str = "64656d6f2d7375627363726962657273";

/// Where the route collector listens.
const COLLECTOR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 100)), 1790);
const COLLECTOR_ASN: u32 = 65000;

/// Sample cities: the network a viewer there comes from, and where it is.
const CITIES: [(&str, &str, &str, f64, f64); 6] = [
    ("Amsterdam", "198.51.100.0/24", "NL", 52.37, 4.90),
    ("Frankfurt", "203.0.113.0/24", "DE", 50.11, 8.68),
    ("London", "192.0.2.0/25", "GB", 51.51, -0.13),
    ("Dublin", "192.0.2.128/25", "IE", 53.35, -6.26),
    ("Paris", "100.64.0.0/16", "FR", 48.86, 2.35),
    ("Warsaw", "100.65.0.0/16", "PL", 52.23, 21.01),
];

/// Parses the embedded deployment (a broken one is a build defect, caught by the tests).
pub fn embedded() -> Result<Deployment, Diagnostics> {
    Deployment::parse(
        EMBEDDED_DEPLOYMENT,
        Path::new("<embedded three-sites.toml>"),
    )
}

/// The embedded deployment adapted to the demo: each site peers with the collector, control
/// sockets and the location database live in `dir`.
pub fn demo_deployment(dir: &Path) -> Result<Deployment> {
    let mut d = embedded().map_err(|e| anyhow::anyhow!("{e}"))?;
    for site in &mut d.sites {
        let local = site.speaker.admin.ip();
        site.peers = vec![Peer {
            name: "collector".into(),
            address: COLLECTOR.ip(),
            remote_asn: COLLECTOR_ASN,
            port: COLLECTOR.port(),
            local_address: Some(local),
            ..site.peers[0].clone()
        }];
        site.peers[0].export = Default::default();
        site.speaker.control = Some(ControlEndpoint::Unix(
            dir.join(format!("{}-speaker.sock", site.name)),
        ));
        site.speaker.startup_hold = HumanDuration::from_secs(0);
        // Each node gets an admin endpoint beside its HTTP port (drain, and freeze to try a
        // frozen encoder: fault injection is for demos and labs only).
        for node in &mut site.nodes {
            node.admin = Some(SocketAddr::new(node.listen.ip(), node.listen.port() + 1));
            node.fault_injection = true;
            // An edge's disk tier in the demo's directory, not the example's system path.
            if let Some(disk) = node.edge.as_mut().and_then(|e| e.disk.as_mut()) {
                disk.path = dir.join(format!("{}-disk", node.name));
            }
        }
    }
    if let Some(dns) = d.dns.as_mut() {
        dns.geoip_db = Some(dir.join("demo.mmdb"));
    }
    // The subscribers' key, written beside the deployment (the example names a system path).
    if !d.tokens.is_empty() {
        let key = dir.join("subscribers.key");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(&key, DEMO_TOKEN_KEY)
            .with_context(|| format!("cannot write {}", key.display()))?;
        for profile in &mut d.tokens {
            profile.keys = vec![config::types::Secret {
                file: Some(key.clone()),
                env: None,
            }];
        }
    }
    let problems = d.check();
    anyhow::ensure!(
        problems.is_empty(),
        "demo deployment is invalid: {problems:?}"
    );
    Ok(d)
}

/// The collector: one passive peer per site, keeping what it receives.
fn collector(d: &Deployment) -> Deployment {
    let template = &d.sites[0];
    let peers = d
        .sites
        .iter()
        .map(|s| Peer {
            name: s.name.clone(),
            address: s.speaker.admin.ip(),
            remote_asn: s.asn,
            passive: true,
            import: ImportPolicy {
                enabled: true,
                ..Default::default()
            },
            ..template.peers[0].clone()
        })
        .collect();
    let mut site: Site = template.clone();
    site.name = "collector".into();
    site.asn = COLLECTOR_ASN;
    site.router_id = Ipv4Addr::new(10, 255, 0, 1);
    site.peers = peers;
    site.nodes = Vec::new();
    site.speaker.listen = Some(COLLECTOR);
    site.speaker.control = None;
    Deployment {
        sites: vec![site],
        services: Vec::new(),
        checks: Vec::new(),
        channels: Vec::new(),
        tokens: Vec::new(),
        dns: None,
    }
}

/// The sample cities' location database.
pub fn city_database() -> Result<Vec<u8>> {
    let places: Vec<Place<'_>> = CITIES
        .iter()
        .map(|(_, net, country, lat, lon)| {
            Ok(Place {
                network: net.parse()?,
                country,
                continent: "EU",
                latitude: *lat,
                longitude: *lon,
            })
        })
        .collect::<Result<_, ipnet::AddrParseError>>()?;
    Ok(synthetic_db(&places)?)
}

/// Runs the demo until Ctrl-C.
pub async fn run(choice: Choice) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("anycast-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = run_in(&dir, choice).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Our own speaker as the collector.
async fn start_ours(d: &Deployment) -> Result<(Collector, tokio::task::JoinHandle<()>)> {
    let (handle, task) = speaker::start(&collector(d), "collector")
        .await
        .context("starting the route collector")?;
    Ok((Collector::Ours(handle), task))
}

async fn run_in(dir: &Path, choice: Choice) -> Result<()> {
    std::fs::write(dir.join("demo.mmdb"), city_database()?)?;
    let d = demo_deployment(dir)?;
    let config_path = dir.join("deploy.toml");
    std::fs::write(&config_path, d.to_toml()?)?;

    let bird = match choice {
        Choice::Ours => None,
        Choice::Auto | Choice::Bird => Collector::start_bird(&d, COLLECTOR, COLLECTOR_ASN, dir)
            .context("starting BIRD as the route collector")?,
    };
    let (collector, _collector_task) = match (bird, choice) {
        (Some(bird), _) => (bird, None),
        (None, Choice::Bird) => anyhow::bail!("BIRD is not installed (Debian package bird2)"),
        (None, _) => {
            let (c, task) = start_ours(&d).await?;
            (c, Some(task))
        }
    };
    let mut sites = Vec::new();
    let mut controls = Vec::new();
    let mut admins = Vec::new();
    // Each healthd runs as long as its handle is held (its probes and followers stop with it).
    let mut healthds = Vec::new();
    for site in &d.sites {
        let (handle, _task) = speaker::start(&d, &site.name)
            .await
            .with_context(|| format!("starting the speaker of {}", site.name))?;
        controls.push(
            bgp_speaker::control::serve(
                &site.speaker.control_endpoint(&site.name),
                None,
                handle.clone(),
            )
            .await?,
        );
        // Its metrics and liveness on its admin address, as the daemon serves them.
        let scrape = handle.clone();
        let admin = daemon::admin::router(
            "bgp_speaker",
            std::sync::Arc::new(move || bgp_speaker::metrics::render(&scrape)),
            handle.liveness(),
        );
        admins.push(
            daemon::admin::serve(site.speaker.admin, admin)
                .await
                .with_context(|| {
                    format!("serving the admin endpoint of {}'s speaker", site.name)
                })?,
        );
        // The site's stream nodes, and its healthd probing them and driving the speaker.
        for node in &site.nodes {
            streamnode::daemon::start(&d, &node.name, false)
                .await
                .with_context(|| format!("starting stream node {}", node.name))?;
        }
        healthds.push(
            healthd::daemon::start(d.clone(), &site.name)
                .await
                .with_context(|| format!("starting healthd of {}", site.name))?,
        );
        sites.push((site.name.clone(), handle));
    }
    let console = d.dns.as_ref().map(|dns| dns.admin);
    let dns = tokio::spawn(geodns::server::run(
        d.clone(),
        config_path.clone(),
        1,
        false,
    ));

    print_help(&config_path, console);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        if dns.is_finished() {
            // geodns stops by itself on SIGTERM/SIGINT (a clean stop), or on an error.
            match dns.await {
                Ok(Ok(())) => break,
                Ok(Err(e)) => return Err(anyhow::Error::new(e).context("geodns stopped")),
                Err(e) => anyhow::bail!("geodns stopped: {e}"),
            }
        }
        print!("\x1b[2J\x1b[H");
        print_help(&config_path, console);
        println!("route collector: {}\n", collector.describe());
        println!("{}", status(&sites, &collector).await);
    }
    println!("stopping: sessions close with a Cease");
    for (_, handle) in &sites {
        handle.stop_all("demo stopped");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(controls);
    drop(healthds);
    for admin in admins {
        admin.abort();
    }
    Ok(())
}

fn print_help(config: &Path, console: Option<SocketAddr>) {
    let c = config.display();
    println!(
        "anycast-iptv demo: 3 sites, a route collector, geodns on 127.0.0.1:5353 (Ctrl-C stops)\n"
    );
    if let Some(console) = console {
        println!(
            "  console: http://{console}/console   (sites, BGP sessions, steering, events; live)\n"
        );
    }
    // The daemons' commands in release, as the demo is built: only their binaries are linked.
    let hints = [
        (
            "dig @127.0.0.1 -p 5353 live.tv.example.net +subnet=198.51.100.0/24".to_owned(),
            "a viewer in Amsterdam",
        ),
        (
            format!("cargo run --release -p geodns -- -c {c} admin ams down"),
            "take a site out of DNS (undo: admin ams clear)",
        ),
        (
            format!(
                "cargo run --release -p geodns -- -c {c} explain live.tv.example.net 198.51.100.7"
            ),
            "why a client gets its answer",
        ),
        (
            format!("cargo run --release -p bgp-speaker -- -c {c} -s ams drain --delay 10s"),
            "drain its BGP announcement (undo: undrain)",
        ),
        (
            format!("cargo run --release -p bgp-speaker -- -c {c} -s ams show neighbors"),
            "",
        ),
        (
            "ffplay http://127.0.11.1:8080/news/index.m3u8".to_owned(),
            "watch a channel",
        ),
        (
            "curl http://127.0.11.1:8080/sports/index.m3u8".to_owned(),
            "a master playlist: two renditions per site, steered",
        ),
        (
            format!(
                "cargo run --release -p streamnode -- -c {c} token --profile subscribers --acl '/premium/*' --base http://127.0.21.3:8080"
            ),
            "a subscriber's URL, through Frankfurt's edge",
        ),
        (
            "curl -i http://127.0.21.3:8080/premium/index.m3u8".to_owned(),
            "without a token: 403",
        ),
        (
            "curl 'http://127.0.0.1:8085/steer/live?_HLS_pathway=ams'".to_owned(),
            "the content steering answer: sites in the order to use",
        ),
        (
            "for n in 1 2; do curl -X POST http://127.0.11.$n:8081/stop-serving; done".to_owned(),
            "take Amsterdam's nodes down (undo: /start-serving)",
        ),
        (
            "for n in 1 2; do curl -X POST http://127.0.11.$n:8081/freeze; done".to_owned(),
            "freeze Amsterdam's streams (undo: /unfreeze)",
        ),
        (
            "curl -X POST http://127.0.10.1:9181/drain".to_owned(),
            "drain Amsterdam (undo: /undrain)",
        ),
        (
            "prometheus --config.file=ops/prometheus/prometheus.yml".to_owned(),
            "scrape every daemon (dashboards: ops/grafana)",
        ),
    ];
    for (command, what) in hints {
        if what.is_empty() {
            println!("  {command}");
        } else {
            println!("  {command:<72} # {what}");
        }
    }
    println!();
}

/// How a site's speaker announces the live service's prefix: the phases a failover goes
/// through (graceful shutdown before the withdraw, a degraded site's prepends).
fn announcement(speaker: &SpeakerHandle) -> String {
    let rib = speaker.rib.borrow().clone();
    let Some(route) = rib
        .routes
        .values()
        .find(|r| r.service.as_deref() == Some("live"))
    else {
        return "withdrawn".to_owned();
    };
    let shutdown = route.drain.is_some()
        || route
            .attrs
            .communities
            .contains(&config::types::Community::GRACEFUL_SHUTDOWN);
    match (shutdown, route.attrs.prepend) {
        (true, _) => "graceful-shutdown".to_owned(),
        (false, 0) => "announced".to_owned(),
        (false, n) => format!("announced, prepend {n}"),
    }
}

/// The live table: sessions and announcements per site, and where each city is sent.
async fn status(sites: &[(String, SpeakerHandle)], collector: &Collector) -> String {
    let mut out = format!(
        "{:<6} {:<12} {:>10}  {:<20} {}\n",
        "SITE", "BGP", "ADVERTISED", "LIVE PREFIX", "SEEN AT THE COLLECTOR"
    );
    let seen = collector.received().await;
    for (name, handle) in sites {
        let status = handle.statuses().into_iter().next();
        let (state, advertised) = status.map_or(("-".to_owned(), 0), |s| {
            (s.state.name().to_owned(), s.prefixes_advertised)
        });
        let live = announcement(handle);
        let at_collector = seen.get(name).map(|p| p.join(" ")).unwrap_or_default();
        out.push_str(&format!(
            "{name:<6} {state:<12} {advertised:>10}  {live:<20} {at_collector}\n"
        ));
    }
    out.push_str(&format!(
        "\n{:<10} {:<18} {}\n",
        "CITY", "CLIENT SUBNET", "live.tv.example.net ->"
    ));
    let sites_by_prefix = [
        ("127.0.11.", "ams"),
        ("127.0.21.", "fra"),
        ("127.0.31.", "lon"),
    ];
    for (city, net, ..) in CITIES {
        let answer = ask(net).map_or_else(
            |e| format!("no answer ({e})"),
            |addrs| {
                let site = addrs
                    .first()
                    .and_then(|a| {
                        sites_by_prefix
                            .iter()
                            .find(|(p, _)| a.to_string().starts_with(p))
                            .map(|(_, s)| *s)
                    })
                    .unwrap_or("?");
                let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                format!("{site}  ({})", list.join(", "))
            },
        );
        out.push_str(&format!("{city:<10} {net:<18} {answer}\n"));
    }
    out
}

/// Asks geodns for live.tv.example.net A as a resolver would for a client in `subnet`.
fn ask(subnet: &str) -> Result<Vec<IpAddr>> {
    let net: ipnet::IpNet = subnet.parse()?;
    let mut query = Message::new(0x4242, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(
        Name::from_ascii("live.tv.example.net.")?,
        RecordType::A,
    ));
    let mut edns = Edns::new();
    edns.options_mut()
        .insert(EdnsOption::Subnet(ClientSubnet::new(
            net.network(),
            net.prefix_len().min(24),
            0,
        )));
    query.set_edns(edns);
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    socket.send_to(&query.to_vec()?, "127.0.0.1:5353")?;
    let mut buf = [0u8; 2048];
    let (n, _) = socket.recv_from(&mut buf)?;
    let reply = Message::from_vec(&buf[..n])?;
    Ok(reply
        .answers
        .iter()
        .filter_map(|r| {
            if let RData::A(a) = &r.data {
                Some(IpAddr::V4(a.0))
            } else {
                None
            }
        })
        .collect())
}

/// A table of what the deployment contains, aligned like `birdc show` output.
pub fn topology_table(d: &Deployment) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<6} {:<8} {:>9} {:>10}  {:<28} {}\n",
        "SITE", "COUNTRY", "LAT", "LON", "UPSTREAMS", "STREAM NODES"
    ));
    for site in &d.sites {
        let peers: Vec<String> = site
            .peers
            .iter()
            .map(|p| format!("{}(AS{})", p.name, p.remote_asn))
            .collect();
        let nodes: Vec<String> = site
            .nodes
            .iter()
            .map(|n| format!("{}@{}", n.name, n.listen))
            .collect();
        out.push_str(&format!(
            "{:<6} {:<8} {:>9.2} {:>10.2}  {:<28} {}\n",
            site.name,
            site.country,
            site.latitude,
            site.longitude,
            peers.join(" "),
            nodes.join(" ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_deployment_is_valid() {
        let d = embedded().unwrap_or_else(|e| panic!("{e}"));
        let table = topology_table(&d);
        for site in ["ams", "fra", "lon"] {
            assert!(table.contains(site), "{table}");
        }
    }

    #[test]
    fn demo_deployment_and_collector_are_valid() {
        let dir = std::env::temp_dir().join(format!("demo-test-{}", std::process::id()));
        let d = demo_deployment(&dir).unwrap();
        assert!(
            d.sites
                .iter()
                .all(|s| s.peers.len() == 1 && s.peers[0].address == COLLECTOR.ip())
        );
        let c = collector(&d);
        assert!(c.check().is_empty(), "{:?}", c.check());
        assert_eq!(c.sites[0].peers.len(), 3);
        // The subscribers' key is written where the deployment says.
        let key = d.tokens[0].keys[0].resolve().unwrap();
        assert_eq!(key, DEMO_TOKEN_KEY);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sample_cities_are_in_the_database() {
        let db = geodns::geo::GeoDb::from_bytes(city_database().unwrap()).unwrap();
        let paris = db.locate("100.64.1.1".parse().unwrap()).unwrap();
        assert_eq!(paris.country.map(|c| c.to_string()).as_deref(), Some("FR"));
    }
}
