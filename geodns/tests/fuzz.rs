//! Generated and mutated DNS queries through every decoder of geodns, on stable Rust, bounded
//! (see `testkit::fuzz`): the UDP path (hot codec and general path with a worker's memo), the
//! TCP path, the OPT scanner, and location database files through the atlas compiler. Every
//! answer must decode as DNS and carry the query's id; afterwards the worker must still answer
//! a real query right. The fast path is also checked against the general one over generated
//! hot queries.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use geodns::geo::{GeoDb, Place, synthetic_db};
use geodns::query::Worker;
use geodns::query::edns::scan;
use geodns::query::hot::{HotQuery, write_answer};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use testkit::fuzz::{self, Rng};

const EXAMPLE: &str = include_str!("../../config/examples/three-sites.toml");

fn shared() -> Arc<geodns::Shared> {
    shared_from(EXAMPLE.to_owned())
}

fn shared_from(example: String) -> Arc<geodns::Shared> {
    // One source asks everything here, far past any rate limit.
    let text = format!("{example}\n[dns.rate_limit]\nenabled = false\n");
    let deployment =
        config::Deployment::parse(&text, Path::new("three-sites.toml")).expect("example parses");
    let shared = geodns::server::offline(deployment).expect("example builds");
    let place = |net: &str, latitude, longitude| Place {
        network: net.parse().unwrap(),
        country: "NL",
        continent: "EU",
        latitude,
        longitude,
    };
    let db = synthetic_db(&[
        place("198.51.100.0/24", 52.37, 4.90),
        place("203.0.113.0/24", 50.11, 8.68),
        place("192.0.2.0/24", 51.51, -0.13),
        place("2001:db8:1::/48", 50.11, 8.68),
    ])
    .unwrap();
    shared.set_geo(GeoDb::from_bytes(db).unwrap()).unwrap();
    Arc::new(shared)
}

/// A query's EDNS: none, OPT alone, or OPT with a client subnet (address, source prefix).
type EdnsPart = Option<Option<(IpAddr, u8)>>;

/// A query as a resolver sends it.
fn query(name: &str, qtype: RecordType, edns: EdnsPart) -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    let mut q = Query::query(Name::from_ascii(name).unwrap(), qtype);
    q.set_query_class(DNSClass::IN);
    m.add_query(q);
    if let Some(subnet) = edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        if let Some((addr, prefix)) = subnet {
            e.options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::new(addr, prefix, 0)));
        }
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn seeds() -> Vec<Vec<u8>> {
    let v4 = |a: [u8; 4]| IpAddr::from(a);
    let mut seeds = vec![
        query("live.tv.example.net.", RecordType::A, None),
        query("live.tv.example.net.", RecordType::A, Some(None)),
        query(
            "live.tv.example.net.",
            RecordType::A,
            Some(Some((v4([198, 51, 100, 0]), 24))),
        ),
        query(
            "LIVE.tv.Example.NET.",
            RecordType::AAAA,
            Some(Some(("2001:db8:1::".parse().unwrap(), 48))),
        ),
        query(
            "vod.tv.example.net.",
            RecordType::A,
            Some(Some((v4([0; 4]), 0))),
        ),
        query("tv.example.net.", RecordType::SOA, Some(None)),
        query("tv.example.net.", RecordType::NS, None),
        query("tv.example.net.", RecordType::TXT, Some(None)),
        query("nope.tv.example.net.", RecordType::A, Some(None)),
        query("example.org.", RecordType::A, None),
        query("live.tv.example.net.", RecordType::ANY, Some(None)),
        query("live.tv.example.net.", RecordType::MX, Some(None)),
    ];
    // Cookies: a client cookie alone, and with a server cookie beside Client Subnet.
    let with_cookie = |cookie: &[u8], subnet: bool| {
        let mut m = Message::new(0x4243, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii("live.tv.example.net.").unwrap(),
            RecordType::A,
        ));
        let mut e = Edns::new();
        if subnet {
            let cs = ClientSubnet::new(v4([198, 51, 100, 0]), 24, 0);
            e.options_mut().insert(EdnsOption::Subnet(cs));
        }
        e.options_mut()
            .insert(EdnsOption::Unknown(10, cookie.to_vec()));
        m.set_edns(e);
        m.to_vec().unwrap()
    };
    seeds.push(with_cookie(b"resolver", false));
    seeds.push(with_cookie(&[7u8; 24], true));
    // The datagram that once silenced a worker: labels of 63, 63, 63, 62 and 63 bytes.
    let mut long = vec![0x13, 0x37, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    for len in [63, 63, 63, 62, 63] {
        long.push(len);
        long.extend(std::iter::repeat_n(b'x', usize::from(len)));
    }
    long.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
    seeds.push(long);
    seeds
}

fn regressions() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions/dns")
}

const FROM: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)), 5300);

/// After any input, a real query still gets the right answer from the same worker.
fn still_answers(worker: &mut Worker) {
    let q = query(
        "live.tv.example.net.",
        RecordType::A,
        Some(Some((IpAddr::from([198, 51, 100, 0]), 24))),
    );
    let mut out = Vec::new();
    assert!(worker.udp(&q, FROM, &mut out));
    let m = Message::from_vec(&out).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let addrs: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    assert!(
        addrs.iter().all(|a| a.starts_with("127.0.11.")),
        "Amsterdam's nodes for an Amsterdam client: {addrs:?}"
    );
}

#[test]
fn queries_never_panic_and_answers_decode() {
    let shared = shared();
    let mut worker = Worker::new(shared.clone());
    fuzz::run("dns-query", &regressions(), &seeds(), |input| {
        geodns::fuzzing::query(&mut worker, input)
    });
    still_answers(&mut worker);
}

#[test]
fn steering_requests_never_panic_and_always_get_a_manifest() {
    let shared = shared();
    let seeds: Vec<Vec<u8>> = [
        "_HLS_pathway=ams&_HLS_throughput=5000000\n198.51.100.7",
        "_HLS_pathway=fra&session=0123abcd&from=ams\n203.0.113.9, 10.1.1.1",
        "_HLS_throughput=-1&_HLS_pathway=%00%ff&session=\nnonsense",
        "\n2001:db8:1::5",
        "from=lon&from=ams&_HLS_pathway=lon\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fuzz::run_n("steering-request", &regressions(), &seeds, 3000, |input| {
        geodns::fuzzing::steering_request(&shared, input)
    });
}

#[test]
fn zone_files_never_panic_the_parser_or_the_lookups() {
    let seeds = vec![
        b"$ORIGIN static.example.net.\n$TTL 300\n@ IN SOA ns1 hostmaster 7 3600 600 604800 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\nwww 120 IN AAAA 2001:db8::80\nalias IN CNAME www\n@ IN MX 10 mail\n@ IN TXT \"v=spf1 -all\"\n*.w IN A 192.0.2.9\n".to_vec(),
        b"@ 60 IN SOA a b ( 1 2 3 4 5 )\nsub IN NS ns.sub\nns.sub IN A 192.0.2.1\n".to_vec(),
    ];
    fuzz::run_n(
        "dns-zone-file",
        &regressions(),
        &seeds,
        3000,
        geodns::fuzzing::zone_file,
    );
}

#[test]
fn location_databases_never_panic_the_compiler_or_the_lookups() {
    let place = |net: &str, country, latitude, longitude| Place {
        network: net.parse().unwrap(),
        country,
        continent: "EU",
        latitude,
        longitude,
    };
    let seeds = vec![
        synthetic_db(&[
            place("198.51.100.0/24", "NL", 52.37, 4.90),
            place("198.51.100.128/26", "DE", 50.11, 8.68),
            place("2001:db8:1::/48", "GB", 51.51, -0.13),
        ])
        .unwrap(),
        synthetic_db(&[place("0.0.0.0/1", "IE", 53.35, -6.26)]).unwrap(),
    ];
    fuzz::run_n(
        "dns-location-db",
        &regressions(),
        &seeds,
        2000,
        geodns::fuzzing::location_db,
    );
}

#[test]
fn the_hot_codec_and_the_opt_scanner_take_anything() {
    let mut rng = Rng::new(99);
    let mut out = Vec::new();
    fuzz::run("dns-codec", &regressions(), &seeds(), |input| {
        let _ = scan(input);
        if let Some(hot) = HotQuery::parse(input) {
            assert!(hot.name.len() <= 255);
            let addresses: Vec<IpAddr> = (0..rng.below(5))
                .map(|_| {
                    if hot.is_v4() {
                        IpAddr::from((rng.next_u64() as u32).to_be_bytes())
                    } else {
                        IpAddr::from(u128::from(rng.next_u64()).to_be_bytes())
                    }
                })
                .collect();
            write_answer(input, &hot, 30, 24, None, &addresses, &mut out);
            let m = Message::from_vec(&out).expect("a hot answer decodes");
            assert_eq!(m.answers.len(), addresses.len());
        }
    });
}

#[test]
fn names_over_255_bytes_get_formerr_with_opt_on_both_transports() {
    let shared = shared();
    let mut worker = Worker::new(shared);
    let long = seeds().pop().unwrap();
    for transport in ["udp", "tcp"] {
        let mut out = Vec::new();
        let sent = match transport {
            "udp" => worker.udp(&long, FROM, &mut out),
            _ => worker.tcp(&long, FROM, &mut out),
        };
        assert!(sent, "{transport}: answered");
        assert_eq!(&out[..2], &[0x13, 0x37]);
        assert_eq!(out[3] & 0x0F, 1, "{transport}: FORMERR");
        let m = Message::from_vec(&out).unwrap();
        assert!(m.edns.is_some(), "{transport}: OPT, as the query had one");
    }
}

#[test]
fn client_subnet_with_extra_address_bytes_gets_formerr_with_opt() {
    let shared = shared();
    let mut worker = Worker::new(shared);
    let mut q = query(
        "live.tv.example.net.",
        RecordType::A,
        Some(Some((IpAddr::from([198, 51, 100, 0]), 24))),
    );
    // One more address byte than a /24 needs (RFC 7871 section 6): option and rdata longer.
    let n = q.len();
    q.push(0);
    q[n - 8] += 1;
    q[n - 12] += 1;
    assert_eq!(scan(&q).count, 1);
    let mut out = Vec::new();
    assert!(worker.udp(&q, FROM, &mut out));
    let m = Message::from_vec(&out).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert!(m.edns.is_some());
}

#[test]
fn the_fast_path_answers_as_the_general_path_does() {
    agree(shared(), 2026, |_| None);
}

#[test]
fn the_fast_path_splits_a_canary_as_the_general_path_does() {
    // One node of each site is the canary's, so each side's answer is one node: the two paths
    // must name the same one, with the same scope.
    let mut text = EXAMPLE.to_owned();
    for node in ["ams-2", "fra-2", "lon-2"] {
        let line = format!("name = \"{node}\"\n");
        text = text.replacen(&line, &format!("{line}version = \"2.4.0\"\n"), 1);
    }
    let text = text.replacen(
        "check = \"stream\"\n",
        "check = \"stream\"\ncanary = { version = \"2.4.0\", share = 0.3 }\n",
        1,
    );
    // Networks all over both address spaces, with ECS as resolvers send it.
    agree(shared_from(text), 2027, |rng| {
        Some(Some(Some(if rng.chance(2) {
            (
                IpAddr::from((rng.next_u64() as u32 & 0xffff_ff00).to_be_bytes()),
                24,
            )
        } else {
            let bits = u128::from(rng.next_u64()) << 64 & !((1u128 << 72) - 1);
            (IpAddr::from(bits.to_be_bytes()), 56)
        })))
    });
}

/// Asks 2,000 generated hot queries of both paths and compares the answers; `client` gives
/// the EDNS part of a query when it wants to (else one of a fixed set).
fn agree(shared: Arc<geodns::Shared>, seed: u64, client: impl Fn(&mut Rng) -> Option<EdnsPart>) {
    let mut worker = Worker::new(shared);
    let mut rng = Rng::new(seed);
    let names = [
        "live.tv.example.net.",
        "LIVE.TV.EXAMPLE.NET.",
        "Live.Tv.Example.Net.",
        "vod.tv.example.net.",
    ];
    let subnets: [EdnsPart; 7] = [
        None,
        Some(None),
        Some(Some((IpAddr::from([198, 51, 100, 0]), 24))),
        Some(Some((IpAddr::from([203, 0, 113, 0]), 24))),
        Some(Some((IpAddr::from([192, 0, 2, 128]), 25))),
        Some(Some((IpAddr::from([100, 64, 0, 0]), 16))),
        Some(Some((IpAddr::from([0, 0, 0, 0]), 0))),
    ];
    let (mut fast, mut general) = (Vec::new(), Vec::new());
    for _ in 0..2000 {
        let name = names[rng.below(names.len())];
        let qtype = if rng.chance(2) {
            RecordType::A
        } else {
            RecordType::AAAA
        };
        let edns = client(&mut rng).unwrap_or_else(|| subnets[rng.below(subnets.len())]);
        let q = query(name, qtype, edns);
        assert!(HotQuery::parse(&q).is_some(), "a hot query");
        assert!(worker.udp(&q, FROM, &mut fast));
        assert!(worker.general(&q, FROM, &mut general));
        let (f, g) = (
            Message::from_vec(&fast).unwrap(),
            Message::from_vec(&general).unwrap(),
        );
        assert_eq!(f.metadata, g.metadata, "{name} {qtype}: header");
        assert_eq!(f.queries, g.queries, "{name} {qtype}: question");
        let records = |m: &Message| {
            let mut r: Vec<(String, u32, RData)> = m
                .answers
                .iter()
                .map(|r| (r.name.to_string().to_lowercase(), r.ttl, r.data.clone()))
                .collect();
            r.sort_by_key(|(n, t, d)| (n.clone(), *t, d.to_string()));
            r
        };
        assert_eq!(records(&f), records(&g), "{name} {qtype}: answers");
        let subnet = |m: &Message| {
            m.edns.as_ref().map(|e| {
                format!(
                    "{:?}",
                    e.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)
                )
            })
        };
        assert_eq!(subnet(&f), subnet(&g), "{name} {qtype}: OPT and scope");
    }
}
