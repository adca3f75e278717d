//! DNS cookies between two geodns instances of one deployment (one shared secret), as anycast
//! moves a resolver between them: a client cookie gets a server cookie back; that cookie,
//! presented to the other instance, exempts the resolver from a rate limit that holds every
//! cookieless query from the same address; a malformed cookie gets FORMERR; dig's own cookie
//! handling agrees.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::{example_on, spawn_geodns, write_geo_db};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use testkit::net::Loopback;
use testkit::process::{Daemon, TempDir, wait_for};

const CLIENT_COOKIE: [u8; 8] = *b"resolver";

fn start(dir: &TempDir, name: &str, dns: SocketAddr, admin: SocketAddr, extra: &str) -> Daemon {
    let text = format!(
        "{}\n[dns.cookies]\nsecret = {{ file = \"cookie.secret\" }}\n{extra}",
        example_on(dns, admin)
    );
    spawn_geodns(dir.path(), name, &text)
}

/// An A query for the service with `cookie` as the COOKIE option's data (if any).
fn query(id: u16, cookie: Option<&[u8]>) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii("live.tv.example.net.").unwrap(),
        RecordType::A,
    ));
    let mut edns = Edns::new();
    if let Some(cookie) = cookie {
        edns.options_mut()
            .insert(EdnsOption::Unknown(10, cookie.to_vec()));
    }
    m.set_edns(edns);
    m.to_vec().unwrap()
}

/// The answer to `bytes` from `server`, if one comes within 300 ms.
fn ask(socket: &UdpSocket, server: SocketAddr, bytes: &[u8]) -> Option<Message> {
    socket.send_to(bytes, server).ok()?;
    let mut buf = [0u8; 2048];
    let id = u16::from_be_bytes([bytes[0], bytes[1]]);
    loop {
        let (n, _) = socket.recv_from(&mut buf).ok()?;
        let reply = Message::from_vec(&buf[..n]).ok()?;
        if reply.metadata.id == id {
            return Some(reply);
        }
    }
}

/// Sends every query in `queries` at once, then counts the answers that come within 300 ms.
fn burst(socket: &UdpSocket, server: SocketAddr, queries: &[Vec<u8>]) -> usize {
    for q in queries {
        socket.send_to(q, server).unwrap();
    }
    let mut buf = [0u8; 2048];
    let mut answered = 0;
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        answered += usize::from(Message::from_vec(&buf[..n]).is_ok());
    }
    answered
}

fn cookie_of(reply: &Message) -> Option<Vec<u8>> {
    match reply.edns.as_ref()?.option(EdnsCode::Cookie)? {
        EdnsOption::Unknown(10, data) => Some(data.clone()),
        _ => None,
    }
}

#[test]
fn a_cookie_from_one_instance_exempts_the_resolver_at_the_other() {
    let dir = TempDir::new("geodns-cookies");
    write_geo_db(dir.path());
    std::fs::write(
        dir.path().join("cookie.secret"),
        "one secret for every instance\n",
    )
    .unwrap();
    let net = Loopback::fresh();
    let a = SocketAddr::from((net.host(1), 5353));
    let b = SocketAddr::from((net.host(2), 5353));
    let _first = start(&dir, "a", a, SocketAddr::from((net.host(1), 9153)), "");
    // The second holds every source to one response a second.
    let _second = start(
        &dir,
        "b",
        b,
        SocketAddr::from((net.host(2), 9153)),
        "\n[dns.rate_limit]\nrate = 1\nburst = 1\nslip = 0\n",
    );
    let resolver = UdpSocket::bind((Ipv4Addr::new(127, 79, 0, 1), 0)).unwrap();
    resolver
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    for server in [a, b] {
        let up = wait_for(Duration::from_secs(20), || {
            let probe = UdpSocket::bind("127.0.0.1:0").ok()?;
            probe
                .set_read_timeout(Some(Duration::from_millis(300)))
                .ok()?;
            ask(&probe, server, &query(1, None)).map(|_| ())
        });
        assert!(up.is_some(), "{server} did not answer");
    }

    // First contact: a client cookie alone gets it back with a 16-byte server cookie.
    let first = ask(&resolver, a, &query(2, Some(&CLIENT_COOKIE))).expect("an answer");
    assert_eq!(first.metadata.response_code, ResponseCode::NoError);
    assert!(!first.answers.is_empty());
    let cookie = cookie_of(&first).expect("a COOKIE option in the answer");
    assert_eq!(
        cookie.len(),
        24,
        "client cookie and server cookie: {cookie:02x?}"
    );
    assert_eq!(&cookie[..8], &CLIENT_COOKIE);
    assert_eq!(&cookie[8..12], &[1, 0, 0, 0], "RFC 9018 version 1");

    // At the other instance, from the same address: with the cookie every query is answered,
    // without it all but the first in a second are dropped.
    let with: usize = (0..40)
        .filter_map(|i| ask(&resolver, b, &query(100 + i, Some(&cookie))))
        .filter(|r| !r.answers.is_empty() && !r.metadata.truncation)
        .count();
    let cookieless: Vec<Vec<u8>> = (0..40).map(|i| query(200 + i, None)).collect();
    let without = burst(&resolver, b, &cookieless);
    assert_eq!(with, 40, "a proven resolver is never limited");
    assert!(
        without <= 2,
        "cookieless queries are limited: {without} answered"
    );
    // A forged server cookie proves nothing.
    let mut forged = cookie.clone();
    forged[23] ^= 0xFF;
    std::thread::sleep(Duration::from_secs(1));
    let forged: Vec<Vec<u8>> = (0..10).map(|i| query(300 + i, Some(&forged))).collect();
    let forged_answers = burst(&resolver, b, &forged);
    assert!(forged_answers <= 2, "{forged_answers}");

    // A cookie option of a length RFC 7873 does not allow: FORMERR.
    let malformed = ask(&resolver, a, &query(400, Some(&[1, 2, 3, 4, 5]))).expect("an answer");
    assert_eq!(malformed.metadata.response_code, ResponseCode::FormErr);

    // dig's cookie exchange: it sends a client cookie and checks the one that comes back.
    if testkit::require(
        "a_cookie_from_one_instance_exempts_the_resolver_at_the_other (dig)",
        &[("dig", "dnsutils")],
        false,
    )
    .is_some()
    {
        let out = Command::new("dig")
            .args(["+cookie", "+time=2", "+tries=1"])
            .arg(format!("@{}", a.ip()))
            .args(["-p", &a.port().to_string(), "live.tv.example.net", "A"])
            .output()
            .expect("dig runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("; COOKIE: ") && text.contains("(good)"),
            "dig accepts the server cookie:\n{text}"
        );
    }
}
