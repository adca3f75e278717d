//! One DNS question over UDP, as the lab's viewers and monitors ask it.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RData, RecordType};
use ipnet::IpNet;

/// An answer: the addresses and their TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub addresses: Vec<IpAddr>,
    pub ttl: u32,
}

/// Asks `server` for the A records of `name`. `subnet` adds EDNS Client Subnet as a resolver
/// would for a client there; `recursion` sets RD, as a stub asking its resolver does.
pub fn ask_a(
    socket: &UdpSocket,
    server: SocketAddr,
    name: &str,
    subnet: Option<IpNet>,
    recursion: bool,
    timeout: Duration,
) -> Result<Answer> {
    let id: u16 = rand_id();
    let name = Name::from_ascii(name).with_context(|| format!("bad name {name:?}"))?;
    let mut query = testkit::dnsload::query(&name, RecordType::A, subnet);
    query.metadata.id = id;
    query.metadata.recursion_desired = recursion;
    socket.set_read_timeout(Some(timeout))?;
    socket
        .send_to(&query.to_vec()?, server)
        .with_context(|| format!("cannot send to {server}"))?;
    let mut buf = [0u8; 4096];
    loop {
        let (n, from) = socket
            .recv_from(&mut buf)
            .with_context(|| format!("no answer from {server} within {timeout:?}"))?;
        let Ok(reply) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        // Late answers to earlier questions are skipped.
        if from != server || reply.metadata.id != id {
            continue;
        }
        let rcode = reply.metadata.response_code;
        if rcode != hickory_proto::op::ResponseCode::NoError {
            bail!("{server} answered {rcode}");
        }
        let mut ttl = u32::MAX;
        let addresses = reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => {
                    ttl = ttl.min(r.ttl);
                    Some(IpAddr::V4(a.0))
                }
                _ => None,
            })
            .collect::<Vec<_>>();
        return Ok(Answer {
            ttl: if addresses.is_empty() { 0 } else { ttl },
            addresses,
        });
    }
}

/// A query id that differs between calls (not a security measure: the lab's own network).
fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = std::process::id() as u16 ^ 0x5a5a;
    NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(40503) ^ seed
}
