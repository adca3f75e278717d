//! A deployment built in code survives serialization to TOML and parsing back, and so do the
//! shipped examples: generated files and hand-written ones go through the same parser.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;

use config::check::{CheckProfile, Damping, HlsCheck};
use config::dns::{Dns, Override, Record, RecordType, Soa, Zone};
use config::service::{
    AnswerMode, Channel, ChannelSource, Clip, ContentSteering, DegradeAction, DegradePolicy,
    Failback, Rendition,
};
use config::site::{BfdSettings, ExportPolicy, ImportPolicy, MaxPrefixAction, Node, Peer, Site};
use config::types::{Community, ControlEndpoint, HumanDuration, LargeCommunity, Secret};
use config::{CheckKind, Deployment, Service};

fn built_in_code() -> Deployment {
    let peer = Peer {
        name: "r1".into(),
        address: "127.0.0.2".parse().unwrap(),
        remote_asn: 4_200_000_001,
        port: 1179,
        local_address: Some("127.0.0.1".parse().unwrap()),
        local_port: None,
        hold_time: 30,
        keepalive: Some(10),
        passive: false,
        connect_retry: HumanDuration::from_millis(1500),
        md5_key: Some(Secret::from_env("R1_MD5")),
        multihop: None,
        ttl_security: true,
        next_hop: Some(Ipv4Addr::new(127, 0, 0, 1)),
        next_hop_v6: Some("fd00::1".parse().unwrap()),
        graceful_restart: true,
        bfd: Some(BfdSettings {
            interval: HumanDuration::from_millis(100),
            multiplier: 4,
            passive: true,
        }),
        export: ExportPolicy {
            services: Some(vec!["live".into()]),
            prepend: 1,
            med: Some(50),
            local_pref: None,
            communities: vec![Community::new(65000, 1), Community::NO_EXPORT],
            large_communities: vec![LargeCommunity {
                global: 4_200_000_001,
                local1: 1,
                local2: 2,
            }],
        },
        import: ImportPolicy {
            enabled: true,
            max_prefixes: Some(1_000_000),
            on_max_prefixes: MaxPrefixAction::Restart,
            restart_after: HumanDuration::from_secs(30),
        },
    };
    let mut site = Site {
        name: "ams".into(),
        country: "NL".parse().unwrap(),
        latitude: 52.37,
        longitude: 4.9,
        asn: 4_200_000_000,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        peers: vec![peer],
        nodes: vec![Node {
            name: "ams-1".into(),
            ipv4: Some(Ipv4Addr::new(127, 0, 1, 1)),
            ipv6: Some("fd00:1::1".parse().unwrap()),
            listen: SocketAddr::from(([127, 0, 1, 1], 8080)),
            status_url: None,
            capacity_mbps: 10_000,
            services: vec!["live".into()],
            version: Some("2.4.0".into()),
            role: config::site::NodeRole::Origin,
            edge: None,
            check: None,
            tls: None,
            admin: Some(SocketAddr::from(([127, 0, 1, 1], 8081))),
            admin_token: Some(Secret {
                file: None,
                env: Some("NODE_ADMIN_TOKEN".into()),
            }),
            handover: Some("/run/anycast-iptv/streamnode-ams-1.handover".into()),
            fault_injection: true,
            client_limits: config::site::ClientLimits {
                rate: 50,
                trusted: vec!["192.0.2.0/28".parse().unwrap()],
                ..Default::default()
            },
            max_connections: 5_000,
            header_timeout: HumanDuration::from_secs(5),
            idle_timeout: HumanDuration::from_secs(20),
        }],
        speaker: Default::default(),
        healthd: Default::default(),
    };
    site.speaker.control = Some(ControlEndpoint::Unix("/tmp/s.sock".into()));
    site.healthd.lease = HumanDuration::from_secs(5);
    Deployment {
        sites: vec![site],
        services: vec![Service {
            name: "live".into(),
            hostnames: vec!["live.tv.example.net".into()],
            prefixes: vec![
                "198.51.100.0/24".parse().unwrap(),
                "2001:db8:100::/48".parse().unwrap(),
            ],
            answer: AnswerMode::Anycast,
            anycast_addresses: vec!["198.51.100.1".parse().unwrap()],
            answer_count: 3,
            ttl: 15,
            min_healthy_nodes: 1,
            spill_load: 0.8,
            check: "stream".into(),
            channels: vec!["news".into()],
            degrade: DegradePolicy {
                action: DegradeAction::Announce,
                prepend: 3,
                med: Some(1000),
                communities: vec![Community::new(65000, 666)],
                large_communities: vec![],
                delay: None,
            },
            // An anycast service has no canary (answers name addresses, not nodes).
            canary: None,
            content_steering: Some(ContentSteering {
                server: "https://steer.tv.example.net/steer/live".into(),
                pathway: Some("https://{site}.live.tv.example.net".into()),
                sites: [(
                    "ams".to_owned(),
                    "https://ams-cdn.example.com/tv".to_owned(),
                )]
                .into(),
                ttl: 10,
                changing_ttl: 2,
            }),
        }],
        checks: vec![CheckProfile {
            name: "stream".into(),
            kind: CheckKind::Hls,
            interval: HumanDuration::from_millis(500),
            jitter: 0.2,
            timeout: HumanDuration::from_millis(300),
            rise: 3,
            fall: 2,
            fast_interval: HumanDuration::from_millis(100),
            damping: Some(Damping {
                penalty: 1000.0,
                suppress: 2500.0,
                reuse: 500.0,
                half_life: HumanDuration::from_secs(30),
            }),
            hls: Some(HlsCheck {
                channels: Some(vec!["news".into()]),
                max_stall_factor: 2.0,
                min_speed: 1.5,
                ca_file: Some("/etc/anycast/ca.pem".into()),
            }),
            http: None,
            tcp: None,
            dns: None,
            exec: None,
        }],
        channels: vec![
            Channel {
                name: "news".into(),
                source: ChannelSource::Udp,
                primary: Some("239.1.1.1:5000".parse().unwrap()),
                backup: Some("239.1.1.2:5000".parse().unwrap()),
                interface: Some("eth0".into()),
                stall_timeout: HumanDuration::from_millis(800),
                max_cc_errors_per_sec: 20,
                failback: Failback::Manual,
                segment_duration: HumanDuration::from_secs(2),
                window: 5,
                token: Some("subscribers".into()),
                clip: Clip::P360,
                renditions: Vec::new(),
            },
            Channel {
                name: "sports".into(),
                source: ChannelSource::Udp,
                clip: Clip::P360,
                primary: None,
                backup: None,
                interface: Some("eth0".into()),
                stall_timeout: HumanDuration::from_millis(1000),
                max_cc_errors_per_sec: 50,
                failback: Failback::Auto,
                segment_duration: HumanDuration::from_secs(2),
                window: 6,
                token: None,
                renditions: vec![
                    Rendition {
                        name: "720p".into(),
                        clip: Clip::P360,
                        primary: Some("239.1.2.1:5000".parse().unwrap()),
                        backup: Some("239.1.2.2:5000".parse().unwrap()),
                    },
                    Rendition {
                        name: "360p".into(),
                        clip: Clip::P180,
                        primary: Some("239.1.2.3:5000".parse().unwrap()),
                        backup: None,
                    },
                ],
            },
        ],
        tokens: vec![config::token::TokenProfile {
            name: "subscribers".into(),
            kind: config::token::TokenKind::EdgeAuth,
            keys: vec![
                Secret::from_env("TOKEN_KEY"),
                Secret::from_env("TOKEN_KEY_PREVIOUS"),
            ],
            param: Some("hdnts".into()),
            algorithm: config::token::TokenAlgorithm::Sha256,
            clock_skew: HumanDuration::from_secs(10),
            carry: config::token::TokenCarry::Query,
            expression: None,
            expires_param: None,
        }],
        dns: Some(Dns {
            zones: vec![Zone {
                origin: "tv.example.net".into(),
                file: None,
                soa: Some(Soa {
                    mname: "ns1.tv.example.net".into(),
                    rname: "hostmaster.tv.example.net".into(),
                    serial: 7,
                    refresh: 1,
                    retry: 2,
                    expire: 3,
                    minimum: 4,
                }),
                ns: vec!["ns1.tv.example.net".into()],
                records: vec![Record {
                    name: "www".into(),
                    rtype: RecordType::Aaaa,
                    ttl: 60,
                    data: "2001:db8::1".into(),
                }],
            }],
            overrides: vec![Override {
                countries: vec!["IE".parse().unwrap()],
                continents: vec![config::types::Continent::EU],
                networks: vec!["192.0.2.0/24".parse().unwrap()],
                sites: vec!["ams".into()],
            }],
            content_steering: Some(config::dns::SteeringServer {
                listen: vec!["127.0.0.1:8085".parse().unwrap()],
                trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
            }),
            ..Dns::default()
        }),
    }
}

#[test]
fn a_deployment_built_in_code_round_trips_through_toml() {
    let built = built_in_code();
    assert!(built.check().is_empty(), "{:?}", built.check());
    let text = built.to_toml().unwrap();
    let parsed = Deployment::parse(&text, Path::new("generated.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(parsed, built);
}

#[test]
fn the_examples_round_trip_through_toml() {
    for name in ["minimal.toml", "three-sites.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        let first = Deployment::parse(&text, &path).unwrap();
        let again = Deployment::parse(&first.to_toml().unwrap(), &path).unwrap();
        assert_eq!(again, first, "{name}");
    }
}

#[test]
fn check_config_command_reports_problems_and_exit_status() {
    let bin = env!("CARGO_BIN_EXE_config");
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/three-sites.toml");
    let out = Command::new(bin)
        .arg("check-config")
        .arg("--config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 sites, 7 stream nodes"));

    let dir = std::env::temp_dir().join(format!("config-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    let text = std::fs::read_to_string(&good).unwrap().replacen(
        "latitude = 52.37",
        "latitude = 252.37",
        1,
    );
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(bin)
        .arg("check-config")
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:10:1: sites[0].latitude: latitude 252.37 out of range",
            bad.display()
        )),
        "{stderr}"
    );

    let out = Command::new(bin)
        .arg("check-config")
        .arg("--config")
        .arg(dir.join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read deployment file"));
    std::fs::remove_dir_all(dir).unwrap();
}
