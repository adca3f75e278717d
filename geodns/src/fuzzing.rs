//! Entry points for fuzzing, shared by the bounded runs in `tests/fuzz.rs` and the
//! coverage-guided targets in `fuzz/` (`cargo fuzz run dns_query`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::query::Worker;

/// A datagram from a client, answered over UDP (hot codec and general path, with the worker's
/// memo) and over TCP: nothing may panic, and every answer must decode as DNS and carry the
/// query's id.
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
