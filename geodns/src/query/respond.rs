//! DNS protocol rules around [`answer`](crate::answer::answer): EDNS, Client Subnet
//! (RFC 7871), REFUSED outside our zones, no recursion. [`respond`] is the general path's
//! (`slow`), for UDP and TCP alike.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};

use super::hot::MAX_UDP_PAYLOAD;
use crate::answer::{Outcome, answer};
use crate::state::Shared;

/// What the query's Client Subnet option asks.
pub enum Subnet {
    None,
    /// Valid: the address to locate and the option to echo.
    Valid(ClientSubnet),
    /// Violates RFC 7871 section 7.1.2: answer FORMERR.
    Malformed,
}

pub fn client_subnet(edns: Option<&Edns>) -> Subnet {
    let Some(EdnsOption::Subnet(cs)) = edns.and_then(|e| e.option(EdnsCode::Subnet)) else {
        return Subnet::None;
    };
    let masked = ipnet::IpNet::new(cs.addr(), cs.source_prefix())
        .ok()
        .map(|n| n.network());
    // A query carries SCOPE 0, and no address bits past SOURCE PREFIX-LENGTH.
    if cs.scope_prefix() != 0 || masked != Some(cs.addr()) {
        return Subnet::Malformed;
    }
    Subnet::Valid(*cs)
}

/// The single question of a query.
pub struct Question {
    pub name: Name,
    pub qtype: RecordType,
    pub class: DNSClass,
}

/// A response, before encoding.
pub struct Reply {
    pub metadata: Metadata,
    pub answers: Vec<Record>,
    pub soa: Option<Record>,
    pub edns: Option<Edns>,
}

/// Answers one query. `question` is `None` when the query does not have exactly one.
pub fn respond(
    shared: &Shared,
    request: &Metadata,
    question: Option<Question>,
    request_edns: Option<&Edns>,
    source: IpAddr,
) -> Reply {
    let mut meta = Metadata::response_from_request(request);
    // We never recurse (RFC 1035 section 4.1.1: RA = 0).
    meta.recursion_available = false;
    let mut edns = request_edns.map(|q| {
        let mut e = Edns::new();
        e.set_max_payload(q.max_payload().clamp(512, MAX_UDP_PAYLOAD));
        e
    });
    let mut qtype_label = "-".to_owned();
    let outcome = match (question, request.op_code, client_subnet(request_edns)) {
        // RFC 6891 section 6.1.3: only version 0 exists.
        _ if request_edns.is_some_and(|e| e.version() > 0) => Outcome {
            rcode: ResponseCode::BADVERS,
            ..Outcome::default()
        },
        (_, op, _) if op != OpCode::Query => Outcome {
            rcode: ResponseCode::NotImp,
            ..Outcome::default()
        },
        (None, _, _) | (_, _, Subnet::Malformed) => Outcome {
            rcode: ResponseCode::FormErr,
            ..Outcome::default()
        },
        (Some(q), _, subnet) => {
            qtype_label = q.qtype.to_string();
            if q.class != DNSClass::IN {
                Outcome {
                    rcode: ResponseCode::Refused,
                    ..Outcome::default()
                }
            } else {
                // RFC 7871 section 7.1.2: SOURCE PREFIX-LENGTH 0 means "use the resolver's own
                // address"; the option is still echoed, with scope 0.
                let source = source.to_canonical();
                let (client, echo) = match subnet {
                    Subnet::Valid(cs) if cs.source_prefix() > 0 => (cs.addr(), Some(cs)),
                    Subnet::Valid(cs) => (source, Some(cs)),
                    _ => (source, None),
                };
                let outcome = answer(shared, &q.name.to_lowercase(), q.qtype, client);
                if let (Some(mut cs), Some(e)) = (echo, edns.as_mut()) {
                    cs.set_scope_prefix(if cs.source_prefix() == 0 {
                        0
                    } else {
                        outcome.scope
                    });
                    e.options_mut().insert(EdnsOption::Subnet(cs));
                }
                outcome
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
        shared
            .metrics
            .answers_by_site
            .with_label_values(&[steered.service.as_str(), site])
            .inc();
        if let (Some(site), Some(c)) = (&steered.site, &steered.canary)
            && c.answered
        {
            shared
                .metrics
                .canary_answers
                .with_label_values(&[steered.service.as_str(), site])
                .inc();
        }
        if steered.choice.as_ref().is_some_and(|c| c.fail_open) {
            shared.metrics.fail_open.inc();
        }
    }
    let rcode = crate::metrics::rcode_label(outcome.rcode);
    shared
        .metrics
        .queries
        .with_label_values(&[qtype_label.as_str(), rcode])
        .inc();
    if crate::answer::sampled(&shared.prepared()) {
        let site = outcome
            .steering
            .as_ref()
            .and_then(|s| s.site.clone())
            .unwrap_or_default();
        tracing::info!(target: "query", %source, rcode = %rcode, qtype = %qtype_label, site, answers = outcome.answers.len(), "answered");
    }
    Reply {
        metadata: meta,
        answers: outcome.answers,
        soa: outcome.soa,
        edns,
    }
}
