//! The general path: any query, decoded by hickory-proto, answered by
//! [`respond`](super::respond::respond), encoded within the transport's size limit (UDP
//! truncates and sets TC). Every error answer is made here, FORMERR included.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

use hickory_proto::rr::rdata::opt::EdnsOption;

use super::edns::{CookieCheck, OptScan, scan};
use super::hot::MAX_UDP_PAYLOAD;
use super::respond::{Question, respond};
use crate::cookie;
use crate::state::Shared;

/// Where the answer goes, which bounds its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Writes the answer to `query` into `out`; false when nothing must be sent (not a query,
/// or not even a header).
pub fn answer(
    shared: &Shared,
    query: &[u8],
    source: IpAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    let opts = scan(query);
    let (message, limit) = match Message::from_vec(query) {
        Ok(request) if request.metadata.message_type != MessageType::Query => return false,
        Ok(request) if opts.malformed() => {
            let limit = payload_limit(request.edns.as_ref(), transport);
            let meta = &request.metadata;
            (
                formerr(shared, meta.id, meta.op_code, meta.recursion_desired, opts),
                limit,
            )
        }
        Ok(request) => {
            let question = (request.queries.len() == 1).then(|| {
                let q = &request.queries[0];
                Question {
                    name: q.name().clone(),
                    qtype: q.query_type(),
                    class: q.query_class(),
                }
            });
            let mut reply = respond(
                shared,
                &request.metadata,
                question,
                request.edns.as_ref(),
                source,
            );
            // A client cookie gets it back with a server cookie (RFC 7873 section 5.2).
            if let (CookieCheck::Present(at), Some(edns)) = (&opts.cookie, reply.edns.as_mut())
                && let Some(client) = query.get(at.start..at.start + cookie::CLIENT_LEN)
                && let Ok(client) = client.try_into()
            {
                let cookies = &shared.prepared().cookies;
                let option = cookie::answer(cookies, client, source, cookie::now());
                edns.options_mut()
                    .insert(EdnsOption::Unknown(cookie::OPTION, option.to_vec()));
            }
            let mut message = Message::new(
                reply.metadata.id,
                MessageType::Response,
                reply.metadata.op_code,
            );
            message.metadata = reply.metadata;
            message.add_queries(request.queries.iter().cloned());
            message.add_answers(reply.answers);
            if let Some(soa) = reply.soa {
                message.add_authority(soa);
            }
            if let Some(edns) = reply.edns {
                message.set_edns(edns);
            }
            (message, payload_limit(request.edns.as_ref(), transport))
        }
        Err(_) => {
            // Undecodable (a name over 255 bytes, a bad label, records past the end): FORMERR
            // with the header's id and flags (RFC 1035 section 4.1.1), and OPT if it had one.
            let Ok(header) = hickory_proto::op::Header::read(&mut BinDecoder::new(query)) else {
                return false;
            };
            let meta = header.metadata;
            if meta.message_type != MessageType::Query {
                return false;
            }
            (
                formerr(shared, meta.id, meta.op_code, meta.recursion_desired, opts),
                match transport {
                    Transport::Udp => 512,
                    Transport::Tcp => u16::MAX,
                },
            )
        }
    };
    let mut encoder = BinEncoder::new(out);
    encoder.set_max_size(limit);
    // Records that do not fit are left out and TC is set.
    if message.emit(&mut encoder).is_err() {
        out.clear();
        let mut tc = message.truncate();
        tc.metadata.truncation = true;
        let mut encoder = BinEncoder::new(out);
        encoder.set_max_size(limit);
        return tc.emit(&mut encoder).is_ok();
    }
    true
}

/// The largest answer the client takes over `transport`.
fn payload_limit(edns: Option<&Edns>, transport: Transport) -> u16 {
    match transport {
        Transport::Udp => edns.map_or(512, |e| e.max_payload().clamp(512, MAX_UDP_PAYLOAD)),
        Transport::Tcp => u16::MAX,
    }
}

/// FORMERR without a question; with OPT when the query had one (RFC 6891 section 6.1.1).
fn formerr(
    shared: &Shared,
    id: u16,
    op_code: OpCode,
    recursion_desired: bool,
    opts: OptScan,
) -> Message {
    let mut message = Message::error_msg(id, op_code, ResponseCode::FormErr);
    message.metadata.recursion_desired = recursion_desired;
    if opts.count > 0 {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        message.set_edns(edns);
    }
    shared
        .metrics
        .queries
        .with_label_values(&["-", "Form Error"])
        .inc();
    message
}
