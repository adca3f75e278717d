//! What a UDP worker remembers between queries, so the fast path does not redo per query what
//! changes only with the configuration or the location database.
//!
//! Why: profiled with `perf record` under `cargo bench -p geodns --bench dnsperf`, the user-space
//! part of a geo answer cost about twice gdnsd's (0.88 vs 0.40 µs per query), spread over
//! decoding the client's database record, ranking sites by great-circle distance, allocating
//! the candidate lists, and prometheus's label lookups (a hash and a lock per call). All of it
//! is a pure function of (configuration, database network) or of the metric's labels, so each
//! worker keeps it per database network and drops everything when either input is swapped.
//! Health is never memoized: it is read afresh for every query.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use prometheus::IntCounter;

use crate::geo::{GeoDb, Location};
use crate::metrics::Metrics;
use crate::state::{Prepared, Shared};
use crate::steering::Ranking;

/// Database networks remembered per worker; past it the memo starts over, which bounds memory
/// whatever the spread of clients.
const NETWORKS: usize = 1 << 16;

/// How a client is steered, before health: its location and the ranking of sites.
#[derive(Debug, Clone)]
pub struct Steered {
    pub location: Option<Location>,
    pub ranking: Ranking,
    /// The widened ECS scope, worked out when an answer first needs it.
    scope: Option<u8>,
}

impl Steered {
    fn new(prepared: &Prepared, client: IpAddr, location: Option<Location>) -> Self {
        let ranking = prepared.steering.rank(client, location.as_ref());
        Self {
            location,
            ranking,
            scope: None,
        }
    }

    /// The ECS scope to answer with (see `scope`).
    pub fn scope(&mut self, shared: &Shared, prepared: &Arc<Prepared>) -> u8 {
        *self
            .scope
            .get_or_insert_with(|| shared.scope(prepared, self.location.as_ref(), &self.ranking))
    }
}

/// One worker's memo.
pub struct Memo {
    /// The (configuration, database) the entries were made from.
    made_from: (usize, usize),
    steered: foldhash::HashMap<IpNet, Steered>,
    /// For clients whose ranking is not the network's (a network override names them).
    unshared: Option<Steered>,
    /// `dns_answers_by_site_total` per (service, site) index.
    answers: foldhash::HashMap<(usize, usize), IntCounter>,
    /// Scratch space for choosing nodes: (node index, weight) and the chosen indices.
    pub pool: Vec<(usize, f64)>,
    pub picked: Vec<usize>,
}

impl Default for Memo {
    fn default() -> Self {
        Self {
            made_from: (0, 0),
            steered: foldhash::HashMap::default(),
            unshared: None,
            answers: foldhash::HashMap::default(),
            pool: Vec::with_capacity(16),
            picked: Vec::with_capacity(16),
        }
    }
}

impl Memo {
    /// Forgets everything when the configuration or the database has been swapped.
    fn sync(&mut self, prepared: &Arc<Prepared>, geo: Option<&Arc<GeoDb>>) {
        let made_from = (
            Arc::as_ptr(prepared) as usize,
            geo.map_or(0, |g| Arc::as_ptr(g) as usize),
        );
        if made_from != self.made_from {
            self.steered.clear();
            self.answers.clear();
            self.made_from = made_from;
        }
    }

    /// The location and ranking for `client`. Every address of a database network ranks sites
    /// alike unless a network override names it, so the result is kept per network.
    pub fn steer(
        &mut self,
        prepared: &Arc<Prepared>,
        geo: Option<&Arc<GeoDb>>,
        client: IpAddr,
    ) -> &mut Steered {
        self.sync(prepared, geo);
        let found = geo.and_then(|g| g.lookup(client));
        let overridden = || {
            prepared
                .steering
                .override_networks()
                .any(|n| n.contains(&client.to_canonical()))
        };
        let (Some(geo), Some((network, record))) = (geo, found) else {
            return self.unshared.insert(Steered::new(prepared, client, None));
        };
        if overridden() {
            let location = geo.locate_result(&record, network);
            return self
                .unshared
                .insert(Steered::new(prepared, client, location));
        }
        if self.steered.len() >= NETWORKS && !self.steered.contains_key(&network) {
            self.steered.clear();
        }
        self.steered
            .entry(network)
            .or_insert_with(|| Steered::new(prepared, client, geo.locate_result(&record, network)))
    }

    /// The answers-by-site counter of (`service`, `site`), resolved once per worker.
    pub fn answers(
        &mut self,
        metrics: &Metrics,
        service: (usize, &str),
        site: (usize, &str),
    ) -> &IntCounter {
        self.answers.entry((service.0, site.0)).or_insert_with(|| {
            metrics
                .answers_by_site
                .with_label_values(&[service.1, site.1])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::{Place, synthetic_db};

    fn setup(overrides: &str) -> (Shared, Arc<Prepared>, Arc<GeoDb>) {
        let text = format!(
            "{}{overrides}",
            include_str!("../../config/examples/three-sites.toml")
        );
        let deployment =
            config::Deployment::parse(&text, std::path::Path::new("three-sites.toml")).unwrap();
        let db = synthetic_db(&[Place {
            network: "198.51.100.0/24".parse().unwrap(),
            country: "GB",
            continent: "EU",
            latitude: 51.51,
            longitude: -0.13,
        }])
        .unwrap();
        let geo = GeoDb::from_bytes(db).unwrap();
        let shared = crate::server::offline(deployment).unwrap();
        *shared.geo.write().unwrap() = Some(Arc::new(geo));
        let (prepared, geo) = (shared.prepared(), shared.geo().unwrap());
        (shared, prepared, geo)
    }

    #[test]
    fn a_network_is_ranked_once_and_agrees_with_a_fresh_ranking() {
        let (_shared, prepared, geo) = setup("");
        let mut memo = Memo::default();
        for last in [1u8, 77, 254] {
            let client = IpAddr::from([198, 51, 100, last]);
            let fresh = prepared.steering.rank(client, geo.locate(client).as_ref());
            assert_eq!(memo.steer(&prepared, Some(&geo), client).ranking, fresh);
        }
        assert_eq!(memo.steered.len(), 1, "one database network, one entry");
        // A swapped configuration starts the memo over.
        let other = Arc::new(Prepared::new(prepared.deployment.clone()).unwrap());
        memo.steer(&other, Some(&geo), IpAddr::from([198, 51, 100, 1]));
        assert_eq!(memo.made_from.0, Arc::as_ptr(&other) as usize);
        assert_eq!(memo.steered.len(), 1);
    }

    #[test]
    fn a_network_override_inside_a_database_network_is_not_shared() {
        let rule = "\n[[dns.overrides]]\nnetworks = [\"198.51.100.128/25\"]\nsites = [\"fra\"]\n";
        let (_shared, prepared, geo) = setup(rule);
        let mut memo = Memo::default();
        let outside = IpAddr::from([198, 51, 100, 1]);
        let inside = IpAddr::from([198, 51, 100, 200]);
        let first = memo.steer(&prepared, Some(&geo), outside).ranking.order[0];
        let named = memo.steer(&prepared, Some(&geo), inside).ranking.order[0];
        let again = memo.steer(&prepared, Some(&geo), outside).ranking.order[0];
        let sites = &prepared.deployment.sites;
        assert_eq!(sites[first].name, "lon", "London's coordinates");
        assert_eq!(sites[named].name, "fra", "the override");
        assert_eq!(
            again, first,
            "the override did not leak into the network's entry"
        );
    }
}
