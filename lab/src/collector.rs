//! The demo's route collector, which every site's speaker peers with: BIRD when it is
//! installed (what operators run as a collector), otherwise our own speaker in passive mode,
//! so that the demo needs nothing beyond the toolchain.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bgp_speaker::speaker::SpeakerHandle;
use config::Deployment;
use ipnet::IpNet;

/// Which collector to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    /// BIRD when `bird` and `birdc` are installed, else ours.
    Auto,
    Bird,
    /// Our own speaker, passive.
    Ours,
}

/// A running collector.
pub enum Collector {
    Bird(BirdCollector),
    Ours(SpeakerHandle),
}

/// BIRD as a child process with its own configuration and control socket.
pub struct BirdCollector {
    child: Child,
    birdc: PathBuf,
    socket: PathBuf,
    version: String,
}

impl Drop for BirdCollector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A program on the PATH or where Debian puts daemons.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

impl Collector {
    /// Starts BIRD listening on `listen`, one passive session per site of `sites`
    /// (the demo deployment, whose speakers peer with `listen`). `None` when BIRD is not
    /// installed.
    pub fn start_bird(
        sites: &Deployment,
        listen: SocketAddr,
        asn: u32,
        dir: &Path,
    ) -> Result<Option<Self>> {
        let (Some(bird), Some(birdc)) = (find_program("bird"), find_program("birdc")) else {
            return Ok(None);
        };
        let mut conf = String::from(
            "# The demo's route collector: one passive session per site, keeping what it hears.\n\
             router id 10.255.0.1;\nprotocol device {}\n\
             # Loopback's route, so that the sessions' next hops resolve.\n\
             protocol direct { ipv4; interface \"lo\"; }\n",
        );
        for site in &sites.sites {
            let Some(from) = site.peers.first().and_then(|p| p.local_address) else {
                bail!(
                    "site {} has no local address toward the collector",
                    site.name
                );
            };
            conf.push_str(&format!(
                "protocol bgp {name} {{\n  local {ip} port {port} as {asn};\n  neighbor {from} as {remote};\n  \
                 passive on;\n  multihop;\n  strict bind on;\n  ipv4 {{ import all; export none; }};\n}}\n",
                name = site.name,
                ip = listen.ip(),
                port = listen.port(),
                remote = site.asn,
            ));
        }
        let conf_path = dir.join("collector-bird.conf");
        std::fs::write(&conf_path, conf)
            .with_context(|| format!("cannot write {}", conf_path.display()))?;
        let socket = dir.join("collector-bird.ctl");
        let log = std::fs::File::create(dir.join("collector-bird.log"))?;
        let child = Command::new(&bird)
            .arg("-f")
            .arg("-c")
            .arg(&conf_path)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(dir.join("collector-bird.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: Ctrl-C in the terminal reaches the demo only, which closes
            // its sessions with a Cease before it stops BIRD (else BIRD would drop them first).
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", bird.display()))?;
        let mut collector = BirdCollector {
            child,
            birdc,
            socket,
            version: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let status = collector.cli("show status");
            if let Some(line) = status.lines().find(|l| l.starts_with("BIRD ")) {
                collector.version = line.trim_end_matches(" ready.").to_string();
                break;
            }
            if let Ok(Some(exit)) = collector.child.try_wait() {
                let log =
                    std::fs::read_to_string(dir.join("collector-bird.log")).unwrap_or_default();
                bail!("BIRD exited ({exit}): {}", log.trim());
            }
            if Instant::now() > deadline {
                bail!(
                    "BIRD did not answer on {} within 5 s",
                    collector.socket.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Some(Collector::Bird(collector)))
    }

    /// What the collector is, for the status table.
    pub fn describe(&self) -> String {
        match self {
            Collector::Bird(b) => format!("{} (passive)", b.version),
            Collector::Ours(_) => "our bgp-speaker (passive; install bird2 to use BIRD)".into(),
        }
    }

    /// Prefixes received, per site.
    pub async fn received(&self) -> BTreeMap<String, Vec<String>> {
        let mut seen = BTreeMap::new();
        match self {
            Collector::Ours(handle) => {
                for peer in handle.peer_names() {
                    if let Ok(prefixes) = handle.received_prefixes(&peer).await {
                        seen.insert(peer, prefixes.iter().map(ToString::to_string).collect());
                    }
                }
            }
            Collector::Bird(bird) => {
                let (birdc, socket) = (bird.birdc.clone(), bird.socket.clone());
                let text = tokio::task::spawn_blocking(move || cli(&birdc, &socket, "show route"))
                    .await
                    .unwrap_or_default();
                for (site, prefix) in parse_routes(&text) {
                    seen.entry(site).or_insert_with(Vec::new).push(prefix);
                }
            }
        }
        seen
    }
}

impl BirdCollector {
    fn cli(&self, command: &str) -> String {
        cli(&self.birdc, &self.socket, command)
    }
}

fn cli(birdc: &Path, socket: &Path, command: &str) -> String {
    Command::new(birdc)
        .arg("-s")
        .arg(socket)
        .args(command.split_whitespace())
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// `(protocol, prefix)` of each route in `birdc show route` output: a route line starts with
/// its prefix, then the route type and `[PROTOCOL TIME ...]`; continuation lines (further
/// paths, next hops, attributes) are indented.
fn parse_routes(text: &str) -> Vec<(String, String)> {
    let mut routes = Vec::new();
    let mut prefix: Option<String> = None;
    for line in text.lines() {
        let starts_route = !line.starts_with([' ', '\t']);
        let mut words = line.split_whitespace();
        if starts_route {
            prefix = words
                .next()
                .filter(|w| w.parse::<IpNet>().is_ok())
                .map(str::to_string);
        }
        let Some(p) = &prefix else { continue };
        // Further paths for the same prefix: `TYPE [PROTOCOL ...` on an indented line.
        let is_path = starts_route
            || line
                .split_whitespace()
                .nth(1)
                .is_some_and(|w| w.starts_with('['));
        if let Some(protocol) = line
            .split_once('[')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            && is_path
        {
            routes.push((protocol.to_string(), p.clone()));
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_read_from_birdc_output() {
        let text = "BIRD 2.0.12 ready.\nTable master4:\n\
                    198.51.100.0/24      unicast [ams 12:15:52.429] * (100) [AS65001i]\n\
                    \tvia 127.0.10.1 on lo\n\
                    \x20                    unreachable [lon 12:15:53.000 from 127.0.30.1] (100) [AS65003i]\n\
                    \tvia 127.0.30.1 on lo\n\
                    \tBGP.as_path: 65003\n\
                    203.0.113.0/24       unicast [fra 12:15:52.429] * (100) [AS65002i]\n";
        assert_eq!(
            parse_routes(text),
            [
                ("ams".to_string(), "198.51.100.0/24".to_string()),
                ("lon".to_string(), "198.51.100.0/24".to_string()),
                ("fra".to_string(), "203.0.113.0/24".to_string()),
            ]
        );
    }
}
