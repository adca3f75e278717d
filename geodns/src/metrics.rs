//! geodns metrics: queries by type and rcode, answers by site, latency.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

pub struct Metrics {
    pub registry: Registry,
    pub queries: IntCounterVec,
    pub answers_by_site: IntCounterVec,
    pub fail_open: IntCounter,
    pub latency: Histogram,
    /// Panics contained while answering one query (UDP datagram or TCP connection).
    pub worker_panics: IntCounter,
    /// `queries{qtype="A"|"AAAA", rcode="No Error"}`, resolved once: the UDP fast path counts
    /// every answer, and a label lookup per query is a hash and a lock.
    pub answered: [IntCounter; 2],
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let queries = IntCounterVec::new(
            Opts::new(
                "dns_queries_total",
                "Queries answered, by type and response code",
            ),
            &["qtype", "rcode"],
        )
        .expect("valid metric");
        let answers_by_site = IntCounterVec::new(
            Opts::new(
                "dns_answers_by_site_total",
                "Service answers, by the site chosen",
            ),
            &["service", "site"],
        )
        .expect("valid metric");
        let fail_open = IntCounter::new(
            "dns_fail_open_answers_total",
            "Answers given while no site was healthy (fail open)",
        )
        .expect("valid metric");
        let latency = Histogram::with_opts(
            HistogramOpts::new("dns_answer_seconds", "Time to build an answer").buckets(vec![
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
            Box::new(fail_open.clone()),
            Box::new(latency.clone()),
        ] {
            registry.register(m).expect("unique metric");
        }
        let answered = ["A", "AAAA"].map(|t| queries.with_label_values(&[t, "No Error"]));
        Self {
            registry,
            answered,
            queries,
            answers_by_site,
            fail_open,
            latency,
            worker_panics,
        }
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
            "dns_admin_state",
            "Operator override: 1 forced up, -1 forced down, 0 none",
        ),
        &["site", "node"],
    )
    .expect("valid metric");
    let healthy = IntGaugeVec::new(
        Opts::new(
            "dns_site_healthy_nodes",
            "Nodes up at the site, after overrides",
        ),
        &["site"],
    )
    .expect("valid metric");
    let feed_age = GaugeVec::new(Opts::new("dns_site_feed_age_seconds", "Seconds since the site's feed was last heard from (-1: never, or silent past its grace)"), &["site"]).expect("valid metric");
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
