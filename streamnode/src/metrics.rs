//! Prometheus metrics of a node, read from its state at scrape time (the serving path only
//! bumps atomics).

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::server::NodeState;

/// The metrics text for `/metrics`.
pub fn render(node: &NodeState) -> String {
    let registry = Registry::new();
    let gauge = |name: &str, help: &str| {
        let g = IntGauge::new(name, help).expect("valid metric");
        registry
            .register(Box::new(g.clone()))
            .expect("unique metric");
        g
    };
    let labelled = |name: &str, help: &str, labels: &[&str]| {
        let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
        registry
            .register(Box::new(g.clone()))
            .expect("unique metric");
        g
    };
    gauge("streamnode_draining", "1 while the node is draining").set(i64::from(node.draining()));
    // Dashboards join on it to put a canary's QoE and errors beside the other nodes'.
    labelled(
        "streamnode_info",
        "Always 1: the node's version label (none: unlabelled) and the binary's version",
        &["version", "build"],
    )
    .with_label_values(&[
        node.version.as_deref().unwrap_or("none"),
        env!("CARGO_PKG_VERSION"),
    ])
    .set(1);
    gauge(
        "streamnode_capacity_bytes_per_second",
        "Configured egress capacity (capacity_mbps), in bytes per second",
    )
    .set(i64::from(node.capacity_mbps) * 1_000_000 / 8);
    let requests = IntCounterVec::new(
        Opts::new("streamnode_requests_total", "HTTP requests by outcome"),
        &["outcome"],
    )
    .expect("valid metric");
    registry
        .register(Box::new(requests.clone()))
        .expect("unique metric");
    for (i, outcome) in ["playlist", "segment", "not_found"].iter().enumerate() {
        requests
            .with_label_values(&[*outcome])
            .inc_by(node.requests[i].load(Ordering::Relaxed));
    }
    let counter = |name: &str, help: &str, value: u64| {
        let c = prometheus::IntCounter::new(name, help).expect("valid metric");
        c.inc_by(value);
        registry.register(Box::new(c)).expect("unique metric");
    };
    counter(
        "streamnode_served_bytes_total",
        "Segment bytes served since start",
        node.served.load(Ordering::Relaxed),
    );
    counter(
        "streamnode_refused_connections_total",
        "Viewer connections closed at accept: their client held its limit of connections",
        node.admission.refused(),
    );
    counter(
        "streamnode_limited_requests_total",
        "Viewer requests answered 429: their client was over its request rate",
        node.admission.limited(),
    );
    node.qoe.register(&registry);
    if let Some(edge) = &node.edge {
        let served = IntCounterVec::new(
            Opts::new(
                "streamnode_edge_requests_total",
                "An edge's requests by how they were served: hit, miss, coalesced (joined a fetch under way), stale (origins failing)",
            ),
            &["result"],
        )
        .expect("valid metric");
        for (result, n) in edge.served() {
            served.with_label_values(&[result]).inc_by(n);
        }
        registry.register(Box::new(served)).expect("unique metric");
        let status = edge.status();
        counter(
            "streamnode_edge_origin_fetches_total",
            "Objects an edge fetched whole from its origins",
            status.origin_fetches,
        );
        counter(
            "streamnode_edge_origin_failures_total",
            "An edge's origin fetches that failed (refused, timed out, 5xx, broken off)",
            status.origin_failures,
        );
        gauge(
            "streamnode_edge_cache_bytes",
            "Bytes of whole objects in an edge's cache",
        )
        .set(status.cache_bytes as i64);
        if let Some(disk) = &status.disk {
            counter(
                "streamnode_edge_disk_reads_total",
                "Memory misses an edge served from its disk tier instead of the origin",
                disk.reads,
            );
            gauge(
                "streamnode_edge_disk_bytes",
                "Bytes of segments in an edge's disk tier",
            )
            .set(disk.bytes as i64);
        }
    }
    let checks = IntCounterVec::new(
        Opts::new(
            "streamnode_token_checks_total",
            "Subscriber token checks of protected channels' requests, by result: granted, or why refused",
        ),
        &["channel", "result"],
    )
    .expect("valid metric");
    for (channel, result, n) in node.access.counts() {
        checks.with_label_values(&[channel, result]).inc_by(n);
    }
    registry.register(Box::new(checks)).expect("unique metric");
    let live = labelled(
        "streamnode_channel_live",
        "1 while the channel has segments",
        &["channel"],
    );
    let sequence = labelled(
        "streamnode_channel_media_sequence",
        "Newest segment's media sequence",
        &["channel"],
    );
    let age = prometheus::GaugeVec::new(
        Opts::new(
            "streamnode_channel_newest_segment_age_seconds",
            "Seconds since the newest segment started",
        ),
        &["channel"],
    )
    .expect("valid metric");
    registry
        .register(Box::new(age.clone()))
        .expect("unique metric");
    let feed = labelled(
        "streamnode_channel_active_feed",
        "1 for the feed the channel is taking (builtin, primary, backup)",
        &["channel", "feed"],
    );
    let ingest = labelled(
        "streamnode_channel_ingest",
        "1 while the channel's source delivers (a feed fit to carry it), 0 once ingest is lost",
        &["channel"],
    );
    let now = SystemTime::now();
    for (name, channel) in &node.channels {
        let c = channel.read().unwrap_or_else(|e| e.into_inner());
        let newest = c.newest();
        live.with_label_values(&[name.as_str()])
            .set(i64::from(newest.is_some()));
        if let Some(s) = newest {
            sequence
                .with_label_values(&[name.as_str()])
                .set(s.sequence as i64);
            age.with_label_values(&[name.as_str()]).set(
                now.duration_since(s.started)
                    .map_or(0.0, |d| d.as_secs_f64()),
            );
        }
        feed.with_label_values(&[name.as_str(), c.active_feed])
            .set(1);
        ingest
            .with_label_values(&[name.as_str()])
            .set(i64::from(c.ingest() == crate::channel::Ingest::Flowing));
    }
    daemon::admin::encode(&registry)
}
