//! One query in, one answer out, whatever the transport: the hot shape through [`fast`] (the
//! atlas and a worker's memo, no general parser), everything else and every error through [`slow`].
//!
//! The two paths must agree; `tests/paths_agree.rs` checks the fast answer against the slow
//! one over generated queries.

pub mod edns;
pub mod hot;
mod respond;
pub mod slow;

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::answer::{pick_weighted_into, sampled};
use crate::canary::Split;
use crate::health::Family;
use crate::health::changing_window;
use crate::memo::Memo;
use crate::rrl::Verdict;
use crate::state::Shared;
use crate::steering::{SiteState, pick_site};
use hot::HotQuery;
pub use slow::Transport;

/// Writes the answer to a UDP datagram into `out`; false when nothing must be sent. `memo` is
/// the calling worker's (see `memo`), `now` when its batch of datagrams arrived. Responses are
/// rate limited per source prefix first (see `rrl`); TCP, whose sources cannot be spoofed, is
/// not.
pub fn handle_udp(
    shared: &Shared,
    memo: &mut Memo,
    query: &[u8],
    from: SocketAddr,
    now: Instant,
    out: &mut Vec<u8>,
) -> bool {
    if !plausible(query, from) {
        return false;
    }
    memo.refresh(shared);
    let hot = HotQuery::parse(query);
    if let Some(limiter) = &memo.view.limiter
        && !proven(&memo.view.prepared.cookies, hot.as_ref(), query, from.ip())
    {
        let tick = crate::rrl::Tick::now();
        match limiter.check(from.ip(), tick, &mut memo.tally.limited) {
            Verdict::Send => {}
            Verdict::Slip => {
                memo.tally.slipped.inc();
                return crate::rrl::slipped(query, out);
            }
            Verdict::Drop => {
                memo.tally.dropped.inc();
                return false;
            }
        }
    }
    if let Some(hot) = hot
        && fast(shared, memo, &hot, query, from.ip(), now, out)
    {
        return true;
    }
    slow::answer(shared, query, from.ip(), Transport::Udp, out)
}

/// Whether `query` presents a server cookie issued to `source` (by any instance sharing the
/// secret): its source is then proven, not spoofed, and exempt from rate limiting. The hot
/// shape's cookie was found while parsing; any other query's OPT is scanned for it.
fn proven(
    cookies: &crate::cookie::Jar,
    hot: Option<&HotQuery>,
    query: &[u8],
    source: IpAddr,
) -> bool {
    let at = match hot {
        Some(hot) => hot.cookie.clone(),
        None => match edns::scan(query).cookie {
            edns::CookieCheck::Present(at) => Some(at),
            _ => None,
        },
    };
    let Some(data) = at.and_then(|at| query.get(at)) else {
        return false;
    };
    match crate::cookie::presented(data) {
        crate::cookie::Presented::Both(client, server) => {
            cookies.valid(client, server, source, crate::cookie::now())
        }
        _ => false,
    }
}

/// Writes the answer to a query that came over TCP into `out` (the general path: TCP carries
/// few queries, the retries of truncated answers and zone tooling).
pub fn handle_tcp(shared: &Shared, query: &[u8], from: SocketAddr, out: &mut Vec<u8>) -> bool {
    plausible(query, from) && slow::answer(shared, query, from.ip(), Transport::Tcp, out)
}

/// Never answer what cannot be a query (too short, QR set), nor to addresses that cannot be
/// a client.
fn plausible(query: &[u8], from: SocketAddr) -> bool {
    query.len() >= 12 && query[2] & 0x80 == 0 && from.port() != 0 && !from.ip().is_unspecified()
}

/// Answers a hot query for a service hostname whose chosen site has addresses; false hands
/// it to the general path (static names, empty answers). `memo` was refreshed by the caller.
fn fast(
    shared: &Shared,
    memo: &mut Memo,
    hot: &HotQuery,
    q: &[u8],
    source: IpAddr,
    now: Instant,
    out: &mut Vec<u8>,
) -> bool {
    let Memo {
        view,
        scratch,
        tally,
    } = memo;
    let prepared = &view.prepared;
    let raw = &q[hot.name.clone()];
    // Names nearly always arrive in lower case, as the keys are: look the name up as it came
    // and lower-case it (a byte loop that cost more than the lookup) only when that misses.
    let service = match prepared.service_wire.get(raw) {
        Some(&service) => service,
        None => {
            let mut name = [0u8; hot::MAX_NAME];
            let Some(name) = name.get_mut(..raw.len()) else {
                return false;
            };
            name.copy_from_slice(raw);
            // Lower-casing the length bytes too is harmless: lengths are at most 63 (< 'A').
            name.make_ascii_lowercase();
            match prepared.service_wire.get(&*name) {
                Some(&service) => service,
                None => return false,
            }
        }
    };
    let svc = &prepared.deployment.services[service];
    if svc.answer != config::service::AnswerMode::Nodes {
        return false;
    }
    let client = hot.client(q, source);
    let placed = view.atlas.place(client);
    let health = &view.health;
    let v4 = hot.is_v4();
    let family = if v4 { Family::V4 } else { Family::V6 };
    let sites = view.choices.sites(service, family);
    let state = |i: usize| sites.get(i).map_or(SiteState::default(), |s| s.state);
    let Some((site, fail_open)) = pick_site(placed.order, state) else {
        return false;
    };
    let changing_ttl = prepared
        .deployment
        .dns
        .as_ref()
        .map_or(5, |d| d.changing_ttl);
    // Most of the time no site changed lately and the walk down the ranking can be skipped.
    let ttl = match view.choices.last_change {
        Some(t) if now.saturating_duration_since(t) < changing_window(svc.ttl) => {
            health.answer_ttl(placed.order, site, svc.ttl, changing_ttl, now)
        }
        _ => svc.ttl,
    };
    let (side, scope) = match view.choices.split(service) {
        Some(split) => {
            let scope = Split::scope(client, placed.scope);
            (Some(split.side(client, scope)), scope)
        }
        None => (None, placed.scope),
    };
    let scope = if hot.wants_scope() { scope } else { 0 };
    let cookie = hot
        .cookie
        .as_ref()
        .and_then(|at| q.get(at.start..at.start + crate::cookie::CLIENT_LEN))
        .and_then(|client| client.try_into().ok())
        .map(|client| {
            crate::cookie::answer(&prepared.cookies, client, source, crate::cookie::now())
        });
    let nodes = &health.sites[site].nodes;
    pick_weighted_into(
        sites[site].candidates(fail_open, side).iter().copied(),
        usize::from(svc.answer_count),
        &mut scratch.pool,
        &mut scratch.picked,
    );
    scratch.addresses.clear();
    for &i in &scratch.picked {
        let node = &nodes[i];
        match (node.ipv4, node.ipv6) {
            (Some(a), _) if v4 => scratch.addresses.push(IpAddr::V4(a)),
            (_, Some(a)) if !v4 => scratch.addresses.push(IpAddr::V6(a)),
            _ => return false,
        }
    }
    if scratch.addresses.is_empty() {
        return false;
    }
    hot::write_answer(q, hot, ttl, scope, cookie.as_ref(), &scratch.addresses, out);
    let site_name = health.sites[site].name.as_str();
    if sampled(prepared) {
        let qname = String::from_utf8_lossy(raw);
        tracing::info!(target: "query", %client, name = %qname, qtype = if v4 { "A" } else { "AAAA" }, site = site_name, ttl, fail_open, "answered");
    }
    let canary = sites[site].answers_canary(fail_open, side);
    tally.answer((service, svc.name.as_str()), (site, site_name), canary);
    if fail_open {
        shared.metrics.fail_open.inc();
    }
    tally.answered[usize::from(!v4)].inc();
    true
}

/// Answers queries as a UDP worker does (with a memo of its own) and as the TCP path does,
/// without sockets: for property tests, fuzzing and benchmarks of the answer itself.
pub struct Worker {
    shared: std::sync::Arc<Shared>,
    memo: Memo,
}

impl Worker {
    pub fn new(shared: std::sync::Arc<Shared>) -> Self {
        let memo = Memo::new(&shared);
        Self { shared, memo }
    }

    /// The answer a UDP worker sends, into `out`; false when it sends nothing.
    pub fn udp(&mut self, query: &[u8], from: SocketAddr, out: &mut Vec<u8>) -> bool {
        handle_udp(
            &self.shared,
            &mut self.memo,
            query,
            from,
            Instant::now(),
            out,
        )
    }

    /// The answer of the general path alone, as UDP would send it.
    pub fn general(&self, query: &[u8], from: SocketAddr, out: &mut Vec<u8>) -> bool {
        plausible(query, from) && slow::answer(&self.shared, query, from.ip(), Transport::Udp, out)
    }

    /// The answer sent over TCP (without the length prefix).
    pub fn tcp(&self, query: &[u8], from: SocketAddr, out: &mut Vec<u8>) -> bool {
        handle_tcp(&self.shared, query, from, out)
    }
}
