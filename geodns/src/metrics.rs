//! geodns metrics: queries by type and rcode, answers by site, latency.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

pub struct Metrics {
    pub registry: Registry,
    pub queries: IntCounterVec,
    pub answers_by_site: IntCounterVec,
    pub fail_open: IntCounter,
    pub latency: Histogram,
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
        for m in [
            Box::new(queries.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(answers_by_site.clone()),
            Box::new(fail_open.clone()),
            Box::new(latency.clone()),
        ] {
            registry.register(m).expect("unique metric");
        }
        Self {
            registry,
            queries,
            answers_by_site,
            fail_open,
            latency,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
