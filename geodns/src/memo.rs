//! What a UDP worker remembers between queries, so the fast path does not redo per query what
//! changes only with the configuration, the location database or health.
//!
//! Why: profiled with `perf record` under `cargo bench -p geodns --bench dnsperf`, the user-space
//! part of a geo answer cost about twice gdnsd's (0.88 vs 0.40 µs per query), spread over
//! decoding the client's database record, ranking sites by great-circle distance, allocating
//! the candidate lists, prometheus's label lookups (a hash and a lock per call), and the locks
//! and reference counts of the shared state, which every core writes to. So each worker keeps:
//! - a [`View`]: its own references to configuration, database and health, re-read only when
//!   `Shared::generation` moves (health changes still apply to the next query);
//! - a [`Cache`]: location and ranking per database network (a pure function of configuration
//!   and database), and metric handles, dropped when either input is swapped.

use std::net::IpAddr;
use std::sync::Arc;

use std::time::{Duration, Instant};

use ipnet::IpNet;
use prometheus::IntCounterVec;
use prometheus::local::{LocalHistogram, LocalIntCounter};

use crate::answer::spare;
use crate::geo::{GeoDb, Location};
use crate::health::Family;
use crate::health::HealthState;
use crate::metrics::Metrics;
use crate::prepared::Prepared;
use crate::state::Shared;
use crate::steering::{Ranking, SiteState, serves, site_state};

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

/// What a worker reads for its queries: its own references to the current configuration,
/// database and health, taken again only when `Shared::generation` moves.
pub struct View {
    generation: u64,
    pub prepared: Arc<Prepared>,
    pub geo: Option<Arc<GeoDb>>,
    pub health: Arc<HealthState>,
    /// What health allows, worked out once per view rather than per query.
    pub choices: Choices,
}

impl View {
    fn read(shared: &Shared) -> Self {
        // Configuration and health must come from the same change (their site indices agree):
        // read while no change is being written, until the generation is the same after.
        loop {
            let generation = shared.generation();
            if generation % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let (prepared, health, geo) = (shared.prepared(), shared.health(), shared.geo());
            if shared.generation() != generation {
                continue;
            }
            return Self {
                generation,
                choices: Choices::new(&prepared, &health),
                prepared,
                geo,
                health,
            };
        }
    }
}

/// Per service (by index) and address family: each site's state and the nodes an answer may
/// name. Health is the same for every client until it changes, so this is the part of
/// steering that does not depend on the client.
pub struct Choices {
    by_service: Vec<[Vec<SiteChoice>; 2]>,
    /// When any site last changed state: answers are shortened only for a while after.
    pub last_change: Option<Instant>,
}

/// One site for one service and family.
#[derive(Debug, Clone, Default)]
pub struct SiteChoice {
    pub state: SiteState,
    /// (node index, weight) of nodes serving the service with an address of the family, up.
    up: Vec<(usize, f64)>,
    /// The same whether up or not, for a fail-open answer.
    all: Vec<(usize, f64)>,
}

impl SiteChoice {
    /// The candidate nodes: those up, or every one when failing open.
    pub fn candidates(&self, fail_open: bool) -> &[(usize, f64)] {
        if fail_open { &self.all } else { &self.up }
    }
}

impl Choices {
    fn new(prepared: &Prepared, health: &HealthState) -> Self {
        let by_service = prepared
            .deployment
            .services
            .iter()
            .map(|service| {
                [Family::V4, Family::V6].map(|family| {
                    health
                        .sites
                        .iter()
                        .map(|site| {
                            let all: Vec<(usize, f64)> = site
                                .nodes
                                .iter()
                                .enumerate()
                                .filter(|(_, n)| serves(n, service, family))
                                .map(|(i, n)| (i, spare(n)))
                                .collect();
                            let up = all
                                .iter()
                                .copied()
                                .filter(|(i, _)| site.nodes[*i].up())
                                .collect();
                            SiteChoice {
                                state: site_state(site, service, family),
                                up,
                                all,
                            }
                        })
                        .collect()
                })
            })
            .collect();
        Self {
            by_service,
            last_change: health.last_change(),
        }
    }

    /// The sites of `service` (an index into the deployment's services) for `family`.
    pub fn sites(&self, service: usize, family: Family) -> &[SiteChoice] {
        self.by_service
            .get(service)
            .map_or(&[], |f| &f[usize::from(family == Family::V6)])
    }
}

/// One worker's memo: its view, what it remembers from it, and its counts not yet added to
/// the shared metrics.
pub struct Memo {
    pub view: View,
    pub cache: Cache,
    pub tally: Tally,
}

impl Memo {
    pub fn new(shared: &Shared) -> Self {
        Self {
            view: View::read(shared),
            cache: Cache::default(),
            tally: Tally::new(&shared.metrics),
        }
    }

    /// Takes the current view if anything changed; what was remembered from an older
    /// configuration or database is forgotten.
    pub fn refresh(&mut self, shared: &Shared) {
        if shared.generation() == self.view.generation {
            return;
        }
        let view = View::read(shared);
        let same_geo = match (&view.geo, &self.view.geo) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        };
        if !Arc::ptr_eq(&view.prepared, &self.view.prepared) {
            // Service and site indices change meaning with the configuration.
            self.tally.flush();
            self.tally.answers.clear();
        }
        if !Arc::ptr_eq(&view.prepared, &self.view.prepared) || !same_geo {
            self.cache = Cache::default();
        }
        self.view = view;
    }
}

/// A database network as two integers: `IpNet`'s derived hash feeds the hasher field by field
/// and byte by byte, which cost more than the rest of the lookup. IPv4 networks are keyed as
/// their IPv4-mapped IPv6 form, so the two families never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct NetKey(u128, u8);

impl NetKey {
    fn of(net: IpNet) -> Self {
        match net {
            IpNet::V4(n) => Self(n.addr().to_ipv6_mapped().to_bits(), n.prefix_len() + 96),
            IpNet::V6(n) => Self(n.addr().to_bits(), n.prefix_len()),
        }
    }
}

/// What a worker remembers per database network and per metric label set, valid for one
/// (configuration, database) pair.
pub struct Cache {
    steered: foldhash::HashMap<NetKey, Steered>,
    /// For clients whose ranking is not the network's (a network override names them).
    unshared: Option<Steered>,
    /// Scratch space for choosing nodes: (node index, weight) and the chosen indices.
    pub pool: Vec<(usize, f64)>,
    pub picked: Vec<usize>,
    /// The chosen nodes' addresses, in answer order.
    pub addresses: Vec<IpAddr>,
}

impl Default for Cache {
    fn default() -> Self {
        Self {
            steered: foldhash::HashMap::default(),
            unshared: None,
            pool: Vec::with_capacity(16),
            picked: Vec::with_capacity(16),
            addresses: Vec::with_capacity(16),
        }
    }
}

impl Cache {
    /// The location and ranking for `client`. Every address of a database network ranks sites
    /// alike unless a network override names it, so the result is kept per network.
    pub fn steer(
        &mut self,
        prepared: &Prepared,
        geo: Option<&Arc<GeoDb>>,
        client: IpAddr,
    ) -> &mut Steered {
        let found = geo.and_then(|g| g.lookup(client));
        let (Some(geo), Some((network, record))) = (geo, found) else {
            return self.unshared.insert(Steered::new(prepared, client, None));
        };
        let canonical = client.to_canonical();
        if prepared
            .steering
            .override_networks()
            .any(|n| n.contains(&canonical))
        {
            let location = geo.locate_result(&record, network);
            return self
                .unshared
                .insert(Steered::new(prepared, client, location));
        }
        let key = NetKey::of(network);
        if self.steered.len() >= NETWORKS && !self.steered.contains_key(&key) {
            self.steered.clear();
        }
        self.steered
            .entry(key)
            .or_insert_with(|| Steered::new(prepared, client, geo.locate_result(&record, network)))
    }
}

/// How often a worker adds its counts to the shared metrics while busy (an idle worker adds
/// them when its socket's read timeout wakes it).
const FLUSH: Duration = Duration::from_millis(100);

/// A worker's own counts, added to the shared metrics every [`FLUSH`]: shared counters are
/// atomics that every core writes to on every query, and their cache line moving between
/// cores costs more than the answer. Rare events (fail open) stay immediate.
pub struct Tally {
    answers_by_site: IntCounterVec,
    pub latency: LocalHistogram,
    /// `dns_queries_total{rcode="No Error"}` for A and AAAA.
    pub answered: [LocalIntCounter; 2],
    /// `dns_answers_by_site_total` by service index, then site index.
    answers: Vec<Vec<Option<LocalIntCounter>>>,
    /// When the counts are next added to the shared metrics.
    due: Instant,
}

impl Tally {
    fn new(metrics: &Metrics) -> Self {
        Self {
            answers_by_site: metrics.answers_by_site.clone(),
            latency: metrics.latency.local(),
            answered: [metrics.answered[0].local(), metrics.answered[1].local()],
            answers: Vec::new(),
            due: Instant::now() + FLUSH,
        }
    }

    /// One more answer from `service` at `site` (names for the labels, indices for the key).
    pub fn answer(&mut self, service: (usize, &str), site: (usize, &str)) {
        if self.answers.len() <= service.0 {
            self.answers.resize_with(service.0 + 1, Vec::new);
        }
        let sites = &mut self.answers[service.0];
        if sites.len() <= site.0 {
            sites.resize_with(site.0 + 1, || None);
        }
        let vec = &self.answers_by_site;
        sites[site.0]
            .get_or_insert_with(|| vec.with_label_values(&[service.1, site.1]).local())
            .inc();
    }

    /// Adds the counts to the shared metrics if the last time was [`FLUSH`] before `now` (a
    /// time the caller has read anyway).
    pub fn flush_if_due(&mut self, now: Instant) {
        if now >= self.due {
            self.flush();
        }
    }

    /// Adds the counts to the shared metrics.
    pub fn flush(&mut self) {
        self.latency.flush();
        let by_site = self.answers.iter().flatten().flatten();
        for counter in self.answered.iter().chain(by_site) {
            counter.flush();
        }
        self.due = Instant::now() + FLUSH;
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::{Place, synthetic_db};

    fn shared(overrides: &str) -> Shared {
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
        let shared = crate::server::offline(deployment).unwrap();
        shared.set_geo(GeoDb::from_bytes(db).unwrap());
        shared
    }

    #[test]
    fn a_network_is_ranked_once_and_agrees_with_a_fresh_ranking() {
        let shared = shared("");
        let mut memo = Memo::new(&shared);
        let Memo { view, cache, .. } = &mut memo;
        let geo = view.geo.clone().unwrap();
        for last in [1u8, 77, 254] {
            let client = IpAddr::from([198, 51, 100, last]);
            let fresh = view
                .prepared
                .steering
                .rank(client, geo.locate(client).as_ref());
            assert_eq!(
                cache.steer(&view.prepared, Some(&geo), client).ranking,
                fresh
            );
        }
        assert_eq!(cache.steered.len(), 1, "one database network, one entry");
    }

    #[test]
    fn changes_reach_the_view_and_a_new_configuration_clears_the_cache() {
        let shared = shared("");
        let mut memo = Memo::new(&shared);
        let client = IpAddr::from([198, 51, 100, 1]);
        let geo = memo.view.geo.clone();
        memo.cache.steer(&memo.view.prepared, geo.as_ref(), client);
        // Health changes: the next refresh sees them, and the cache stays.
        let ams = &memo.view.health.sites[0].name.clone();
        shared.update_health(|h| h.set_admin(ams, None, Some(crate::health::AdminState::Down)));
        memo.refresh(&shared);
        assert_eq!(
            memo.view.health.sites[0].admin,
            Some(crate::health::AdminState::Down)
        );
        assert_eq!(memo.cache.steered.len(), 1);
        // A reloaded configuration starts the cache over.
        shared.set_prepared(Prepared::new(memo.view.prepared.deployment.clone()).unwrap());
        memo.refresh(&shared);
        assert!(Arc::ptr_eq(&memo.view.prepared, &shared.prepared()));
        assert!(memo.cache.steered.is_empty());
    }

    #[test]
    fn the_per_view_table_chooses_as_choose_site_does() {
        use crate::health::AdminState;
        use crate::steering::{choose, pick_site};
        let shared = shared("");
        let prepared = shared.prepared();
        let client = IpAddr::from([198, 51, 100, 1]);
        let ranking = prepared
            .steering
            .rank(client, shared.geo().unwrap().locate(client).as_ref());
        let changes: [&dyn Fn(&mut HealthState); 5] = [
            &|_| {},
            &|h| h.sites[2].nodes[0].healthy = false,
            &|h| {
                h.sites[2].nodes.iter_mut().for_each(|n| n.healthy = false);
            },
            &|h| {
                h.set_admin("fra", None, Some(AdminState::Down));
            },
            &|h| {
                h.sites
                    .iter_mut()
                    .flat_map(|s| &mut s.nodes)
                    .for_each(|n| n.healthy = false)
            },
        ];
        for change in changes {
            shared.update_health(change);
            let view = View::read(&shared);
            for (s, service) in prepared.deployment.services.iter().enumerate() {
                for family in [Family::V4, Family::V6] {
                    let sites = view.choices.sites(s, family);
                    let table = pick_site(&ranking.order, |i| sites[i].state);
                    let direct = choose(&ranking, &view.health, service, family)
                        .map(|c| (c.site, c.fail_open));
                    assert_eq!(table, direct, "{} {family:?}", service.name);
                    if let Some((site, fail_open)) = table {
                        let nodes = &view.health.sites[site].nodes;
                        for (i, _) in sites[site].candidates(fail_open) {
                            assert!(serves(&nodes[*i], service, family));
                            assert!(fail_open || nodes[*i].up());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn counts_reach_the_shared_metrics_when_flushed_and_on_reload() {
        let shared = shared("");
        let mut memo = Memo::new(&shared);
        let by_site = |site: &str| {
            shared
                .metrics
                .answers_by_site
                .with_label_values(&["live", site])
                .get()
        };
        memo.tally.answer((0, "live"), (0, "ams"));
        memo.tally.answered[0].inc();
        assert_eq!(by_site("ams"), 0, "kept by the worker until flushed");
        memo.tally.flush_if_due(Instant::now());
        assert_eq!(by_site("ams"), 0, "not due yet");
        memo.tally.flush_if_due(Instant::now() + FLUSH);
        assert_eq!(by_site("ams"), 1);
        assert_eq!(shared.metrics.answered[0].get(), 1);
        // A reload flushes before the indices change meaning.
        memo.tally.answer((0, "live"), (0, "ams"));
        shared.set_prepared(Prepared::new(memo.view.prepared.deployment.clone()).unwrap());
        memo.refresh(&shared);
        assert_eq!(by_site("ams"), 2);
    }

    #[test]
    fn a_network_override_inside_a_database_network_is_not_shared() {
        let rule = "\n[[dns.overrides]]\nnetworks = [\"198.51.100.128/25\"]\nsites = [\"fra\"]\n";
        let shared = shared(rule);
        let memo = &mut Memo::new(&shared);
        let geo = memo.view.geo.clone();
        let mut first_site = |client: IpAddr| {
            memo.cache
                .steer(&memo.view.prepared, geo.as_ref(), client)
                .ranking
                .order[0]
        };
        let outside = first_site(IpAddr::from([198, 51, 100, 1]));
        let named = first_site(IpAddr::from([198, 51, 100, 200]));
        let again = first_site(IpAddr::from([198, 51, 100, 1]));
        let sites = &memo.view.prepared.deployment.sites;
        assert_eq!(sites[outside].name, "lon", "London's coordinates");
        assert_eq!(sites[named].name, "fra", "the override");
        assert_eq!(
            again, outside,
            "the override did not leak into the network's entry"
        );
    }
}
