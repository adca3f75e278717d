//! healthd's metrics (`/metrics` on `healthd.admin`).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Metrics of one healthd.
pub struct Metrics {
    pub registry: Registry,
    pub node_up: IntGaugeVec,
    pub node_info: IntGaugeVec,
    pub node_stream: IntGaugeVec,
    pub latency: HistogramVec,
    pub changes: IntCounterVec,
    pub service_healthy: IntGaugeVec,
    pub announcements: IntCounterVec,
    pub fail_open: IntGaugeVec,
    pub speaker_errors: IntCounterVec,
    pub speaker_calls: HistogramVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let node_up = IntGaugeVec::new(
            Opts::new(
                "healthd_node_up",
                "1 when the node counts as up: its probes say so (after rise/fall and damping) and its status stream does not say otherwise",
            ),
            &["node"],
        )
        .expect("valid metric");
        let node_info = IntGaugeVec::new(
            Opts::new(
                "healthd_node_info",
                "Always 1: the node's version label (none: unlabelled), to put a canary's nodes beside the others",
            ),
            &["node", "version"],
        )
        .expect("valid metric");
        let node_stream = IntGaugeVec::new(
            Opts::new(
                "healthd_node_stream_up",
                "1 while the node's status stream flows (heard within the allowed silence)",
            ),
            &["node"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("healthd_probe_seconds", "Probe duration")
                .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
            &["node", "result"],
        )
        .expect("valid metric");
        let changes = IntCounterVec::new(
            Opts::new("healthd_node_state_changes_total", "Node state changes"),
            &["node"],
        )
        .expect("valid metric");
        let service_healthy = IntGaugeVec::new(
            Opts::new(
                "healthd_service_healthy",
                "1 when the site is healthy for the service",
            ),
            &["service"],
        )
        .expect("valid metric");
        let announcements = IntCounterVec::new(
            Opts::new(
                "healthd_announcements_total",
                "Requests sent to the speaker, by kind",
            ),
            &["service", "kind"],
        )
        .expect("valid metric");
        let fail_open = IntGaugeVec::new(
            Opts::new(
                "healthd_service_fail_open",
                "1 while the service is announced although down, because every other site carrying it is down too",
            ),
            &["service"],
        )
        .expect("valid metric");
        let speaker_errors = IntCounterVec::new(
            Opts::new(
                "healthd_speaker_errors_total",
                "Exchanges with the speaker that failed or timed out, by kind (connect, call)",
            ),
            &["kind"],
        )
        .expect("valid metric");
        // Every kind from the start, at 0: a rule on its increase sees the first error.
        for kind in SpeakerError::ALL {
            speaker_errors.with_label_values(&[kind.label()]);
        }
        let speaker_calls = HistogramVec::new(
            HistogramOpts::new(
                "healthd_speaker_call_seconds",
                "Time for the speaker to answer one request (a withdraw waits on it)",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            &["op"],
        )
        .expect("valid metric");
        for m in [
            Box::new(fail_open.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(speaker_calls.clone()),
            Box::new(speaker_errors.clone()),
            Box::new(node_up.clone()),
            Box::new(node_info.clone()),
            Box::new(node_stream.clone()),
            Box::new(latency.clone()),
            Box::new(changes.clone()),
            Box::new(service_healthy.clone()),
            Box::new(announcements.clone()),
        ] {
            registry.register(m).expect("unique metric");
        }
        Self {
            registry,
            node_up,
            node_info,
            node_stream,
            latency,
            changes,
            service_healthy,
            announcements,
            fail_open,
            speaker_errors,
            speaker_calls,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Why an exchange with the speaker failed: the `kind` of `healthd_speaker_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeakerError {
    /// No connection to the speaker (down, wrong socket or token).
    Connect,
    /// The speaker stopped answering mid-exchange.
    Call,
}

impl SpeakerError {
    pub const ALL: [Self; 2] = [Self::Connect, Self::Call];

    pub fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Call => "call",
        }
    }
}
