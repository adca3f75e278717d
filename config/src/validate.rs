//! Semantic rules: everything the TOML types alone cannot express (references between sections,
//! ranges, combinations that make no sense). Each finding names the key to fix and says what was
//! expected; `Locator` turns it into a position.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::diagnostic::{Finding, Findings, KeyPath};
use crate::dns::{Record, RecordType, Zone};
use crate::service::{AnswerMode, ChannelSource, DegradeAction};
use crate::site::{HEARTBEAT_MAX, HEARTBEAT_MIN};
use crate::types::{ControlEndpoint, Secret};
use crate::{CheckKind, Deployment};

pub(crate) fn validate(d: &Deployment) -> Vec<Finding> {
    let mut f = Findings::default();
    let root = KeyPath::root();
    let ctx = Context::new(d);

    unique_names(
        &mut f,
        &root.key("sites"),
        d.sites.iter().map(|s| s.name.as_str()),
        "site",
    );
    unique_names(
        &mut f,
        &root.key("services"),
        d.services.iter().map(|s| s.name.as_str()),
        "service",
    );
    unique_names(
        &mut f,
        &root.key("checks"),
        d.checks.iter().map(|c| c.name.as_str()),
        "check profile",
    );
    unique_names(
        &mut f,
        &root.key("channels"),
        d.channels.iter().map(|c| c.name.as_str()),
        "channel",
    );
    unique_names(
        &mut f,
        &root.key("tokens"),
        d.tokens.iter().map(|t| t.name.as_str()),
        "token profile",
    );
    unique_node_names(&mut f, d);
    for i in 0..d.tokens.len() {
        tokens(&mut f, &root.key("tokens").index(i), &d.tokens[i]);
    }

    for i in 0..d.sites.len() {
        sites(&mut f, &ctx, &root.key("sites").index(i), i);
    }
    for i in 0..d.services.len() {
        services(&mut f, &ctx, &root.key("services").index(i), i);
    }
    for i in 0..d.checks.len() {
        checks(&mut f, &ctx, &root.key("checks").index(i), i);
    }
    for i in 0..d.channels.len() {
        channels(&mut f, &ctx, &root.key("channels").index(i), i);
    }
    if d.sites.is_empty() {
        f.push(
            root.key("sites"),
            "no sites: expected at least one [[sites]] table",
        );
    }
    if d.dns.is_some() {
        dns(&mut f, &ctx, &root.key("dns"));
    }
    f.into_vec()
}

/// Lookups shared by the rules.
struct Context<'a> {
    d: &'a Deployment,
    services: HashMap<&'a str, usize>,
    checks: HashMap<&'a str, usize>,
    channels: HashMap<&'a str, usize>,
    sites: HashMap<&'a str, usize>,
}

impl<'a> Context<'a> {
    fn new(d: &'a Deployment) -> Self {
        fn index<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
            let mut map = HashMap::new();
            for (i, name) in names.enumerate() {
                map.entry(name).or_insert(i);
            }
            map
        }
        Self {
            d,
            services: index(d.services.iter().map(|s| s.name.as_str())),
            checks: index(d.checks.iter().map(|c| c.name.as_str())),
            channels: index(d.channels.iter().map(|c| c.name.as_str())),
            sites: index(d.sites.iter().map(|s| s.name.as_str())),
        }
    }

    fn known(map: &HashMap<&str, usize>) -> String {
        let mut names: Vec<&str> = map.keys().copied().collect();
        names.sort_unstable();
        if names.is_empty() {
            "none is defined".into()
        } else {
            format!("expected one of: {}", names.join(", "))
        }
    }

    fn require(&self, f: &mut Findings, key: KeyPath, what: &str, name: &str) {
        let map = match what {
            "service" => &self.services,
            "check profile" => &self.checks,
            "channel" => &self.channels,
            _ => &self.sites,
        };
        if !map.contains_key(name) {
            f.push(
                key,
                format!("unknown {what} {name:?}: {}", Self::known(map)),
            );
        }
    }
}

fn valid_name(f: &mut Findings, key: KeyPath, name: &str, what: &str) {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        f.push(
            key,
            format!(
                "invalid {what} name {name:?}: expected 1-63 characters from a-z, 0-9, '-' and '_'"
            ),
        );
    }
}

fn unique_names<'a>(
    f: &mut Findings,
    list: &KeyPath,
    names: impl Iterator<Item = &'a str>,
    what: &str,
) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.enumerate() {
        let key = list.index(i).key("name");
        valid_name(f, key.clone(), name, what);
        if let Some(first) = seen.insert(name, i) {
            seen.insert(name, first);
            f.push(
                key,
                format!("duplicate {what} name {name:?}: already used by {list}[{first}]; names must be unique"),
            );
        }
    }
}

fn unique_node_names(f: &mut Findings, d: &Deployment) {
    let mut seen: HashMap<&str, KeyPath> = HashMap::new();
    for (s, site) in d.sites.iter().enumerate() {
        let nodes = KeyPath::root().key("sites").index(s).key("nodes");
        for (n, node) in site.nodes.iter().enumerate() {
            let key = nodes.index(n).key("name");
            valid_name(f, key.clone(), &node.name, "node");
            match seen.get(node.name.as_str()) {
                Some(first) => f.push(
                    key,
                    format!(
                        "duplicate node name {:?}: already used by {first}; node names must be unique across all sites",
                        node.name
                    ),
                ),
                None => {
                    seen.insert(&node.name, key);
                }
            }
        }
        let peers = KeyPath::root().key("sites").index(s).key("peers");
        unique_names(
            f,
            &peers,
            site.peers.iter().map(|p| p.name.as_str()),
            "peer",
        );
    }
}

fn asn(f: &mut Findings, key: KeyPath, asn: u32) {
    // 0 is reserved (RFC 7607) and 23456 is AS_TRANS (RFC 6793): neither can be a real AS.
    if asn == 0 || asn == 23456 {
        f.push(
            key,
            format!("invalid AS number {asn}: expected 1-4294967295 except 23456 (AS_TRANS)"),
        );
    }
}

fn secret(f: &mut Findings, key: KeyPath, secret: &Secret) {
    match (&secret.file, &secret.env) {
        (Some(_), Some(_)) => f.push(
            key,
            "secret has both `file` and `env`: expected exactly one",
        ),
        (None, None) => f.push(
            key,
            "secret has neither `file` nor `env`: expected exactly one",
        ),
        _ => {}
    }
}

/// An admin API that changes state (`what`) is open only on loopback; elsewhere it needs a
/// token (`admin_token` beside `admin` under `key`).
fn admin_api(
    f: &mut Findings,
    key: &KeyPath,
    addr: std::net::SocketAddr,
    token: Option<&Secret>,
    what: &str,
) {
    match token {
        Some(t) => secret(f, key.key("admin_token"), t),
        None if !addr.ip().is_loopback() => f.push(
            key.key("admin"),
            format!("admin API on {addr} takes state-changing requests ({what}) and would be reachable from the network without credentials: expected `admin_token = {{ env = \"...\" }}` or a loopback address"),
        ),
        None => {}
    }
}

fn sites(f: &mut Findings, ctx: &Context<'_>, key: &KeyPath, i: usize) {
    let d = ctx.d;
    let site = &d.sites[i];
    if !(-90.0..=90.0).contains(&site.latitude) {
        f.push(
            key.key("latitude"),
            format!(
                "latitude {} out of range: expected -90 to 90 degrees",
                site.latitude
            ),
        );
    }
    if !(-180.0..=180.0).contains(&site.longitude) {
        f.push(
            key.key("longitude"),
            format!(
                "longitude {} out of range: expected -180 to 180 degrees",
                site.longitude
            ),
        );
    }
    asn(f, key.key("asn"), site.asn);
    if site.router_id.is_unspecified() {
        f.push(
            key.key("router_id"),
            "router id 0.0.0.0 is not allowed: expected a non-zero IPv4 address",
        );
    }

    for (p, peer) in site.peers.iter().enumerate() {
        let key = key.key("peers").index(p);
        asn(f, key.key("remote_asn"), peer.remote_asn);
        if peer.hold_time == 1 || peer.hold_time == 2 {
            f.push(
                key.key("hold_time"),
                format!(
                    "hold time {} s is not allowed: expected 0 or at least 3 seconds (RFC 4271)",
                    peer.hold_time
                ),
            );
        }
        if let Some(ka) = peer.keepalive
            && peer.hold_time != 0
            && (ka == 0 || ka >= peer.hold_time)
        {
            f.push(
                key.key("keepalive"),
                format!(
                    "keepalive {ka} s must be between 1 and the hold time ({} s)",
                    peer.hold_time
                ),
            );
        }
        if peer.ttl_security && peer.multihop.is_some() {
            f.push(key.key("ttl_security"), "ttl_security and multihop are mutually exclusive: GTSM requires TTL 255; expected one of them");
        }
        if let Some(bfd) = &peer.bfd {
            let bfd_key = key.key("bfd");
            if peer.local_address.is_none() {
                f.push(
                    bfd_key.clone(),
                    "bfd needs local_address: the BFD session is sent from it (expected this site's address on the link to the router)",
                );
            }
            if peer.multihop.is_some_and(|ttl| ttl > 1) {
                f.push(
                    key.key("multihop"),
                    "BFD here is single hop (RFC 5881): the router must be on a directly connected link; expected no multihop, or multihop = 1",
                );
            }
            let interval = bfd.interval.get();
            if interval < std::time::Duration::from_millis(10)
                || interval > std::time::Duration::from_secs(60)
            {
                f.push(
                    bfd_key.key("interval"),
                    format!(
                        "interval {} is out of range: expected 10ms to 60s (e.g. \"300ms\")",
                        bfd.interval
                    ),
                );
            }
            if bfd.multiplier == 0 {
                f.push(
                    bfd_key.key("multiplier"),
                    "multiplier 0 is not allowed: expected 1-255 (3 is usual)",
                );
            }
        }
        if peer.multihop == Some(0) {
            f.push(
                key.key("multihop"),
                "multihop TTL 0 is not allowed: expected 1-255",
            );
        }
        if peer.address.is_unspecified() || peer.address.is_multicast() {
            f.push(
                key.key("address"),
                format!("peer address {} is not a unicast address", peer.address),
            );
        }
        if peer.port == 0 {
            f.push(key.key("port"), "port 0 is not allowed: expected 1-65535");
        }
        if peer.connect_retry.get() < std::time::Duration::from_secs(1) {
            f.push(
                key.key("connect_retry"),
                format!(
                    "connect_retry {} would hammer a peer that refuses: expected at least 1s",
                    peer.connect_retry
                ),
            );
        }
        if let Some(local) = peer.local_address
            && local.is_ipv4() != peer.address.is_ipv4()
        {
            f.push(
                key.key("local_address"),
                format!(
                    "local address {local} and peer address {} are of different families",
                    peer.address
                ),
            );
        }
        if let Some(m) = &peer.md5_key {
            secret(f, key.key("md5_key"), m);
        }
        if let Some(services) = &peer.export.services {
            for (s, name) in services.iter().enumerate() {
                ctx.require(
                    f,
                    key.key("export").key("services").index(s),
                    "service",
                    name,
                );
            }
        }
        if peer.export.local_pref.is_some() && peer.remote_asn != site.asn {
            f.push(key.key("export").key("local_pref"), "local_pref is only sent to iBGP peers: expected remote_asn equal to the site's asn, or no local_pref");
        }
        if peer.import.max_prefixes.is_some() && !peer.import.enabled {
            f.push(
                key.key("import").key("max_prefixes"),
                "max_prefixes needs import enabled: set `enabled = true` or remove it",
            );
        }
        // An IPv6 prefix over an IPv4 session needs an IPv6 next hop we cannot guess.
        let needs_v6_next_hop = peer.address.is_ipv4()
            && ctx.d.services.iter().any(|svc| {
                exported(peer, &svc.name)
                    && svc
                        .prefixes
                        .iter()
                        .any(|p| matches!(p, ipnet::IpNet::V6(_)))
            });
        if needs_v6_next_hop && peer.next_hop_v6.is_none() {
            f.push(
                key.key("next_hop_v6"),
                "IPv6 prefixes are exported over an IPv4 session: expected `next_hop_v6`",
            );
        }
    }

    for (n, node) in site.nodes.iter().enumerate() {
        let key = key.key("nodes").index(n);
        if node.ipv4.is_none() && node.ipv6.is_none() {
            f.push(
                key.clone(),
                "node has no address: expected `ipv4`, `ipv6` or both",
            );
        }
        if node.max_connections == 0 {
            f.push(
                key.key("max_connections"),
                "max_connections 0 would serve nobody: expected at least 1",
            );
        }
        client_limits(f, &key.key("client_limits"), &node.client_limits);
        for (name, value) in [
            ("header_timeout", node.header_timeout),
            ("idle_timeout", node.idle_timeout),
        ] {
            if value.get() < std::time::Duration::from_millis(100) {
                f.push(
                    key.key(name),
                    format!("{name} below 100ms would cut off every viewer: expected a duration such as \"10s\""),
                );
            }
        }
        edge(f, d, &key, node);
        if node.capacity_mbps == 0 {
            f.push(
                key.key("capacity_mbps"),
                "capacity 0 is not allowed: expected megabits per second, at least 1",
            );
        }
        if node.services.is_empty() {
            f.push(
                key.key("services"),
                "node carries no service: expected at least one service name",
            );
        }
        for (s, name) in node.services.iter().enumerate() {
            ctx.require(f, key.key("services").index(s), "service", name);
        }
        if let Some(admin) = node.admin {
            admin_api(f, &key, admin, node.admin_token.as_ref(), "drain");
        } else if node.fault_injection {
            f.push(
                key.key("fault_injection"),
                "fault injection is offered on the admin API, and the node has none: expected `admin`",
            );
        }
        if let Some(check) = &node.check {
            ctx.require(f, key.key("check"), "check profile", check);
        }
        if let Some(url) = &node.status_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            f.push(
                key.key("status_url"),
                format!("invalid status URL {url:?}: expected http:// or https://"),
            );
        }
    }

    if let Some(ControlEndpoint::Tcp(addr)) = &site.speaker.control {
        if !addr.ip().is_loopback() {
            f.push(key.key("speaker").key("control"), format!("control API on {addr} would be reachable from the network: expected a loopback address or a unix socket"));
        }
        if site.speaker.control_token.is_none() {
            f.push(key.key("speaker").key("control"), "a TCP control endpoint needs a token: add `control_token = { env = \"...\" }` or use \"unix:/path\"");
        }
    }
    if let Some(t) = &site.speaker.control_token {
        secret(f, key.key("speaker").key("control_token"), t);
    }
    if site.peers.iter().any(|p| p.passive) && site.speaker.listen.is_none() {
        f.push(
            key.key("speaker"),
            "passive peers need a listening speaker: expected `speaker.listen`",
        );
    }
    if let Some(t) = &site.healthd.feed_token {
        secret(f, key.key("healthd").key("feed_token"), t);
    }
    if let Some(source) = site.healthd.probe_source
        && (source.is_unspecified() || source.is_multicast())
    {
        f.push(
            key.key("healthd").key("probe_source"),
            format!("probe_source {source} cannot send probes: expected an address of this host"),
        );
    }
    admin_api(
        f,
        &key.key("healthd"),
        site.healthd.admin,
        site.healthd.admin_token.as_ref(),
        "drain",
    );

    let settle = site.healthd.withdraw_settle.get();
    if settle > std::time::Duration::from_secs(1) {
        f.push(
            key.key("healthd").key("withdraw_settle"),
            format!(
                "withdraw_settle {} would hold every withdraw past the failure table's one-second bound: expected at most 1s (the feed latency between sites, e.g. \"150ms\")",
                site.healthd.withdraw_settle
            ),
        );
    }

    let heartbeat = site.healthd.heartbeat.get();
    if !(HEARTBEAT_MIN..=HEARTBEAT_MAX).contains(&heartbeat) {
        f.push(
            key.key("healthd").key("heartbeat"),
            format!(
                "heartbeat {} is out of range: expected between {}ms and {}s (e.g. \"50ms\")",
                site.healthd.heartbeat,
                HEARTBEAT_MIN.as_millis(),
                HEARTBEAT_MAX.as_secs()
            ),
        );
    }
    if !(2..=100).contains(&site.healthd.heartbeat_misses) {
        f.push(
            key.key("healthd").key("heartbeat_misses"),
            format!(
                "heartbeat_misses {} is out of range: expected 2 to 100 (one missed heartbeat is a lost packet, not a dead node)",
                site.healthd.heartbeat_misses
            ),
        );
    }

    // The lease must outlive a probe round, or every healthy route would expire between renewals.
    let lease = site.healthd.lease.get();
    let mut profiles: Vec<&str> = site
        .nodes
        .iter()
        .flat_map(|n| {
            let own = n.check.as_deref();
            n.services
                .iter()
                .filter_map(|s| d.service(s).map(|svc| svc.check.as_str()))
                .chain(own)
                .collect::<Vec<_>>()
        })
        .collect();
    profiles.sort_unstable();
    profiles.dedup();
    for name in profiles {
        if let Some(profile) = d.check_profile(name)
            && lease < profile.interval.get()
        {
            f.push(
                    key.key("healthd").key("lease"),
                    format!(
                        "lease {} is shorter than the interval {} of check profile {name:?}: expected a lease of at least the check interval (3 intervals or more is safer)",
                        site.healthd.lease, profile.interval
                    ),
                );
        }
    }
}

fn exported(peer: &crate::Peer, service: &str) -> bool {
    match &peer.export.services {
        None => true,
        Some(list) => list.iter().any(|s| s == service),
    }
}

fn services(f: &mut Findings, ctx: &Context<'_>, key: &KeyPath, i: usize) {
    let d = ctx.d;
    let svc = &d.services[i];
    ctx.require(f, key.key("check"), "check profile", &svc.check);
    for (c, channel) in svc.channels.iter().enumerate() {
        ctx.require(f, key.key("channels").index(c), "channel", channel);
    }
    if svc.hostnames.is_empty() {
        f.push(
            key.key("hostnames"),
            "service has no hostname: expected at least one",
        );
    }
    let zones: Vec<&Zone> = d.dns.iter().flat_map(|dns| dns.zones.iter()).collect();
    for (h, host) in svc.hostnames.iter().enumerate() {
        let hkey = key.key("hostnames").index(h);
        if let Err(e) = check_domain(host) {
            f.push(hkey, format!("invalid hostname {host:?}: {e}"));
            continue;
        }
        if d.dns.is_some() && !zones.iter().any(|z| in_zone(host, &z.origin)) {
            let origins: Vec<&str> = zones.iter().map(|z| z.origin.as_str()).collect();
            f.push(
                hkey,
                format!(
                    "hostname {host:?} is outside every zone: expected a name under one of [{}]",
                    origins.join(", ")
                ),
            );
        }
    }
    for (p, prefix) in svc.prefixes.iter().enumerate() {
        if prefix.trunc() != *prefix {
            f.push(
                key.key("prefixes").index(p),
                format!(
                    "prefix {prefix} has host bits set: expected the network address {}",
                    prefix.trunc()
                ),
            );
        }
    }
    if svc.answer == AnswerMode::Anycast && svc.anycast_addresses.is_empty() {
        f.push(
            key.key("anycast_addresses"),
            "answer mode \"anycast\" needs the addresses to answer: expected `anycast_addresses`",
        );
    }
    for (a, addr) in svc.anycast_addresses.iter().enumerate() {
        if !svc.prefixes.iter().any(|p| p.contains(addr)) {
            f.push(
                key.key("anycast_addresses").index(a),
                format!("anycast address {addr} is not inside any of the service's prefixes"),
            );
        }
    }
    if svc.answer_count == 0 {
        f.push(
            key.key("answer_count"),
            "answer_count 0 would give empty answers: expected at least 1",
        );
    }
    if svc.min_healthy_nodes == 0 {
        f.push(
            key.key("min_healthy_nodes"),
            "min_healthy_nodes 0 would announce a site with no healthy node: expected at least 1",
        );
    }
    if !(svc.spill_load > 0.0 && svc.spill_load <= 1.0) {
        f.push(key.key("spill_load"), format!("spill_load {} out of range: expected a fraction of capacity, above 0 and at most 1", svc.spill_load));
    }
    degrade(f, &key.key("degrade"), svc);
    if let Some(steering) = &svc.content_steering {
        content_steering(f, d, &key.key("content_steering"), &svc.name, steering);
    }
    if let Some(c) = &svc.canary {
        if svc.answer == AnswerMode::Anycast {
            f.push(
                key.key("canary"),
                "a canary divides answers between nodes, and answer mode \"anycast\" answers addresses: expected answer = \"nodes\" (or no canary)",
            );
        }
        canary(f, d, &key.key("canary"), &svc.name, c);
    }

    // A prefix nobody announces is a configuration mistake: the service would be unreachable by
    // anycast (and in anycast answer mode, by DNS too).
    if !svc.prefixes.is_empty() {
        let announced = d.sites.iter().any(|site| {
            site.nodes.iter().any(|n| n.services.contains(&svc.name))
                && site.peers.iter().any(|p| exported(p, &svc.name))
        });
        if !announced {
            f.push(key.key("prefixes"), format!("service {:?} has prefixes but no site announces them: expected a site with nodes carrying the service and a peer exporting it", svc.name));
        }
    }
}

fn canary(
    f: &mut Findings,
    d: &Deployment,
    key: &KeyPath,
    service: &str,
    canary: &crate::service::Canary,
) {
    if !(canary.share > 0.0 && canary.share <= 1.0) {
        f.push(
            key.key("share"),
            format!(
                "share {} out of range: expected a fraction of the client networks, above 0 and at most 1 (0.05 sends 5%)",
                canary.share
            ),
        );
    }
    if canary.version.trim().is_empty() {
        f.push(
            key.key("version"),
            "empty version: expected the `version` label of the canary nodes",
        );
        return;
    }
    let carrying = || {
        d.sites
            .iter()
            .flat_map(|s| &s.nodes)
            .filter(|n| n.services.iter().any(|s| s == service))
    };
    if !carrying().any(|n| canary.includes(n.version.as_deref())) {
        let mut versions: Vec<&str> = carrying().filter_map(|n| n.version.as_deref()).collect();
        versions.sort_unstable();
        versions.dedup();
        f.push(
            key.key("version"),
            format!(
                "no node carrying service {service:?} has version {:?}: expected the `version` label of at least one of its nodes (labels in use: [{}])",
                canary.version,
                versions.join(", ")
            ),
        );
    }
}

fn content_steering(
    f: &mut Findings,
    d: &Deployment,
    key: &KeyPath,
    service: &String,
    steering: &crate::service::ContentSteering,
) {
    let web = |text: &str| -> Result<url::Url, String> {
        let url = url::Url::parse(text).map_err(|e| e.to_string())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("scheme {:?} is not http or https", url.scheme()));
        }
        if url.host().is_none() {
            return Err("it names no host".into());
        }
        if url.fragment().is_some() {
            return Err("it has a fragment".into());
        }
        Ok(url)
    };
    if let Err(e) = web(&steering.server) {
        f.push(
            key.key("server"),
            format!(
                "invalid steering server URL {:?}: {e}: expected an absolute http or https URL",
                steering.server
            ),
        );
    }
    let placeholder = crate::service::SITE_PLACEHOLDER;
    if let Some(pathway) = &steering.pathway
        && !pathway.contains(placeholder)
    {
        f.push(
            key.key("pathway"),
            format!(
                "pathway {pathway:?} does not name the site: expected {placeholder} where each site's name goes (\"https://{placeholder}.live.example.net\")"
            ),
        );
    }
    for site in steering.sites.keys() {
        if d.site(site).is_none() {
            f.push(
                key.key("sites").key(site),
                format!("no site {site:?} in the deployment: expected one of its sites' names"),
            );
        }
    }
    let carrying = d
        .sites
        .iter()
        .filter(|s| s.nodes.iter().any(|n| n.services.contains(service)));
    for site in carrying {
        let key = if steering.sites.contains_key(&site.name) {
            key.key("sites").key(&site.name)
        } else {
            key.key("pathway")
        };
        let url = match steering.pathway_url(&site.name) {
            Some(url) => url,
            None => {
                f.push(
                    key,
                    format!("site {:?} carries the service but has no pathway: expected `pathway` with {placeholder}, or the site in `sites`", site.name),
                );
                continue;
            }
        };
        match web(&url) {
            Ok(u) if u.query().is_some() => f.push(
                key,
                format!("pathway {url:?} has a query: expected a base URL the channels' paths are added to"),
            ),
            Ok(_) => {}
            Err(e) => f.push(
                key,
                format!("site {:?}'s pathway {url:?} is not a URL: {e}: expected an absolute http or https URL", site.name),
            ),
        }
    }
    if steering.ttl == 0 || steering.changing_ttl == 0 {
        f.push(
            key.key(if steering.ttl == 0 {
                "ttl"
            } else {
                "changing_ttl"
            }),
            "a steering TTL of 0 has players reload without pause: expected at least 1 second",
        );
    }
    if d.dns
        .as_ref()
        .is_some_and(|dns| dns.content_steering.is_none())
    {
        f.push(
            key.key("server"),
            "no geodns answers steering requests: expected [dns.content_steering] with `listen`",
        );
    }
}

fn degrade(f: &mut Findings, key: &KeyPath, svc: &crate::Service) {
    let p = &svc.degrade;
    let shaping = p.prepend > 0
        || p.med.is_some()
        || !p.communities.is_empty()
        || !p.large_communities.is_empty();
    match p.action {
        DegradeAction::Withdraw => {
            if shaping || p.delay.is_some() {
                f.push(key.key("action"), "action \"withdraw\" takes no prepend, med, communities or delay: expected action = \"announce\" or \"graceful-shutdown\" to use them");
            }
        }
        DegradeAction::Announce => {
            if !shaping {
                f.push(key.key("action"), "action \"announce\" changes nothing without prepend, med, communities or large_communities: expected at least one");
            }
            if p.delay.is_some() {
                f.push(
                    key.key("delay"),
                    "delay applies to action \"graceful-shutdown\" only",
                );
            }
        }
        DegradeAction::GracefulShutdown => {
            if shaping {
                f.push(key.key("action"), "action \"graceful-shutdown\" takes only `delay`: expected no prepend, med or communities");
            }
        }
    }
}

fn checks(f: &mut Findings, ctx: &Context<'_>, key: &KeyPath, i: usize) {
    let c = &ctx.d.checks[i];
    if c.rise == 0 {
        f.push(
            key.key("rise"),
            "rise 0 is not allowed: expected at least 1 consecutive success",
        );
    }
    if c.fall == 0 {
        f.push(
            key.key("fall"),
            "fall 0 is not allowed: expected at least 1 consecutive failure",
        );
    }
    if c.interval.get().is_zero() {
        f.push(
            key.key("interval"),
            "interval 0 is not allowed: expected a positive duration",
        );
    }
    if c.timeout.get().is_zero() || c.timeout > c.interval {
        f.push(
            key.key("timeout"),
            format!(
                "timeout {} must be positive and at most the interval {}",
                c.timeout, c.interval
            ),
        );
    }
    if !(0.0..1.0).contains(&c.jitter) {
        f.push(
            key.key("jitter"),
            format!(
                "jitter {} out of range: expected a fraction from 0 up to (not including) 1",
                c.jitter
            ),
        );
    }
    if let Some(dmp) = &c.damping {
        if !(dmp.reuse > 0.0 && dmp.reuse < dmp.suppress && dmp.penalty > 0.0) {
            f.push(
                key.key("damping"),
                "damping needs 0 < reuse < suppress and a positive penalty",
            );
        }
        if dmp.half_life.get().is_zero() {
            f.push(
                key.key("damping").key("half_life"),
                "half_life 0 is not allowed: expected a positive duration",
            );
        }
    }
    for kind in c.parameter_tables() {
        if kind != c.kind {
            f.push(key.key(kind.as_str()), format!("parameters for a {} check in a profile of kind {:?}: expected [{}] parameters or none", kind.as_str(), c.kind.as_str(), c.kind.as_str()));
        }
    }
    match c.kind {
        CheckKind::Exec if c.exec.as_ref().is_none_or(|e| e.command.is_empty()) => {
            f.push(key.key("exec").key("command"), "an exec check needs a command: expected `exec.command = [\"/path/prog\", \"arg\"]`");
        }
        CheckKind::Dns if c.dns.is_none() => {
            f.push(
                key.key("dns"),
                "a dns check needs the name to query: expected `dns.name`",
            );
        }
        _ => {}
    }
    if let Some(hls) = &c.hls {
        for (n, ch) in hls.channels.iter().flatten().enumerate() {
            ctx.require(f, key.key("hls").key("channels").index(n), "channel", ch);
        }
        if hls.max_stall_factor < 1.0 {
            f.push(key.key("hls").key("max_stall_factor"), "max_stall_factor below 1 would fail healthy streams: expected at least 1 target duration");
        }
    }
}

fn channels(f: &mut Findings, ctx: &Context<'_>, key: &KeyPath, i: usize) {
    let c = &ctx.d.channels[i];
    if c.renditions.is_empty() {
        feeds(f, key, c.source, c.primary, c.backup);
    } else {
        if c.primary.is_some() || c.backup.is_some() {
            f.push(
                key.key("primary"),
                "a channel with renditions takes its feeds per rendition: expected `primary` and `backup` inside each [[channels.renditions]]",
            );
        }
        let list = key.key("renditions");
        unique_names(
            f,
            &list,
            c.renditions.iter().map(|r| r.name.as_str()),
            "rendition",
        );
        for (r, rendition) in c.renditions.iter().enumerate() {
            feeds(
                f,
                &list.index(r),
                c.source,
                rendition.primary,
                rendition.backup,
            );
        }
        // Every feed of the channel is a socket of its own (a rendition's own primary and
        // backup being equal is reported above).
        let mut seen: HashMap<SocketAddr, (usize, KeyPath)> = HashMap::new();
        for (r, rendition) in c.renditions.iter().enumerate() {
            for (which, addr) in [("primary", rendition.primary), ("backup", rendition.backup)] {
                let Some(addr) = addr else { continue };
                let here = list.index(r).key(which);
                match seen.get(&addr) {
                    Some((first, at)) if *first != r => f.push(
                        here,
                        format!("feed {addr} is already {at}: expected each rendition's feeds on their own address or port"),
                    ),
                    Some(_) => {}
                    None => {
                        seen.insert(addr, (r, here));
                    }
                }
            }
        }
    }
    if let Some(profile) = &c.token
        && ctx.d.token_profile(profile).is_none()
    {
        let mut names: Vec<&str> = ctx.d.tokens.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        f.push(
            key.key("token"),
            format!(
                "unknown token profile {profile:?}: expected one of the [[tokens]] ({})",
                if names.is_empty() {
                    "none is defined".to_owned()
                } else {
                    names.join(", ")
                }
            ),
        );
    }
    if c.segment_duration.get().as_millis() < 100 {
        f.push(
            key.key("segment_duration"),
            "segment_duration below 100ms: expected a target such as \"2s\"",
        );
    }
    if c.window < 3 {
        f.push(
            key.key("window"),
            format!(
                "window {} is too short for players: expected at least 3 segments",
                c.window
            ),
        );
    }
}

/// An edge's settings against its role and the services it carries.
fn edge(f: &mut Findings, d: &Deployment, key: &KeyPath, node: &crate::Node) {
    use crate::site::NodeRole;
    match (node.role, &node.edge) {
        (NodeRole::Origin, Some(_)) => f.push(
            key.key("edge"),
            "`edge` settings on an origin: expected role = \"edge\" (or no `edge`)",
        ),
        (NodeRole::Edge, settings) => {
            let origins = settings.as_ref().map_or(&[][..], |e| e.origins.as_slice());
            let anycast = node
                .services
                .iter()
                .filter_map(|s| d.service(s))
                .any(|s| !s.anycast_addresses.is_empty());
            if origins.is_empty() && !anycast {
                f.push(
                    key.key("role"),
                    "an edge with nowhere to fetch from: expected `edge.origins`, or a service with `anycast_addresses` (the anycast origin)",
                );
            }
            if origins.contains(&node.listen) || origins.contains(&node.reach()) {
                f.push(
                    key.key("edge").key("origins"),
                    format!(
                        "{} is the edge's own listen address: it would fetch from itself",
                        node.listen
                    ),
                );
            }
            if let Some(e) = settings.as_ref() {
                if e.cache_mib == 0 {
                    f.push(
                        key.key("edge").key("cache_mib"),
                        "a cache of 0 MiB keeps nothing: expected at least 1",
                    );
                }
                if e.playlist_stale.get() < e.playlist_ttl.get() {
                    f.push(
                        key.key("edge").key("playlist_stale"),
                        "playlist_stale shorter than playlist_ttl: expected at least the TTL",
                    );
                }
                if let Some(disk) = &e.disk {
                    if disk.mib == 0 {
                        f.push(
                            key.key("edge").key("disk").key("mib"),
                            "a disk tier of 0 MiB keeps nothing: expected at least 1 (or no `disk`)",
                        );
                    }
                    if !disk.path.is_absolute() {
                        f.push(
                            key.key("edge").key("disk").key("path"),
                            format!(
                                "{} is relative: expected an absolute directory of the edge's own",
                                disk.path.display()
                            ),
                        );
                    }
                }
            }
        }
        (NodeRole::Origin, None) => {}
    }
}

fn tokens(f: &mut Findings, key: &KeyPath, t: &crate::token::TokenProfile) {
    use crate::token::TokenKind;
    if t.keys.is_empty() {
        f.push(
            key.key("keys"),
            "no key: expected at least one (`keys = [{ env = \"VAR\" }]` or `{ file = \"PATH\" }`), newest first",
        );
    }
    for (k, secret) in t.keys.iter().enumerate() {
        if secret.file.is_none() && secret.env.is_none() {
            f.push(
                key.key("keys").index(k),
                "key with neither `file` nor `env`: expected where to read it",
            );
        }
    }
    let param_ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    };
    if !param_ok(t.param()) {
        f.push(
            key.key("param"),
            format!(
                "parameter name {:?}: expected letters, digits, '_', '-' or '.'",
                t.param()
            ),
        );
    }
    match t.kind {
        TokenKind::EdgeAuth => {
            if t.expression.is_some() || t.expires_param.is_some() {
                f.push(
                    key.key("expression"),
                    "`expression` and `expires_param` are for kind = \"secure-link\"",
                );
            }
        }
        TokenKind::SecureLink => {
            match &t.expression {
                None => f.push(
                    key.key("expression"),
                    "kind \"secure-link\" needs the signed text: expected `expression`, such as \"$secure_link_expires$uri$remote_addr $secret\"",
                ),
                Some(e) if !e.contains("$secret") => f.push(
                    key.key("expression"),
                    "expression without $secret: anyone could compute the token; expected the key in it as $secret",
                ),
                Some(_) => {}
            }
            if !param_ok(t.expires_param()) {
                f.push(
                    key.key("expires_param"),
                    "expected letters, digits, '_', '-' or '.'",
                );
            }
        }
    }
}

/// The feeds of a channel or of one of its renditions, against the channel's source.
fn feeds(
    f: &mut Findings,
    key: &KeyPath,
    source: ChannelSource,
    primary: Option<SocketAddr>,
    backup: Option<SocketAddr>,
) {
    match source {
        ChannelSource::Builtin => {
            if primary.is_some() || backup.is_some() {
                let at = if primary.is_some() {
                    "primary"
                } else {
                    "backup"
                };
                f.push(key.key(at), "a builtin channel takes no `primary` or `backup` feed: expected source = \"udp\" to use them");
            }
        }
        ChannelSource::Udp => {
            if primary.is_none() {
                f.push(
                    key.key("primary"),
                    "a udp channel needs its primary feed: expected `primary = \"ADDR:PORT\"`",
                );
            }
            if primary.is_some() && primary == backup {
                f.push(
                    key.key("backup"),
                    "backup feed is the same as the primary: expected a different address or port",
                );
            }
        }
    }
}

/// The rate limiter's settings: limits that can be met, prefixes that group addresses, a table
/// of a size the limiter can index.
fn rate_limit(f: &mut Findings, key: &KeyPath, rl: &crate::dns::RateLimit) {
    prefix_rate(f, key, &rl.buckets(), "responses");
    if rl.slip > 100 {
        f.push(
            key.key("slip"),
            format!(
                "slip {} out of range: expected 0 (drop every limited response) to 100",
                rl.slip
            ),
        );
    }
}

fn client_limits(f: &mut Findings, key: &KeyPath, limits: &crate::site::ClientLimits) {
    prefix_rate(f, key, &limits.buckets(), "requests");
    if limits.connections == 0 {
        f.push(
            key.key("connections"),
            "connections 0 would refuse every viewer: expected at least 1 (or enabled = false)",
        );
    }
    for (t, net) in limits.trusted.iter().enumerate() {
        if net.trunc() != *net {
            f.push(
                key.key("trusted").index(t),
                format!(
                    "{net} has host bits set: expected a network address such as {}",
                    net.trunc()
                ),
            );
        }
    }
}

/// The checks every limiter of token buckets per client prefix shares (`what` it counts).
fn prefix_rate(f: &mut Findings, key: &KeyPath, rl: &crate::types::PrefixRate, what: &str) {
    if rl.rate == 0 {
        f.push(
            key.key("rate"),
            format!("rate 0 would allow nothing: expected {what} per second, at least 1 (or enabled = false)"),
        );
    }
    if rl.burst < rl.rate.max(1) {
        f.push(
            key.key("burst"),
            format!(
                "burst {} is below rate {}: expected at least one second's worth of {what}",
                rl.burst, rl.rate
            ),
        );
    }
    if rl.rate > 1_000_000 || rl.burst > 4_000_000 {
        f.push(
            key.key("rate"),
            format!("rate above 1,000,000 or burst above 4,000,000 {what} per prefix: expected a limit (or enabled = false)"),
        );
    }
    if !(8..=32).contains(&rl.ipv4_prefix) {
        f.push(
            key.key("ipv4_prefix"),
            format!(
                "ipv4_prefix {} out of range: expected 8 to 32",
                rl.ipv4_prefix
            ),
        );
    }
    if !(16..=128).contains(&rl.ipv6_prefix) {
        f.push(
            key.key("ipv6_prefix"),
            format!(
                "ipv6_prefix {} out of range: expected 16 to 128",
                rl.ipv6_prefix
            ),
        );
    }
    if !rl.table_size.is_power_of_two() || !(1 << 10..=1 << 26).contains(&rl.table_size) {
        f.push(
            key.key("table_size"),
            format!(
                "table_size {} is not a power of two from 1024 to 67108864",
                rl.table_size
            ),
        );
    }
}

fn dns(f: &mut Findings, ctx: &Context<'_>, key: &KeyPath) {
    let Some(dns) = &ctx.d.dns else { return };
    if !(0.0..=1.0).contains(&dns.query_log_sample) {
        f.push(
            key.key("query_log_sample"),
            format!(
                "query_log_sample {} out of range: expected a fraction from 0 to 1",
                dns.query_log_sample
            ),
        );
    }
    if dns.listen.is_empty() {
        f.push(
            key.key("listen"),
            "geodns has nothing to listen on: expected at least one address",
        );
    }
    rate_limit(f, &key.key("rate_limit"), &dns.rate_limit);
    if let Some(steering) = &dns.content_steering {
        let key = key.key("content_steering");
        if steering.listen.is_empty() {
            f.push(
                key.key("listen"),
                "the steering server has nothing to listen on: expected at least one address",
            );
        }
        for (n, net) in steering.trusted_proxies.iter().enumerate() {
            if net.trunc() != *net {
                f.push(
                    key.key("trusted_proxies").index(n),
                    format!("network {net} has host bits set: expected {}", net.trunc()),
                );
            }
        }
    }
    if let Some(cookies) = &dns.cookies {
        let key = key.key("cookies");
        secret(f, key.key("secret"), &cookies.secret);
        if let Some(previous) = &cookies.previous_secret {
            secret(f, key.key("previous_secret"), previous);
        }
        if cookies.rotate.get() < std::time::Duration::from_secs(60) {
            f.push(
                key.key("rotate"),
                format!(
                    "rotate {} is too short: expected at least a minute",
                    cookies.rotate
                ),
            );
        }
    }
    for (s, site) in dns.default_order.iter().enumerate() {
        ctx.require(f, key.key("default_order").index(s), "site", site);
    }
    if let Some(t) = &dns.feed_token {
        secret(f, key.key("feed_token"), t);
    }
    admin_api(
        f,
        key,
        dns.admin,
        dns.admin_token.as_ref(),
        "operator overrides",
    );
    let mut origins: HashMap<String, usize> = HashMap::new();
    for (z, zone) in dns.zones.iter().enumerate() {
        let zkey = key.key("zones").index(z);
        if let Err(e) = check_domain(&zone.origin) {
            f.push(
                zkey.key("origin"),
                format!("invalid zone origin {:?}: {e}", zone.origin),
            );
        }
        if let Some(first) = origins.insert(normalize(&zone.origin), z) {
            f.push(
                zkey.key("origin"),
                format!(
                    "duplicate zone {:?}: already defined by dns.zones[{first}]",
                    zone.origin
                ),
            );
        }
        match (&zone.file, &zone.soa) {
            (None, None) => f.push(
                zkey.clone(),
                "zone has no SOA: expected a [dns.zones.soa] table or a zone `file`",
            ),
            (Some(_), Some(_)) => f.push(
                zkey.key("soa"),
                "zone has both a `file` and an `soa` table: expected the SOA in one place only",
            ),
            _ => {}
        }
        if let Some(soa) = &zone.soa {
            for (field, name) in [("mname", &soa.mname), ("rname", &soa.rname)] {
                if let Err(e) = check_domain(name) {
                    f.push(
                        zkey.key("soa").key(field),
                        format!("invalid name {name:?}: {e}"),
                    );
                }
            }
        }
        if zone.file.is_none() && zone.ns.is_empty() {
            f.push(
                zkey.key("ns"),
                "zone has no NS records: expected at least one name server",
            );
        }
        for (n, ns) in zone.ns.iter().enumerate() {
            if let Err(e) = check_domain(ns) {
                f.push(
                    zkey.key("ns").index(n),
                    format!("invalid name server {ns:?}: {e}"),
                );
            }
        }
        for (r, record) in zone.records.iter().enumerate() {
            static_record(f, &zkey.key("records").index(r), zone, record);
        }
    }
    for (o, rule) in dns.overrides.iter().enumerate() {
        let okey = key.key("overrides").index(o);
        if rule.countries.is_empty() && rule.continents.is_empty() && rule.networks.is_empty() {
            f.push(
                okey.clone(),
                "override matches nothing: expected `countries`, `continents` or `networks`",
            );
        }
        if rule.sites.is_empty() {
            f.push(
                okey.key("sites"),
                "override has no sites: expected a site order",
            );
        }
        for (s, site) in rule.sites.iter().enumerate() {
            ctx.require(f, okey.key("sites").index(s), "site", site);
        }
        for (n, net) in rule.networks.iter().enumerate() {
            if net.trunc() != *net {
                f.push(
                    okey.key("networks").index(n),
                    format!("network {net} has host bits set: expected {}", net.trunc()),
                );
            }
        }
    }
}

fn static_record(f: &mut Findings, key: &KeyPath, zone: &Zone, record: &Record) {
    let owner = if record.name == "@" {
        zone.origin.clone()
    } else if let Some(abs) = record.name.strip_suffix('.') {
        abs.to_owned()
    } else {
        format!("{}.{}", record.name, zone.origin.trim_end_matches('.'))
    };
    if let Err(e) = check_domain(&owner) {
        f.push(
            key.key("name"),
            format!("invalid owner name {:?}: {e}", record.name),
        );
    } else if !in_zone(&owner, &zone.origin) {
        f.push(
            key.key("name"),
            format!("owner {owner:?} is outside zone {:?}", zone.origin),
        );
    }
    let data = record.data.trim();
    let problem = match record.rtype {
        RecordType::A => data
            .parse::<Ipv4Addr>()
            .err()
            .map(|_| "expected an IPv4 address".to_owned()),
        RecordType::Aaaa => data
            .parse::<Ipv6Addr>()
            .err()
            .map(|_| "expected an IPv6 address".to_owned()),
        RecordType::Cname | RecordType::Ns => check_domain(data).err(),
        RecordType::Mx => match data.split_once(char::is_whitespace) {
            Some((pref, host)) if pref.parse::<u16>().is_ok() => check_domain(host.trim()).err(),
            _ => Some("expected \"PREFERENCE HOST\", e.g. \"10 mail.example.net.\"".to_owned()),
        },
        RecordType::Txt => (data.len() > 65_000).then(|| "TXT data too long".to_owned()),
        RecordType::Caa => {
            let parts: Vec<&str> = data.splitn(3, char::is_whitespace).collect();
            match parts.as_slice() {
                [flags, tag, value]
                    if flags.parse::<u8>().is_ok()
                        && matches!(*tag, "issue" | "issuewild" | "iodef")
                        && !value.is_empty() =>
                {
                    None
                }
                _ => Some(
                    "expected \"FLAGS TAG VALUE\", e.g. \"0 issue \\\"letsencrypt.org\\\"\""
                        .to_owned(),
                ),
            }
        }
    };
    if let Some(problem) = problem {
        f.push(
            key.key("data"),
            format!(
                "invalid {:?} record data {:?}: {problem}",
                record.rtype, record.data
            ),
        );
    }
    if record.rtype == RecordType::Cname
        && owner.eq_ignore_ascii_case(zone.origin.trim_end_matches('.'))
    {
        f.push(
            key.key("type"),
            "a CNAME at the zone apex is not allowed (it would hide SOA and NS)",
        );
    }
}

/// Checks DNS name syntax (RFC 1035 lengths; letters, digits, '-' and '_' in labels).
pub(crate) fn check_domain(name: &str) -> Result<(), String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err("expected a domain name, found an empty one".into());
    }
    if name.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("label {label:?} must be 1-63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*')
        {
            return Err(format!(
                "label {label:?} has characters other than letters, digits, '-' and '_'"
            ));
        }
    }
    Ok(())
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `name` is the zone apex `origin` or below it.
pub(crate) fn in_zone(name: &str, origin: &str) -> bool {
    let name = normalize(name);
    let origin = normalize(origin);
    name == origin || name.ends_with(&format!(".{origin}"))
}
