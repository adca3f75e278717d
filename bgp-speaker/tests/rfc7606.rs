//! RFC 7606 on the wire: a test peer on a raw TCP socket sends crafted UPDATEs and checks that
//! the speaker treats them as withdraw, discards the attribute, or resets the session — exactly
//! as the RFC says for each case — and never crashes.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::Duration;

use bgp_speaker::packet::open::{Capabilities, Open};
use bgp_speaker::packet::{MessageType, frame, keepalive, next_message};
use common::{PeerSpec, Speaker, deployment};
use testkit::net::Loopback;
use testkit::process::{TempDir, wait_for};

const WAIT: Duration = Duration::from_secs(15);

/// The raw peer's side of an established session.
struct RawPeer {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawPeer {
    /// Accepts the speaker's connection and completes the OPEN/KEEPALIVE exchange.
    fn accept(listener: &TcpListener, id: Ipv4Addr) -> Self {
        let (stream, _) = listener.accept().expect("speaker connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut peer = Self {
            stream,
            buf: Vec::new(),
        };
        let (kind, _) = peer.read_message().expect("OPEN from the speaker");
        assert_eq!(kind, MessageType::Open);
        let open = Open {
            asn: 65000,
            hold_time: 30,
            router_id: id,
            caps: Capabilities {
                ipv4_unicast: true,
                ipv6_unicast: true,
                four_octet_as: Some(65000),
                ..Default::default()
            },
        };
        peer.send(&open.encode());
        peer.send(&keepalive());
        loop {
            let (kind, _) = peer.read_message().expect("KEEPALIVE from the speaker");
            if kind == MessageType::Keepalive {
                break;
            }
        }
        peer
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to speaker");
    }

    /// The next message (type and body), or `None` when the connection closed.
    fn read_message(&mut self) -> Option<(MessageType, Vec<u8>)> {
        loop {
            if let Ok(Some((kind, len))) = next_message(&self.buf) {
                let message: Vec<u8> = self.buf.drain(..len).collect();
                return Some((kind, message[19..].to_vec()));
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads until a NOTIFICATION arrives; returns (code, subcode).
    fn notification(&mut self) -> Option<(u8, u8)> {
        while let Some((kind, body)) = self.read_message() {
            if kind == MessageType::Notification {
                return Some((body[0], body[1]));
            }
        }
        None
    }
}

fn attr(flags: u8, code: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![flags, code, value.len() as u8];
    out.extend_from_slice(value);
    out
}

fn update(attrs: &[Vec<u8>], nlri: &[u8]) -> Vec<u8> {
    let block = attrs.concat();
    let mut body = vec![0, 0];
    body.extend_from_slice(&(block.len() as u16).to_be_bytes());
    body.extend_from_slice(&block);
    body.extend_from_slice(nlri);
    frame(MessageType::Update, &body)
}

fn good_attrs() -> Vec<Vec<u8>> {
    vec![
        attr(0x40, 1, &[0]),
        attr(0x40, 2, &[2, 1, 0, 0, 0xfd, 0xe8]),
        attr(0x40, 3, &[192, 0, 2, 7]),
    ]
}

const NLRI: [u8; 8] = [24, 10, 1, 1, 24, 10, 1, 2];

fn received(speaker: &Speaker) -> (String, u64) {
    let peer = speaker
        .neighbors()
        .into_iter()
        .find(|p| p["name"] == "raw")
        .unwrap_or_default();
    (
        peer["state"].as_str().unwrap_or("").to_owned(),
        peer["prefixes_received"].as_u64().unwrap_or(0),
    )
}

fn wait_received(speaker: &Speaker, want: u64) -> bool {
    wait_for(WAIT, || {
        (received(speaker) == ("Established".to_owned(), want)).then_some(())
    })
    .is_some()
}

fn start() -> (TcpListener, Speaker, Loopback) {
    start_with("import = { enabled = true }")
}

fn start_with(peer_extra: &str) -> (TcpListener, Speaker, Loopback) {
    let net = Loopback::fresh();
    let listener = TcpListener::bind((net.host(9), 1179)).expect("bind raw peer");
    let dir = TempDir::new("speaker-raw");
    let socket = dir.path().join("speaker.sock");
    let peer = PeerSpec {
        name: "raw",
        address: net.host(9),
        remote_asn: 65000,
        port: 1179,
        extra: peer_extra.into(),
    };
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, deployment(net.host(1), &socket, &[peer], "")).unwrap();
    (listener, Speaker::start_with(dir, config), net)
}

#[test]
fn malformed_attributes_are_treated_as_withdraw_without_a_session_reset() {
    let (listener, speaker, net) = start();
    let mut peer = RawPeer::accept(&listener, net.host(9));
    peer.send(&update(&good_attrs(), &NLRI));
    assert!(wait_received(&speaker, 2), "{:?}", speaker.neighbors());
    let (ok, table) = speaker.cli(&["show", "routes", "received", "raw"]);
    assert!(ok, "{table}");
    assert!(
        table.contains("10.1.1.0/24") && table.contains("192.0.2.7") && table.contains("65000"),
        "{table}"
    );

    // ORIGIN 7 does not exist: the routes go, the session stays (RFC 7606 section 7.1).
    let mut bad = good_attrs();
    bad[0] = attr(0x40, 1, &[7]);
    peer.send(&update(&bad, &NLRI));
    assert!(wait_received(&speaker, 0), "{:?}", speaker.neighbors());

    // COMMUNITIES of a length that is not a multiple of 4 (section 7.8).
    peer.send(&update(&good_attrs(), &NLRI));
    assert!(wait_received(&speaker, 2));
    let mut bad = good_attrs();
    bad.push(attr(0xc0, 8, &[0, 1, 2]));
    peer.send(&update(&bad, &NLRI));
    assert!(wait_received(&speaker, 0));

    // An attribute whose length runs past the attribute block (section 4).
    peer.send(&update(&good_attrs(), &NLRI));
    assert!(wait_received(&speaker, 2));
    let mut bad = good_attrs();
    bad.push(vec![0xc0, 99, 200, 1, 2]);
    peer.send(&update(&bad, &NLRI));
    assert!(wait_received(&speaker, 0));
    assert_eq!(speaker.neighbors()[0]["flaps"], 0, "no session reset");
}

#[test]
fn malformed_optional_attributes_are_discarded_and_routes_kept() {
    let (listener, speaker, net) = start();
    let mut peer = RawPeer::accept(&listener, net.host(9));
    let mut attrs = good_attrs();
    // ATOMIC_AGGREGATE must be empty and AGGREGATOR 8 bytes: both discarded (sections 7.6, 7.7).
    attrs.push(attr(0x40, 6, &[1]));
    attrs.push(attr(0xc0, 7, &[1, 2, 3]));
    peer.send(&update(&attrs, &NLRI));
    assert!(wait_received(&speaker, 2), "{:?}", speaker.neighbors());
}

#[test]
fn unparseable_nlri_resets_the_session_with_the_right_notification() {
    let (listener, speaker, net) = start();
    let mut peer = RawPeer::accept(&listener, net.host(9));
    peer.send(&update(&good_attrs(), &[33, 10, 0, 0, 0, 0]));
    assert_eq!(
        peer.notification(),
        Some((3, 10)),
        "UPDATE Message Error / Invalid Network Field"
    );
    let peer_state = wait_for(WAIT, || {
        let p = speaker.neighbors().into_iter().next()?;
        p["last_error"]
            .as_str()
            .filter(|e| e.contains("Invalid Network Field"))
            .map(str::to_owned)
    });
    assert!(peer_state.is_some(), "{:?}", speaker.neighbors());
}

#[test]
fn garbage_after_the_handshake_gets_a_header_error_not_a_crash() {
    let (listener, mut speaker, net) = start();
    let mut peer = RawPeer::accept(&listener, net.host(9));
    peer.send(&[0xAB; 64]);
    assert_eq!(
        peer.notification(),
        Some((1, 1)),
        "Message Header Error / Connection Not Synchronized"
    );
    assert!(speaker.daemon.running(), "speaker survived garbage");
    // It reconnects and works again.
    let mut again = RawPeer::accept(&listener, net.host(9));
    again.send(&update(&good_attrs(), &NLRI));
    assert!(wait_received(&speaker, 2));
}

#[test]
fn prefix_limit_closes_with_a_cease_and_reconnects_later() {
    let (listener, speaker, net) = start_with(
        "import = { enabled = true, max_prefixes = 1, on_max_prefixes = \"restart\", restart_after = \"1s\" }",
    );
    let mut peer = RawPeer::accept(&listener, net.host(9));
    let started = std::time::Instant::now();
    peer.send(&update(&good_attrs(), &NLRI));
    assert_eq!(
        peer.notification(),
        Some((6, 1)),
        "Cease / Maximum Number of Prefixes Reached"
    );
    // The speaker comes back after `restart_after`, not at once.
    let _again = RawPeer::accept(&listener, net.host(9));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "reconnected too early"
    );
    let _ = speaker;
}

#[test]
fn mutated_updates_never_take_the_speaker_down_and_it_still_works_after() {
    let (listener, speaker, net) = start();
    listener.set_nonblocking(false).unwrap();
    let seeds = vec![
        update(&good_attrs(), &NLRI),
        update(&[], &[]),
        update(&good_attrs(), &[16, 10, 1, 32, 192, 0, 2, 1]),
    ];
    let mut rng = testkit::fuzz::Rng::new(7606);
    let mut sent = 0;
    let mut sessions = 0;
    // A few sessions' worth of mutated UPDATEs (bodies mutated, framing kept valid so they reach
    // the UPDATE parser); each session lasts until the speaker resets it.
    while sessions < 3 {
        let mut peer = RawPeer::accept(&listener, net.host(9));
        sessions += 1;
        for _ in 0..400 {
            let mut body = seeds[rng.below(seeds.len())][19..].to_vec();
            for _ in 0..1 + rng.below(4) {
                testkit::fuzz::mutate(&mut rng, &mut body, &seeds);
            }
            body.truncate(4096 - 19);
            let message = frame(MessageType::Update, &body);
            if peer.stream.write_all(&message).is_err() {
                break;
            }
            sent += 1;
        }
        // Let the speaker finish with what was sent (it may have reset the session).
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("{sent} mutated UPDATEs over {sessions} sessions");
    // The speaker is whole: it reconnects, takes a good UPDATE, answers its control API, and
    // nothing panicked.
    let mut peer = RawPeer::accept(&listener, net.host(9));
    peer.send(&update(&good_attrs(), &NLRI));
    assert!(wait_received(&speaker, 2), "{:?}", speaker.neighbors());
    let (ok, routes) = speaker.cli(&["show", "routes", "received", "raw"]);
    assert!(ok && routes.contains("10.1.1.0/24"), "{routes}");
    let admin = std::net::SocketAddr::from((net.host(1), 9179));
    let (_, metrics) = testkit::http::get(admin, "/metrics").expect("metrics");
    assert!(metrics.contains("bgp_speaker_panics_total 0"), "{metrics}");
    let (status, _) = testkit::http::get(admin, "/healthz").unwrap();
    assert_eq!(status, 200);
}
