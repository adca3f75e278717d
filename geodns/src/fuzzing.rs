//! Entry points for fuzzing, shared by the bounded runs in `tests/fuzz.rs` and the
//! coverage-guided targets in `fuzz/` (`cargo fuzz run dns_query`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::query::Worker;

/// A datagram from a client, answered over UDP (hot codec and general path, with the worker's
/// memo), over TCP and as a rate-limited source's truncated answer: nothing may panic, and every
/// answer must decode as DNS and carry the query's id.
pub fn query(worker: &mut Worker, data: &[u8]) {
    let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 5300);
    let mut out = Vec::new();
    if worker.udp(data, from, &mut out) {
        check_answer(data, &out);
    }
    if worker.tcp(data, from, &mut out) {
        check_answer(data, &out);
    }
    let _ = crate::query::edns::scan(data);
    // What a rate-limited source gets: the question, truncated, never longer than the query.
    if crate::rrl::slipped(data, &mut out) {
        assert!(
            out.len() <= data.len(),
            "a slipped answer outgrew its query"
        );
        check_answer(data, &out);
    }
}

fn check_answer(query: &[u8], answer: &[u8]) {
    let message = hickory_proto::op::Message::from_vec(answer)
        .unwrap_or_else(|e| panic!("the answer does not decode ({e}): {answer:02x?}"));
    assert_eq!(
        &answer[..2],
        &query[..2],
        "the answer carries the query's id"
    );
    assert_eq!(
        message.metadata.message_type,
        hickory_proto::op::MessageType::Response
    );
}

/// A zone file's text, through hickory's zone parser and our checks on what it holds, then
/// looked up: nothing may panic.
pub fn zone_file(bytes: &[u8]) {
    use hickory_proto::rr::{Name, RecordType};
    let zone = config::dns::Zone {
        origin: "static.example.net".into(),
        file: Some("fuzz.zone".into()),
        soa: None,
        ns: Vec::new(),
        records: Vec::new(),
    };
    let text = String::from_utf8_lossy(bytes).into_owned();
    if let Ok(data) = crate::zone::ZoneData::parse(&zone, text) {
        for name in [
            "static.example.net.",
            "www.static.example.net.",
            "x.y.static.example.net.",
        ] {
            if let Ok(name) = Name::from_ascii(name) {
                for qtype in [
                    RecordType::A,
                    RecordType::SOA,
                    RecordType::ANY,
                    RecordType::NS,
                ] {
                    let _ = data.lookup(&name, qtype);
                }
            }
        }
        let _ = data.negative_soa();
    }
}

/// A location database file's bytes, opened, compiled into an atlas under the example
/// deployment's rules and looked up: a damaged file must be refused or compiled, never panic,
/// and every lookup of the atlas must name a site order.
pub fn location_db(bytes: &[u8]) {
    let Ok(db) = crate::geo::GeoDb::from_bytes(bytes.to_vec()) else {
        return;
    };
    let deployment = config::Deployment::parse(
        include_str!("../../config/examples/three-sites.toml"),
        std::path::Path::new("three-sites.toml"),
    )
    .expect("the example parses");
    let steering = crate::steering::Steering::new(&deployment);
    let Ok(atlas) = crate::atlas::Atlas::compile(&steering, Some(&db)) else {
        return;
    };
    for client in [
        "0.0.0.0",
        "198.51.100.77",
        "255.255.255.255",
        "::",
        "::198.51.100.77",
        "::ffff:198.51.100.77",
        "2001:0:c633:644d::1",
        "2002:c633:644d::1",
        "2001:db8:1::5",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ] {
        let client: IpAddr = client.parse().expect("a valid address");
        let placed = atlas.place(client);
        assert_eq!(
            placed.order.len(),
            deployment.sites.len(),
            "{client}: every site ranked"
        );
        let _ = db.locate(client);
    }
}

/// A content steering request from a trusted proxy: the data's first line is the query
/// string, the rest the `X-Forwarded-For` value, answered for the example's steered service by
/// `shared`. Nothing may panic; every request gets a version-1 manifest naming at least one
/// pathway, and its `RELOAD-URI` is the steering URL with nothing added but a session and a
/// pathway the server checked.
pub fn steering_request(shared: &crate::Shared, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (query, forwarded) = text.split_once('\n').unwrap_or((&text, ""));
    let mut headers = axum::http::HeaderMap::new();
    if let Ok(value) = axum::http::HeaderValue::from_str(forwarded) {
        headers.insert("x-forwarded-for", value);
    }
    let trusted = ["10.0.0.0/8".parse().expect("a network")];
    let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let client = crate::content_steering::client_of(peer, &headers, &trusted);
    let request = crate::content_steering::Request::parse(Some(query));
    let prepared = shared.prepared();
    let Some(service) = prepared.steering_paths.values().next().copied() else {
        panic!("the deployment steers no service");
    };
    let steered = crate::content_steering::answer(
        shared,
        service,
        client,
        &request,
        std::time::Instant::now(),
    )
    .expect("a steered service always gets an answer");
    let manifest = &steered.manifest;
    assert_eq!(manifest.version, 1);
    assert!(!manifest.pathway_priority.is_empty(), "no pathway");
    let reload = url::Url::parse(&manifest.reload_uri).expect("RELOAD-URI is a URL");
    for (key, value) in reload.query_pairs() {
        match key.as_ref() {
            "session" | "from" => assert!(
                value.len() <= 64
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')),
                "{key}={value:?} echoed unchecked"
            ),
            _ => {}
        }
    }
    serde_json::to_string(manifest).expect("the manifest serialises");
}
