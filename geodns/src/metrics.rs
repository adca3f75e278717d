//! geodns metrics: queries by type and rcode, answers by site, latency.

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::atlas::Stats;

pub struct Metrics {
    pub registry: Registry,
    pub queries: IntCounterVec,
    pub answers_by_site: IntCounterVec,
    pub canary_answers: IntCounterVec,
    pub fail_open: IntCounter,
    pub latency: Histogram,
    /// Panics contained while answering one query (UDP datagram or TCP connection).
    pub worker_panics: IntCounter,
    /// `queries{qtype="A"|"AAAA", rcode="NOERROR"}`, resolved once: the UDP fast path counts
    /// every answer, and a label lookup per query is a hash and a lock.
    pub answered: [IntCounter; 2],
    /// `geodns_rate_limited_responses_total{action="slipped"|"dropped"}`, resolved once.
    pub rate_limited: [IntCounter; 2],
    /// The atlas in use: what its compile took and holds (see `atlas`).
    pub atlas: AtlasMetrics,
    /// The HLS content steering server.
    pub content_steering: crate::content_steering::SteeringMetrics,
}

pub struct AtlasMetrics {
    compiles: IntCounter,
    seconds: Gauge,
    bytes: IntGauge,
    networks: IntGauge,
    records: IntGauge,
    classes: IntGauge,
    runs: IntGaugeVec,
}

impl AtlasMetrics {
    fn new(registry: &Registry) -> Self {
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let compiles = IntCounter::new(
            "geodns_atlas_compiles_total",
            "Atlases compiled (at start, and on every configuration or database reload)",
        )
        .expect("valid metric");
        let seconds = Gauge::new(
            "geodns_atlas_compile_seconds",
            "How long compiling the atlas in use took",
        )
        .expect("valid metric");
        let runs = IntGaugeVec::new(
            Opts::new(
                "geodns_atlas_runs",
                "Address runs with one site order in the atlas in use",
            ),
            &["family"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(compiles.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(seconds.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(runs.clone()))
            .expect("unique metric");
        Self {
            compiles,
            seconds,
            runs,
            bytes: gauge("geodns_atlas_bytes", "Memory held by the atlas in use"),
            networks: gauge(
                "geodns_atlas_networks",
                "Location database networks compiled into the atlas in use",
            ),
            records: gauge(
                "geodns_atlas_records",
                "Distinct location records decoded for the atlas in use",
            ),
            classes: gauge(
                "geodns_atlas_classes",
                "Distinct site orders in the atlas in use",
            ),
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let queries = IntCounterVec::new(
            Opts::new(
                "geodns_queries_total",
                "Queries answered, by type and response code",
            ),
            &["qtype", "rcode"],
        )
        .expect("valid metric");
        let answers_by_site = IntCounterVec::new(
            Opts::new(
                "geodns_answers_by_site_total",
                "Service answers, by the site chosen",
            ),
            &["service", "site"],
        )
        .expect("valid metric");
        let canary_answers = IntCounterVec::new(
            Opts::new(
                "geodns_canary_answers_total",
                "Service answers naming the canary's nodes, by the site chosen (beside geodns_answers_by_site_total: the canary's share)",
            ),
            &["service", "site"],
        )
        .expect("valid metric");
        let fail_open = IntCounter::new(
            "geodns_fail_open_answers_total",
            "Answers given while no site was healthy (fail open)",
        )
        .expect("valid metric");
        let latency = Histogram::with_opts(
            HistogramOpts::new("geodns_answer_seconds", "Time to build an answer").buckets(vec![
                1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2,
            ]),
        )
        .expect("valid metric");
        let worker_panics = IntCounter::new(
            "geodns_worker_panics_total",
            "Panics contained while answering a query: that query was dropped, the worker went on",
        )
        .expect("valid metric");
        for m in [
            Box::new(queries.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(worker_panics.clone()),
            Box::new(answers_by_site.clone()),
            Box::new(canary_answers.clone()),
            Box::new(fail_open.clone()),
            Box::new(latency.clone()),
        ] {
            registry.register(m).expect("unique metric");
        }
        let answered = ["A", "AAAA"].map(|t| queries.with_label_values(&[t, "NOERROR"]));
        let atlas = AtlasMetrics::new(&registry);
        let limited = IntCounterVec::new(
            Opts::new(
                "geodns_rate_limited_responses_total",
                "UDP responses over their source prefix's rate limit: sent truncated (slipped) or dropped",
            ),
            &["action"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(limited.clone()))
            .expect("unique metric");
        let rate_limited = ["slipped", "dropped"].map(|a| limited.with_label_values(&[a]));
        Self {
            content_steering: crate::content_steering::SteeringMetrics::new(&registry),
            rate_limited,
            atlas,
            registry,
            answered,
            queries,
            answers_by_site,
            canary_answers,
            fail_open,
            latency,
            worker_panics,
        }
    }
}

impl Metrics {
    /// Every service and site of `deployment` in `geodns_answers_by_site_total` (and
    /// `geodns_canary_answers_total`) from the start, at 0: a rule on the rate of answers to a
    /// site sees its first answer.
    pub fn know(&self, deployment: &config::Deployment) {
        self.content_steering.know(deployment);
        for service in &deployment.services {
            for site in &deployment.sites {
                let labels = [service.name.as_str(), site.name.as_str()];
                self.answers_by_site.with_label_values(&labels);
                // Services without a canary too: their share is 0, not unknown.
                self.canary_answers.with_label_values(&labels);
            }
        }
    }

    /// A new atlas was compiled (and is about to be swapped in).
    pub fn compiled(&self, stats: &Stats) {
        let m = &self.atlas;
        m.compiles.inc();
        m.seconds.set(stats.took.as_secs_f64());
        m.bytes.set(stats.bytes as i64);
        m.networks.set(stats.networks as i64);
        m.records.set(stats.records as i64);
        m.classes.set(stats.classes as i64);
        m.runs
            .with_label_values(&["ipv4"])
            .set(stats.runs_v4 as i64);
        m.runs
            .with_label_values(&["ipv6"])
            .set(stats.runs_v6 as i64);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Per-site gauges built from the health state at scrape time: operator overrides (so a forced
/// state is visible on dashboards), healthy nodes, and the age of each feed.
pub fn health_text(health: &crate::health::HealthState) -> String {
    use prometheus::{GaugeVec, IntGaugeVec};

    use crate::health::AdminState;

    let registry = Registry::new();
    let admin = IntGaugeVec::new(
        Opts::new(
            "geodns_admin_state",
            "Operator override: 1 forced up, -1 forced down, 0 none",
        ),
        &["site", "node"],
    )
    .expect("valid metric");
    let healthy = IntGaugeVec::new(
        Opts::new(
            "geodns_site_healthy_nodes",
            "Nodes up at the site, after overrides",
        ),
        &["site"],
    )
    .expect("valid metric");
    let feed_age = GaugeVec::new(Opts::new("geodns_site_feed_age_seconds", "Seconds since the site's feed was last heard from (-1: never, or silent past its grace)"), &["site"]).expect("valid metric");
    for m in [
        Box::new(admin.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(healthy.clone()),
        Box::new(feed_age.clone()),
    ] {
        registry.register(m).expect("unique metric");
    }
    let value = |s: Option<AdminState>| match s {
        Some(AdminState::Up) => 1,
        Some(AdminState::Down) => -1,
        None => 0,
    };
    for site in &health.sites {
        admin
            .with_label_values(&[site.name.as_str(), ""])
            .set(value(site.admin));
        for node in &site.nodes {
            admin
                .with_label_values(&[site.name.as_str(), node.name.as_str()])
                .set(value(node.admin));
        }
        healthy
            .with_label_values(&[site.name.as_str()])
            .set(site.nodes.iter().filter(|n| n.up()).count() as i64);
        feed_age
            .with_label_values(&[site.name.as_str()])
            .set(site.last_feed.map_or(-1.0, |t| t.elapsed().as_secs_f64()));
    }
    daemon::admin::encode(&registry)
}

/// The `rcode` label of a response code: its mnemonic as the RFCs and dig print it (NOERROR,
/// NXDOMAIN, ...), "OTHER" for codes geodns never sends.
pub fn rcode_label(rcode: hickory_proto::op::ResponseCode) -> &'static str {
    match u16::from(rcode) {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        16 => "BADVERS",
        23 => "BADCOOKIE",
        _ => "OTHER",
    }
}
