//! Building the answer to one question, without any I/O: zone data for static names,
//! steering for service hostnames.

use std::cell::Cell;
use std::net::IpAddr;
use std::sync::Arc;

use config::service::AnswerMode;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde::Serialize;

use crate::canary::{Side, Split};
use crate::geo::Location;
use crate::health::Family;
use crate::health::{HealthState, NodeView};
use crate::prepared::Prepared;
use crate::state::Shared;
use crate::steering::{Choice, Ranking, choose};
use crate::zone::Lookup;

/// What to send back.
#[derive(Debug, Default)]
pub struct Outcome {
    pub rcode: ResponseCode,
    /// AA: false only for REFUSED (not our zone).
    pub authoritative: bool,
    pub answers: Vec<Record>,
    /// The SOA for negative answers.
    pub soa: Option<Record>,
    /// ECS scope prefix to answer with: 0 for static data.
    pub scope: u8,
    /// The steering decision, for service hostnames (metrics, `explain`).
    pub steering: Option<Steered>,
}

/// How a service answer was decided.
#[derive(Debug, Clone, Serialize)]
pub struct Steered {
    pub service: String,
    /// Site names, best first.
    pub ranking: Vec<String>,
    /// Each ranked site's distance from the client in km, when both have coordinates.
    pub distances_km: Vec<Option<f64>>,
    pub ranked_by: crate::steering::RankReason,
    pub choice: Option<Choice>,
    pub site: Option<String>,
    /// The answer's addresses (`explain` shows them once, as the answer).
    #[serde(skip)]
    pub addresses: Vec<IpAddr>,
    /// The client's side of the service's canary, when one is in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryAnswer>,
}

/// How the service's canary took part in an answer.
#[derive(Debug, Clone, Serialize)]
pub struct CanaryAnswer {
    pub version: String,
    pub share: f64,
    /// An operator withdrew the canary: nobody is on its side.
    pub withdrawn: bool,
    /// The client's side.
    pub side: Side,
    /// The answer named the canary's nodes (its side, with a canary node up at the site).
    pub answered: bool,
}

/// A location as `explain` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LocationView {
    pub network: String,
    pub country: Option<String>,
    pub continent: Option<String>,
    pub coordinates: Option<(f64, f64)>,
}

impl From<&Location> for LocationView {
    fn from(l: &Location) -> Self {
        Self {
            network: l.network.to_string(),
            country: l.country.map(|c| c.to_string()),
            continent: l.continent.map(|c| c.as_str().to_owned()),
            coordinates: l.coordinates,
        }
    }
}

/// Answers `qname` (lower-cased) / `qtype` for a client at `client` (the ECS address or the
/// source address).
pub fn answer(shared: &Shared, qname: &Name, qtype: RecordType, client: IpAddr) -> Outcome {
    let prepared = shared.prepared();
    let Some(zone) = prepared.zones.zone_for(qname) else {
        return Outcome {
            rcode: ResponseCode::Refused,
            ..Outcome::default()
        };
    };
    // A name answered from health: records, or NODATA with the zone's SOA.
    let computed = |answers: Vec<Record>| Outcome {
        rcode: ResponseCode::NoError,
        authoritative: true,
        soa: answers.is_empty().then(|| zone.negative_soa()),
        answers,
        ..Outcome::default()
    };
    if let Some(&service) = prepared.zones.services.get(qname) {
        let (records, steered, scope) = steer(shared, &prepared, service, qname, qtype, client);
        return Outcome {
            scope,
            steering: Some(steered),
            ..computed(records)
        };
    }
    if let Some(&pathway) = prepared.zones.pathways.get(qname) {
        let (records, scope) = pathway_records(shared, &prepared, pathway, qname, qtype, client);
        return Outcome {
            scope,
            ..computed(records)
        };
    }
    match zone.lookup(qname, qtype) {
        Lookup::Answer(records) => {
            let mut answers: Vec<Record> = records.into_iter().cloned().collect();
            let mut outcome = Outcome {
                rcode: ResponseCode::NoError,
                authoritative: true,
                ..Outcome::default()
            };
            // An alias of a service hostname: add the steered answer, as the resolver would
            // otherwise have to ask again.
            if let Some(RData::CNAME(target)) = answers.last().map(|r| &r.data) {
                let target = target.0.to_lowercase();
                if let Some(&service) = prepared.zones.services.get(&target) {
                    let (records, steered, scope) =
                        steer(shared, &prepared, service, &target, qtype, client);
                    answers.extend(records);
                    outcome.scope = scope;
                    outcome.steering = Some(steered);
                }
            }
            outcome.answers = answers;
            outcome
        }
        Lookup::NoData => Outcome {
            rcode: ResponseCode::NoError,
            authoritative: true,
            soa: Some(zone.negative_soa()),
            ..Outcome::default()
        },
        Lookup::NxDomain => Outcome {
            rcode: ResponseCode::NXDomain,
            authoritative: true,
            soa: Some(zone.negative_soa()),
            ..Outcome::default()
        },
    }
}

/// The records for a service hostname, how they were chosen, and the ECS scope.
pub fn steer(
    shared: &Shared,
    prepared: &Arc<Prepared>,
    service: usize,
    qname: &Name,
    qtype: RecordType,
    client: IpAddr,
) -> (Vec<Record>, Steered, u8) {
    let health = shared.health.read().unwrap_or_else(|e| e.into_inner());
    let atlas = shared.atlas();
    let location = shared.geo().and_then(|g| g.locate(client));
    let location = location.as_ref();
    let svc = &prepared.deployment.services[service];
    let health: &HealthState = &health;
    // The order and scope are the atlas's, as on the fast path; ranking the client again gives
    // `explain` the distances and the reason (the atlas was compiled with this same rule).
    let placed = atlas.place(client);
    let mut ranking: Ranking = prepared.steering.rank(client, location);
    ranking.order = placed.order.to_vec();
    let family = if qtype == RecordType::AAAA {
        Family::V6
    } else {
        Family::V4
    };
    let choice = choose(&ranking, health, svc, family);
    let names = |order: &[usize]| {
        order
            .iter()
            .map(|i| prepared.deployment.sites[*i].name.clone())
            .collect::<Vec<_>>()
    };
    let mut steered = Steered {
        service: svc.name.clone(),
        ranking: names(&ranking.order),
        distances_km: ranking
            .order
            .iter()
            .map(|i| ranking.distances.get(*i).copied().flatten().map(f64::round))
            .collect(),
        ranked_by: ranking.reason.clone(),
        choice: choice.clone(),
        site: None,
        addresses: Vec::new(),
        canary: None,
    };
    let want_v4 = matches!(qtype, RecordType::A | RecordType::ANY);
    let want_v6 = qtype == RecordType::AAAA;
    if !want_v4 && !want_v6 {
        // Other types at a service name: NODATA, the same for every client.
        return (Vec::new(), steered, 0);
    }
    let changing_ttl = prepared
        .deployment
        .dns
        .as_ref()
        .map_or(5, |d| d.changing_ttl);
    let ttl = match &choice {
        Some(c) if svc.answer == AnswerMode::Nodes => health.answer_ttl(
            &ranking.order,
            c.site,
            svc.ttl,
            changing_ttl,
            std::time::Instant::now(),
        ),
        _ => svc.ttl,
    };
    let (canary, mut scope) = match svc.answer {
        AnswerMode::Nodes => canary_side(svc, health, client, placed.scope),
        AnswerMode::Anycast => (None, placed.scope),
    };
    let side = canary.map(|(_, _, side)| side);
    let addresses: Vec<IpAddr> = match svc.answer {
        AnswerMode::Anycast => svc
            .anycast_addresses
            .iter()
            .copied()
            .filter(|a| a.is_ipv4() == want_v4)
            .collect(),
        AnswerMode::Nodes => match &choice {
            Some(c) => {
                steered.site = Some(health.sites[c.site].name.clone());
                let picked = node_addresses(health, c.site, svc, c.fail_open, side, want_v4);
                if let Some((canary, withdrawn, side)) = canary {
                    steered.canary = Some(CanaryAnswer {
                        version: canary.version.clone(),
                        share: canary.share,
                        withdrawn,
                        side,
                        answered: picked.canary,
                    });
                }
                picked.addresses
            }
            None => Vec::new(),
        },
    };
    steered.addresses = addresses.clone();
    let records = address_records(qname, ttl, &addresses);
    // Anycast answers are the same everywhere: scope 0 lets resolvers cache one answer.
    if svc.answer == AnswerMode::Anycast {
        scope = 0;
    }
    (records, steered, scope)
}

/// The addresses an answer names, and whether they are the canary's.
struct Picked {
    addresses: Vec<IpAddr>,
    canary: bool,
}

/// Up to the service's `answer_count` addresses of the family (`v4`) of `site`'s nodes
/// carrying `svc`, weighted by spare capacity: those up, narrowed to the client's `side` of
/// the canary ([`crate::canary::narrow`]), or every one when failing open (better a
/// maybe-broken node than none).
fn node_addresses(
    health: &HealthState,
    site: usize,
    svc: &config::service::Service,
    fail_open: bool,
    side: Option<Side>,
    v4: bool,
) -> Picked {
    let address = |n: &NodeView| {
        if v4 {
            n.ipv4.map(IpAddr::V4)
        } else {
            n.ipv6.map(IpAddr::V6)
        }
    };
    let nodes: Vec<&NodeView> = health.sites[site]
        .nodes
        .iter()
        .filter(|n| n.services.contains(&svc.name) && (fail_open || n.up()))
        .filter(|n| address(n).is_some())
        .collect();
    let (canary, rest): (Vec<&NodeView>, Vec<&NodeView>) = match &svc.canary {
        Some(c) if side.is_some() && !fail_open => {
            nodes.iter().partition(|n| c.includes(n.version.as_deref()))
        }
        _ => Default::default(),
    };
    let candidates = crate::canary::narrow(side, &nodes, &canary, &rest);
    Picked {
        addresses: pick_weighted(candidates, usize::from(svc.answer_count))
            .into_iter()
            .filter_map(address)
            .collect(),
        canary: side == Some(Side::Canary) && !canary.is_empty(),
    }
}

fn address_records(qname: &Name, ttl: u32, addresses: &[IpAddr]) -> Vec<Record> {
    addresses
        .iter()
        .map(|a| {
            let data = match a {
                IpAddr::V4(v4) => RData::A(A(*v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
            };
            Record::from_rdata(qname.clone(), ttl, data)
        })
        .collect()
}

/// The records for a content steering pathway's host: its site's nodes for the service, the
/// same for every client but for the service's canary (then scoped to the client's network).
/// A site with no node up still answers all of its nodes: the pathway is the player's choice
/// (the steering server tells it where to go), and a name that stops resolving would only turn
/// a slow site into errors.
fn pathway_records(
    shared: &Shared,
    prepared: &Prepared,
    pathway: crate::zone::Pathway,
    qname: &Name,
    qtype: RecordType,
    client: IpAddr,
) -> (Vec<Record>, u8) {
    let want_v4 = matches!(qtype, RecordType::A | RecordType::ANY);
    if !want_v4 && qtype != RecordType::AAAA {
        return (Vec::new(), 0);
    }
    let health = shared.health.read().unwrap_or_else(|e| e.into_inner());
    let svc = &prepared.deployment.services[pathway.service];
    let (canary, scope) = canary_side(svc, &health, client, 0);
    let side = canary.map(|(_, _, side)| side);
    let mut addresses = node_addresses(&health, pathway.site, svc, false, side, want_v4).addresses;
    if addresses.is_empty() {
        addresses = node_addresses(&health, pathway.site, svc, true, None, want_v4).addresses;
    }
    (address_records(qname, svc.ttl, &addresses), scope)
}

/// `svc`'s canary when it has one (whether withdrawn, the client's side), and the scope of an
/// answer (`atlas_scope`, or narrower when the answer depends on the side).
fn canary_side<'a>(
    svc: &'a config::service::Service,
    health: &HealthState,
    client: IpAddr,
    atlas_scope: u8,
) -> (Option<(&'a config::service::Canary, bool, Side)>, u8) {
    match crate::canary::of(svc, health) {
        Some((canary, withdrawn)) => {
            let scope = Split::scope(client, atlas_scope);
            let side = Split::new(&svc.name, canary, withdrawn).side(client, scope);
            (Some((canary, withdrawn, side)), scope)
        }
        None => (None, atlas_scope),
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64) | 1
    );
}

/// Whether this query is one of the sampled ones for the query log (`dns.query_log_sample`).
pub(crate) fn sampled(prepared: &Prepared) -> bool {
    let rate = prepared
        .deployment
        .dns
        .as_ref()
        .map_or(0.0, |d| d.query_log_sample);
    rate > 0.0 && ((random() >> 11) as f64 / (1u64 << 53) as f64) < rate
}

/// xorshift64*: spreading answers needs no cryptographic randomness, and this costs a few ns.
fn random() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// Up to `count` distinct nodes, drawn with probability proportional to spare capacity, so
/// load spreads over the site and a busy node is answered less often.
pub(crate) fn pick_weighted<'a>(nodes: &[&'a NodeView], count: usize) -> Vec<&'a NodeView> {
    let (mut pool, mut picked) = (Vec::new(), Vec::new());
    pick_weighted_into(
        nodes.iter().map(|n| spare(n)).enumerate(),
        count,
        &mut pool,
        &mut picked,
    );
    picked.into_iter().map(|i| nodes[i]).collect()
}

/// The weight of a node in [`pick_weighted`]: its spare capacity, at least 1.
pub(crate) fn spare(node: &NodeView) -> f64 {
    (f64::from(node.capacity_mbps) * (1.0 - node.load.clamp(0.0, 1.0))).max(1.0)
}

/// [`pick_weighted`] over `(index, weight)` candidates, into buffers the caller keeps between
/// queries (the UDP fast path answers without allocating); `picked` gets the chosen indices.
pub(crate) fn pick_weighted_into(
    candidates: impl Iterator<Item = (usize, f64)>,
    count: usize,
    pool: &mut Vec<(usize, f64)>,
    picked: &mut Vec<usize>,
) {
    pool.clear();
    pool.extend(candidates);
    picked.clear();
    let mut total: f64 = pool.iter().map(|(_, w)| w).sum();
    while picked.len() < count && !pool.is_empty() {
        if pool.len() == 1 {
            // The last candidate needs no draw.
            picked.push(pool[0].0);
            break;
        }
        let mut target = (random() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let mut index = pool.len() - 1;
        for (i, (_, w)) in pool.iter().enumerate() {
            if target < *w {
                index = i;
                break;
            }
            target -= w;
        }
        let (chosen, weight) = pool.swap_remove(index);
        total -= weight;
        picked.push(chosen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, capacity: u32, load: f64) -> NodeView {
        NodeView {
            name: name.into(),
            ipv4: Some("127.0.0.1".parse().unwrap()),
            ipv6: None,
            services: vec!["live".into()],
            capacity_mbps: capacity,
            healthy: true,
            load,
            admin: None,
            version: None,
        }
    }

    #[test]
    fn weighted_choice_prefers_spare_capacity_and_never_repeats() {
        let (a, b) = (node("a", 1000, 0.0), node("b", 1000, 0.9));
        let mut first_a = 0;
        for _ in 0..2000 {
            let picked = pick_weighted(&[&a, &b], 2);
            assert_eq!(picked.len(), 2);
            assert_ne!(picked[0].name, picked[1].name);
            first_a += usize::from(picked[0].name == "a");
        }
        // Spare capacity 1000 vs 100: "a" first about 91% of the time.
        assert!((1700..1950).contains(&first_a), "{first_a}");
    }
}
