//! ECS scope widening, as gdnsd does: an answer is valid for the largest block around the
//! client in which every address gets the same site order, so resolvers cache one answer for a
//! whole region instead of one per database network (RFC 7871 section 7.2.1 lets the scope be
//! shorter than the source prefix).
//!
//! Widening walks up from the client's database network one bit at a time and looks at every
//! network of the sibling half (including the gaps without data, which get the default order).
//! Results are cached per database network until the database or the configuration changes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use ipnet::IpNet;
use maxminddb::WithinOptions;

use crate::geo::GeoDb;
use crate::prepared::Prepared;
use crate::steering::Ranking;

/// Networks examined per sibling before giving up: widening must stay cheap on a full-size
/// database, and a region with that many distinct networks is not worth merging.
const BUDGET: usize = 512;

/// Cached widened scopes, valid for one (configuration, database) pair.
#[derive(Default)]
pub struct ScopeCache {
    inner: RwLock<Entries>,
}

#[derive(Default)]
struct Entries {
    prepared: usize,
    geo: usize,
    scopes: HashMap<IpNet, u8>,
}

impl ScopeCache {
    /// The scope for a client whose database network is `network` and ranking `ranking`.
    pub fn scope(
        &self,
        prepared: &Arc<Prepared>,
        geo: &Arc<GeoDb>,
        network: IpNet,
        ranking: &Ranking,
    ) -> u8 {
        // Network overrides and overrides inside the database network already fixed the scope.
        if ranking.scope != network.prefix_len() {
            return ranking.scope;
        }
        let key = (Arc::as_ptr(prepared) as usize, Arc::as_ptr(geo) as usize);
        {
            let entries = self.inner.read().unwrap_or_else(|e| e.into_inner());
            if (entries.prepared, entries.geo) == key
                && let Some(scope) = entries.scopes.get(&network)
            {
                return *scope;
            }
        }
        let scope = widen(prepared, geo, network, ranking);
        let mut entries = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if (entries.prepared, entries.geo) != key {
            *entries = Entries {
                prepared: key.0,
                geo: key.1,
                scopes: HashMap::new(),
            };
        }
        entries.scopes.insert(network, scope);
        scope
    }
}

fn to_ipnetwork(net: IpNet) -> Option<ipnetwork::IpNetwork> {
    ipnetwork::IpNetwork::new(net.addr(), net.prefix_len()).ok()
}

/// The shortest prefix around `network` whose every address ranks sites as `ranking` does.
fn widen(prepared: &Prepared, geo: &GeoDb, network: IpNet, ranking: &Ranking) -> u8 {
    let floor = if network.addr().is_ipv4() { 8 } else { 16 };
    let mut current = network;
    while current.prefix_len() > floor {
        let Some(parent) = current.supernet() else {
            break;
        };
        // Any network override inside the parent would answer part of it differently.
        if prepared
            .steering
            .override_networks()
            .any(|o| parent.contains(o) || o.contains(&parent.addr()))
        {
            break;
        }
        let sibling = parent
            .subnets(current.prefix_len())
            .ok()
            .and_then(|mut halves| halves.find(|h| *h != current));
        let Some(sibling) = sibling else { break };
        if !same_order(prepared, geo, sibling, ranking) {
            break;
        }
        current = parent;
    }
    current.prefix_len()
}

/// Whether every address of `block` gets the site order of `ranking`.
fn same_order(prepared: &Prepared, geo: &GeoDb, block: IpNet, ranking: &Ranking) -> bool {
    let Some(cidr) = to_ipnetwork(block) else {
        return false;
    };
    let options = WithinOptions::default().include_networks_without_data();
    let Ok(items) = geo.reader().within(cidr, options) else {
        return false;
    };
    let mut seen = 0;
    for item in items {
        seen += 1;
        if seen > BUDGET {
            return false;
        }
        let Ok(found) = item else { return false };
        let Ok(net) = found.network() else {
            return false;
        };
        let Ok(ipnet) = IpNet::new(net.network(), net.prefix()) else {
            return false;
        };
        let location = geo.locate_result(&found, ipnet);
        let probe: IpAddr = ipnet.addr();
        if prepared.steering.rank(probe, location.as_ref()).order != ranking.order {
            return false;
        }
    }
    seen > 0
}
