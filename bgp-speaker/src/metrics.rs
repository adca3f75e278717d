//! Prometheus metrics, built from the peers' status and the route table at scrape time, so
//! nothing is counted twice and a scrape never waits on a session.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::session::fsm::DownReason;
use crate::speaker::SpeakerHandle;

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric name");
    g
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric name");
    c
}

/// The metrics text for one scrape.
pub fn render(speaker: &SpeakerHandle) -> String {
    let r = Registry::new();
    let state = gauge(
        &r,
        "bgp_peer_state",
        "Session state: 1 Idle, 2 Connect, 3 Active, 4 OpenSent, 5 OpenConfirm, 6 Established",
        &["peer", "address"],
    );
    let established = gauge(
        &r,
        "bgp_peer_established",
        "1 while the session is Established",
        &["peer"],
    );
    let in_state = gauge(
        &r,
        "bgp_peer_state_seconds",
        "Seconds in the current state (uptime when Established)",
        &["peer"],
    );
    let received = counter(
        &r,
        "bgp_peer_messages_received_total",
        "Messages received, by type",
        &["peer", "type"],
    );
    let sent = counter(
        &r,
        "bgp_peer_messages_sent_total",
        "Messages sent, by type",
        &["peer", "type"],
    );
    let advertised = gauge(
        &r,
        "bgp_peer_prefixes_advertised",
        "Prefixes currently advertised to the peer",
        &["peer"],
    );
    let prefixes_in = gauge(
        &r,
        "bgp_peer_prefixes_received",
        "Prefixes received from the peer",
        &["peer"],
    );
    let flaps = counter(
        &r,
        "bgp_peer_flaps_total",
        "Times the session left Established",
        &["peer"],
    );
    let downs = counter(
        &r,
        "bgp_peer_downs_total",
        "Times the session went down, by reason (the text of the last error is in `show neighbors`)",
        &["peer", "reason"],
    );
    let connect_failures = counter(
        &r,
        "bgp_peer_connect_failures_total",
        "Connection attempts to the peer that failed",
        &["peer"],
    );
    let bfd_up = gauge(
        &r,
        "bgp_peer_bfd_up",
        "1 while the peer's BFD session is Up (only peers with BFD)",
        &["peer"],
    );
    let bfd_downs = counter(
        &r,
        "bgp_peer_bfd_down_total",
        "Times BFD going down took the BGP session down",
        &["peer"],
    );
    for s in speaker.statuses() {
        let peer = s.name.as_str();
        state
            .with_label_values(&[peer, &s.address.to_string()])
            .set(i64::from(s.state.number()));
        established
            .with_label_values(&[peer])
            .set(i64::from(s.negotiated.is_some()));
        in_state
            .with_label_values(&[peer])
            .set(s.seconds_in_state() as i64);
        for (kind, n) in s.messages_in.by_type() {
            received.with_label_values(&[peer, kind]).inc_by(n);
        }
        for (kind, n) in s.messages_out.by_type() {
            sent.with_label_values(&[peer, kind]).inc_by(n);
        }
        advertised
            .with_label_values(&[peer])
            .set(s.prefixes_advertised as i64);
        prefixes_in
            .with_label_values(&[peer])
            .set(s.prefixes_received as i64);
        flaps.with_label_values(&[peer]).inc_by(s.flaps);
        if let Some(state) = &s.bfd {
            bfd_up
                .with_label_values(&[peer])
                .set(i64::from(state == "Up"));
            bfd_downs.with_label_values(&[peer]).inc_by(s.bfd_downs);
        }
        for (reason, n) in DownReason::LABELS.iter().zip(s.downs) {
            downs.with_label_values(&[peer, reason]).inc_by(n);
        }
        connect_failures
            .with_label_values(&[peer])
            .inc_by(s.connect_failures);
    }
    let routes = gauge(
        &r,
        "bgp_routes_originated",
        "Routes this speaker originates, by service",
        &["service"],
    );
    let draining = gauge(
        &r,
        "bgp_routes_draining",
        "Routes tagged GRACEFUL_SHUTDOWN, waiting to be withdrawn",
        &[],
    );
    let snapshot = speaker.rib.borrow().clone();
    let mut drained = 0;
    for route in snapshot.routes.values() {
        routes
            .with_label_values(&[route.service.as_deref().unwrap_or("")])
            .inc();
        drained += i64::from(route.drain.is_some());
    }
    draining.with_label_values::<&str>(&[]).set(drained);
    daemon::admin::encode(&r)
}
