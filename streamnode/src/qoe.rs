//! Viewer QoE from what players say in CMCD (see [`crate::cmcd`]): per channel, the buffer
//! they hold, the bitrate they fetch and the throughput they measure, start-ups, stalls
//! (buffer starvation) and distinct playback sessions. Cardinality is the node's channels:
//! requests for anything else are not counted.

use std::time::{Duration, Instant};

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use crate::cmcd::{Cmcd, Sessions};

/// The QoE metrics of a node.
#[derive(Debug)]
pub struct Qoe {
    buffer: HistogramVec,
    bitrate: HistogramVec,
    throughput: HistogramVec,
    startups: IntCounterVec,
    stalls: IntCounterVec,
    reports: IntCounterVec,
    malformed: IntCounter,
    sessions: Sessions,
    channels: Vec<String>,
}

/// A session not heard from for this long is gone (players report every segment).
const SESSION_WINDOW: Duration = Duration::from_secs(60);
/// Sessions remembered at most, whatever the audience (about 100 bytes each).
const SESSION_CAPACITY: usize = 200_000;

impl Qoe {
    /// Metrics for `channels`, each at zero from the start (a rule on a rate sees the first).
    pub fn new<'a>(channels: impl IntoIterator<Item = &'a str>) -> Self {
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets),
                &["channel"],
            )
            .expect("valid metric")
        };
        let counter = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), &["channel"]).expect("valid metric")
        };
        // Buckets at round megabits per second, in bytes (Prometheus's base unit).
        let mbps = |m: &[f64]| m.iter().map(|v| v * 1e6 / 8.0).collect::<Vec<f64>>();
        let qoe = Self {
            buffer: histogram(
                "streamnode_viewer_buffer_seconds",
                "Buffer the players hold when they ask (CMCD bl)",
                vec![0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 60.0],
            ),
            bitrate: histogram(
                "streamnode_viewer_bitrate_bytes_per_second",
                "Encoded bitrate of the segments the players ask for (CMCD br)",
                mbps(&[0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0]),
            ),
            throughput: histogram(
                "streamnode_viewer_throughput_bytes_per_second",
                "Throughput the players measured (CMCD mtp)",
                mbps(&[0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 500.0]),
            ),
            startups: counter(
                "streamnode_viewer_startup_requests_total",
                "Requests made while starting or seeking (CMCD su)",
            ),
            stalls: counter(
                "streamnode_viewer_stalls_total",
                "Requests from players whose buffer ran empty since the previous one (CMCD bs)",
            ),
            reports: counter(
                "streamnode_cmcd_requests_total",
                "Requests that carried CMCD",
            ),
            malformed: IntCounter::new(
                "streamnode_cmcd_malformed_total",
                "Requests whose CMCD could not be read (ignored; the request was served)",
            )
            .expect("valid metric"),
            sessions: Sessions::new(SESSION_WINDOW, SESSION_CAPACITY),
            channels: channels.into_iter().map(str::to_owned).collect(),
        };
        for channel in &qoe.channels {
            let channel = channel.as_str();
            for vec in [&qoe.buffer, &qoe.bitrate, &qoe.throughput] {
                vec.with_label_values(&[channel]);
            }
            for vec in [&qoe.startups, &qoe.stalls, &qoe.reports] {
                vec.with_label_values(&[channel]);
            }
        }
        qoe
    }

    /// A request for `channel` that carried `cmcd`.
    pub fn observe(&self, channel: &str, cmcd: &Cmcd) {
        let label = [channel];
        self.reports.with_label_values(&label).inc();
        if let Some(ms) = cmcd.buffer_ms {
            self.buffer
                .with_label_values(&label)
                .observe(ms as f64 / 1000.0);
        }
        if let Some(kbps) = cmcd.bitrate_kbps {
            self.bitrate
                .with_label_values(&label)
                .observe(kbps as f64 * 1000.0 / 8.0);
        }
        if let Some(kbps) = cmcd.throughput_kbps {
            self.throughput
                .with_label_values(&label)
                .observe(kbps as f64 * 1000.0 / 8.0);
        }
        if cmcd.startup {
            self.startups.with_label_values(&label).inc();
        }
        if cmcd.starved {
            self.stalls.with_label_values(&label).inc();
        }
        if let Some(sid) = &cmcd.session {
            self.sessions.saw(channel, sid, Instant::now());
        }
    }

    /// A request whose CMCD could not be read.
    pub fn malformed(&self) {
        self.malformed.inc();
    }

    /// Adds the metrics to a scrape's `registry`.
    pub fn register(&self, registry: &Registry) {
        let collectors: [Box<dyn prometheus::core::Collector>; 7] = [
            Box::new(self.buffer.clone()),
            Box::new(self.bitrate.clone()),
            Box::new(self.throughput.clone()),
            Box::new(self.startups.clone()),
            Box::new(self.stalls.clone()),
            Box::new(self.reports.clone()),
            Box::new(self.malformed.clone()),
        ];
        for c in collectors {
            registry.register(c).expect("unique metric");
        }
        let sessions = IntGaugeVec::new(
            Opts::new(
                "streamnode_viewer_sessions",
                "Distinct playback sessions (CMCD sid) heard from in the last minute",
            ),
            &["channel"],
        )
        .expect("valid metric");
        let counts = self.sessions.count(Instant::now());
        for channel in &self.channels {
            sessions
                .with_label_values(&[channel.as_str()])
                .set(counts.get(channel).copied().unwrap_or(0) as i64);
        }
        registry
            .register(Box::new(sessions))
            .expect("unique metric");
    }
}
