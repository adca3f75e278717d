//! The DNS request handler: protocol rules around [`answer`](crate::answer::answer) — EDNS,
//! Client Subnet (RFC 7871), REFUSED outside our zones, no recursion — with hickory-server
//! doing the wire work (parsing, FORMERR for undecodable queries, truncation over UDP, TCP).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_server::proto::rr::{DNSClass, Record};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::answer::{Outcome, answer};
use crate::state::Shared;

/// Largest UDP payload we offer (the DNS flag day 2020 value, avoids IP fragmentation).
const MAX_UDP_PAYLOAD: u16 = 1232;

/// Handles every query of one geodns instance.
#[derive(Clone)]
pub struct GeoHandler {
    pub shared: Arc<Shared>,
}

/// What the query's Client Subnet option asks.
enum Subnet {
    None,
    /// Valid: the address to locate and the option to echo.
    Valid(ClientSubnet),
    /// Violates RFC 7871 section 7.1.2: answer FORMERR.
    Malformed,
}

fn client_subnet(edns: Option<&Edns>) -> Subnet {
    let Some(EdnsOption::Subnet(cs)) = edns.and_then(|e| e.option(EdnsCode::Subnet)) else {
        return Subnet::None;
    };
    let masked = ipnet::IpNet::new(cs.addr(), cs.source_prefix()).map(|n| n.network());
    // A query carries SCOPE 0, and no address bits past SOURCE PREFIX-LENGTH.
    if cs.scope_prefix() != 0 || masked.map_or(true, |m| m != cs.addr()) {
        return Subnet::Malformed;
    }
    Subnet::Valid(*cs)
}

fn qtype_label(t: hickory_server::proto::rr::RecordType) -> String {
    t.to_string()
}

#[async_trait::async_trait]
impl RequestHandler for GeoHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut handle: R,
    ) -> ResponseInfo {
        let started = Instant::now();
        let mut meta = Metadata::response_from_request(&request.metadata);
        // We never recurse (RFC 1035 section 4.1.1: RA = 0).
        meta.recursion_available = false;
        let request_edns = request.edns.as_ref();
        let mut edns = request_edns.map(|q| {
            let mut e = Edns::new();
            e.set_max_payload(q.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            e
        });

        let info = request.request_info();
        let (outcome, qtype) = match (&info, request.metadata.op_code, client_subnet(request_edns))
        {
            _ if request_edns.is_some_and(|e| e.version() > 0) => {
                // RFC 6891 section 6.1.3: only version 0 exists.
                (
                    Outcome {
                        rcode: ResponseCode::BADVERS,
                        ..Outcome::default()
                    },
                    String::from("-"),
                )
            }
            (_, op, _) if op != OpCode::Query => (
                Outcome {
                    rcode: ResponseCode::NotImp,
                    ..Outcome::default()
                },
                String::from("-"),
            ),
            (Err(_), _, _) | (_, _, Subnet::Malformed) => (
                Outcome {
                    rcode: ResponseCode::FormErr,
                    ..Outcome::default()
                },
                String::from("-"),
            ),
            (Ok(info), _, subnet) => {
                let query = info.query;
                let qtype = query.query_type();
                if query.query_class() != DNSClass::IN {
                    (
                        Outcome {
                            rcode: ResponseCode::Refused,
                            ..Outcome::default()
                        },
                        qtype_label(qtype),
                    )
                } else {
                    // RFC 7871 section 7.1.2: SOURCE PREFIX-LENGTH 0 means "use the resolver's
                    // own address"; the option is still echoed, with scope 0.
                    let source = request.src().ip().to_canonical();
                    let (client, echo): (IpAddr, Option<ClientSubnet>) = match subnet {
                        Subnet::Valid(cs) if cs.source_prefix() > 0 => (cs.addr(), Some(cs)),
                        Subnet::Valid(cs) => (source, Some(cs)),
                        _ => (source, None),
                    };
                    let qname = query.name().clone().into();
                    let outcome = answer(&self.shared, &qname, qtype, client);
                    if let (Some(mut cs), Some(e)) = (echo, edns.as_mut()) {
                        let scope = if cs.source_prefix() == 0 {
                            0
                        } else {
                            outcome.scope
                        };
                        cs.set_scope_prefix(scope);
                        e.options_mut().insert(EdnsOption::Subnet(cs));
                    }
                    (outcome, qtype_label(qtype))
                }
            }
        };

        meta.response_code = outcome.rcode;
        meta.authoritative = outcome.authoritative;
        if let Some(steered) = &outcome.steering {
            let site = steered
                .site
                .as_deref()
                .unwrap_or(if steered.addresses.is_empty() {
                    "-"
                } else {
                    "anycast"
                });
            self.shared
                .metrics
                .answers_by_site
                .with_label_values(&[steered.service.as_str(), site])
                .inc();
            if steered.choice.as_ref().is_some_and(|c| c.fail_open) {
                self.shared.metrics.fail_open.inc();
            }
        }
        let rcode_label = outcome.rcode.to_string();
        self.shared
            .metrics
            .queries
            .with_label_values(&[qtype.as_str(), rcode_label.as_str()])
            .inc();

        let soa: Vec<&Record> = outcome.soa.iter().collect();
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            meta,
            outcome.answers.iter(),
            [],
            soa,
            [],
        );
        let result = handle.send_response(response).await;
        self.shared
            .metrics
            .latency
            .observe(started.elapsed().as_secs_f64());
        result.unwrap_or_else(|_| {
            let mut failed = meta;
            failed.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata: failed,
                counts: HeaderCounts::default(),
            })
        })
    }
}
