//! What a UDP worker remembers between queries, so the fast path does not redo per query what
//! changes only with the configuration or health.
//!
//! Why: profiled with `perf record` under `cargo bench -p geodns --bench dnsperf`, the locks and
//! reference counts of the shared state (which every core writes to), prometheus's label
//! lookups (a hash and a lock per call) and allocating candidate lists cost more than the
//! answer. So each worker keeps:
//! - a [`View`]: its own references to configuration, atlas and health, re-read only when
//!   `Shared::generation` moves (health changes still apply to the next query), with what
//!   health allows worked out once per view ([`Choices`]);
//! - scratch space for choosing nodes, and its counts not yet added to the shared metrics.
//!
//! Nothing here grows with the number of clients: where a client is and how it ranks sites is
//! the atlas's, compiled once and shared.

use std::net::IpAddr;
use std::sync::Arc;

use std::time::{Duration, Instant};

use prometheus::IntCounterVec;
use prometheus::local::{LocalHistogram, LocalIntCounter};

use crate::answer::spare;
use crate::atlas::Atlas;
use crate::canary::{Side, Split, narrow};
use crate::health::Family;
use crate::health::HealthState;
use crate::metrics::Metrics;
use crate::prepared::Prepared;
use crate::rrl::Limiter;
use crate::state::Shared;
use crate::steering::{SiteState, serves, site_state};

/// What a worker reads for its queries: its own references to the current configuration,
/// atlas and health, taken again only when `Shared::generation` moves.
pub struct View {
    generation: u64,
    pub prepared: Arc<Prepared>,
    pub atlas: Arc<Atlas>,
    pub limiter: Option<Arc<Limiter>>,
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
            let (prepared, health, atlas) = (shared.prepared(), shared.health(), shared.atlas());
            let limiter = shared.limiter();
            if shared.generation() != generation {
                continue;
            }
            return Self {
                generation,
                choices: Choices::new(&prepared, &health),
                prepared,
                atlas,
                limiter,
                health,
            };
        }
    }
}

/// Per service (by index) and address family: each site's state and the nodes an answer may
/// name, and how the service's canary splits clients. Health is the same for every client until
/// it changes, so this is the part of steering that does not depend on the client.
pub struct Choices {
    by_service: Vec<ServiceChoices>,
    /// When any site last changed state: answers are shortened only for a while after.
    pub last_change: Option<Instant>,
}

struct ServiceChoices {
    split: Option<Split>,
    /// Sites for IPv4 and IPv6 answers.
    families: [Vec<SiteChoice>; 2],
}

/// One site for one service and family.
#[derive(Debug, Clone, Default)]
pub struct SiteChoice {
    pub state: SiteState,
    /// (node index, weight) of nodes serving the service with an address of the family, up.
    up: Vec<(usize, f64)>,
    /// Those of `up` that are the canary's, and the others (empty without a canary).
    canary: Vec<(usize, f64)>,
    rest: Vec<(usize, f64)>,
    /// The same as `up` whether up or not, for a fail-open answer.
    all: Vec<(usize, f64)>,
}

impl SiteChoice {
    /// The candidate nodes for a client on `side` of the canary (none without a canary): those
    /// up (see [`crate::canary::narrow`]), or every one when failing open.
    pub fn candidates(&self, fail_open: bool, side: Option<Side>) -> &[(usize, f64)] {
        if fail_open {
            &self.all
        } else {
            narrow(side, &self.up, &self.canary, &self.rest)
        }
    }

    /// Whether a client on `side` is answered with canary nodes.
    pub fn answers_canary(&self, fail_open: bool, side: Option<Side>) -> bool {
        !fail_open && side == Some(Side::Canary) && !self.canary.is_empty()
    }
}

impl Choices {
    fn new(prepared: &Prepared, health: &HealthState) -> Self {
        let by_service = prepared
            .deployment
            .services
            .iter()
            .map(|service| {
                let canary = crate::canary::of(service, health);
                let families = [Family::V4, Family::V6].map(|family| {
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
                            let up: Vec<(usize, f64)> = all
                                .iter()
                                .copied()
                                .filter(|(i, _)| site.nodes[*i].up())
                                .collect();
                            let (canary, rest) = match canary {
                                Some((c, _)) => up.iter().partition(|(i, _)| {
                                    c.includes(site.nodes[*i].version.as_deref())
                                }),
                                None => (Vec::new(), Vec::new()),
                            };
                            SiteChoice {
                                state: site_state(site, service, family),
                                up,
                                canary,
                                rest,
                                all,
                            }
                        })
                        .collect()
                });
                ServiceChoices {
                    split: canary.map(|(c, withdrawn)| Split::new(&service.name, c, withdrawn)),
                    families,
                }
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
            .map_or(&[], |s| &s.families[usize::from(family == Family::V6)])
    }

    /// How `service`'s canary splits clients; none when it has no canary.
    pub fn split(&self, service: usize) -> Option<&Split> {
        self.by_service.get(service)?.split.as_ref()
    }
}

/// One worker's memo: its view, scratch space, and its counts not yet added to the shared
/// metrics.
pub struct Memo {
    pub view: View,
    pub scratch: Scratch,
    pub tally: Tally,
}

impl Memo {
    pub fn new(shared: &Shared) -> Self {
        Self {
            view: View::read(shared),
            scratch: Scratch::default(),
            tally: Tally::new(&shared.metrics),
        }
    }

    /// Takes the current view if anything changed.
    pub fn refresh(&mut self, shared: &Shared) {
        if shared.generation() == self.view.generation {
            return;
        }
        let view = View::read(shared);
        if !Arc::ptr_eq(&view.prepared, &self.view.prepared) {
            // Service and site indices change meaning with the configuration.
            self.tally.forget();
        }
        self.view = view;
    }
}

/// Scratch space for choosing nodes, reused by every query.
pub struct Scratch {
    /// (node index, weight) and the chosen indices.
    pub pool: Vec<(usize, f64)>,
    pub picked: Vec<usize>,
    /// The chosen nodes' addresses, in answer order.
    pub addresses: Vec<IpAddr>,
}

impl Default for Scratch {
    fn default() -> Self {
        Self {
            pool: Vec::with_capacity(16),
            picked: Vec::with_capacity(16),
            addresses: Vec::with_capacity(16),
        }
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
    canary_answers: IntCounterVec,
    pub latency: LocalHistogram,
    /// `geodns_queries_total{rcode="NOERROR"}` for A and AAAA.
    pub answered: [LocalIntCounter; 2],
    /// Responses limited by the rate limiter: slipped (sent truncated) and dropped.
    pub slipped: LocalIntCounter,
    pub dropped: LocalIntCounter,
    /// Responses this worker has limited, for the rate limiter's slip.
    pub limited: u64,
    /// `geodns_answers_by_site_total` by service index, then site index.
    answers: PerSite,
    /// `geodns_canary_answers_total` likewise.
    canaries: PerSite,
    /// When the counts are next added to the shared metrics.
    due: Instant,
}

impl Tally {
    fn new(metrics: &Metrics) -> Self {
        Self {
            answers_by_site: metrics.answers_by_site.clone(),
            canary_answers: metrics.canary_answers.clone(),
            latency: metrics.latency.local(),
            answered: [metrics.answered[0].local(), metrics.answered[1].local()],
            slipped: metrics.rate_limited[0].local(),
            dropped: metrics.rate_limited[1].local(),
            limited: 0,
            answers: PerSite::default(),
            canaries: PerSite::default(),
            due: Instant::now() + FLUSH,
        }
    }

    /// One more answer from `service` at `site` (names for the labels, indices for the key),
    /// with the canary's nodes or not.
    pub fn answer(&mut self, service: (usize, &str), site: (usize, &str), canary: bool) {
        self.answers.bump(&self.answers_by_site, service, site);
        if canary {
            self.canaries.bump(&self.canary_answers, service, site);
        }
    }

    /// Forgets the counters by index (flushed first): indices change meaning with the
    /// configuration.
    fn forget(&mut self) {
        self.flush();
        self.answers.0.clear();
        self.canaries.0.clear();
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
        let by_site = [&self.answers, &self.canaries]
            .into_iter()
            .flat_map(|t| t.0.iter().flatten().flatten());
        let limited = [&self.slipped, &self.dropped].into_iter();
        for counter in self.answered.iter().chain(limited).chain(by_site) {
            counter.flush();
        }
        self.due = Instant::now() + FLUSH;
    }
}

/// Local counters of a vector by service index, then site index, made on first use.
#[derive(Default)]
struct PerSite(Vec<Vec<Option<LocalIntCounter>>>);

impl PerSite {
    fn bump(&mut self, vec: &IntCounterVec, service: (usize, &str), site: (usize, &str)) {
        if self.0.len() <= service.0 {
            self.0.resize_with(service.0 + 1, Vec::new);
        }
        let sites = &mut self.0[service.0];
        if sites.len() <= site.0 {
            sites.resize_with(site.0 + 1, || None);
        }
        sites[site.0]
            .get_or_insert_with(|| vec.with_label_values(&[service.1, site.1]).local())
            .inc();
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
    use crate::geo::{GeoDb, Place, synthetic_db};

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
        shared.set_geo(GeoDb::from_bytes(db).unwrap()).unwrap();
        shared
    }

    #[test]
    fn changes_reach_the_view_and_a_new_configuration_brings_its_atlas() {
        let shared = shared("");
        let mut memo = Memo::new(&shared);
        let atlas = memo.view.atlas.clone();
        // Health changes: the next refresh sees them, and the atlas stays.
        let ams = &memo.view.health.sites[0].name.clone();
        shared.update_health(|h| h.set_admin(ams, None, Some(crate::health::AdminState::Down)));
        memo.refresh(&shared);
        assert_eq!(
            memo.view.health.sites[0].admin,
            Some(crate::health::AdminState::Down)
        );
        assert!(Arc::ptr_eq(&memo.view.atlas, &atlas));
        // A reloaded configuration comes with the atlas compiled for it.
        shared
            .set_prepared(Prepared::new(memo.view.prepared.deployment.clone()).unwrap())
            .unwrap();
        memo.refresh(&shared);
        assert!(Arc::ptr_eq(&memo.view.prepared, &shared.prepared()));
        assert!(Arc::ptr_eq(&memo.view.atlas, &shared.atlas()));
        assert!(!Arc::ptr_eq(&memo.view.atlas, &atlas));
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
                        for (i, _) in sites[site].candidates(fail_open, None) {
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
        memo.tally.answer((0, "live"), (0, "ams"), false);
        memo.tally.answered[0].inc();
        assert_eq!(by_site("ams"), 0, "kept by the worker until flushed");
        memo.tally.flush_if_due(Instant::now());
        assert_eq!(by_site("ams"), 0, "not due yet");
        memo.tally.flush_if_due(Instant::now() + FLUSH);
        assert_eq!(by_site("ams"), 1);
        assert_eq!(shared.metrics.answered[0].get(), 1);
        // A reload flushes before the indices change meaning.
        memo.tally.answer((0, "live"), (0, "ams"), false);
        shared
            .set_prepared(Prepared::new(memo.view.prepared.deployment.clone()).unwrap())
            .unwrap();
        memo.refresh(&shared);
        assert_eq!(by_site("ams"), 2);
    }
}
