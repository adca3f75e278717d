//! HLS content steering: the server players ask which pathway (site) to fetch from.
//!
//! A steered channel's master playlist (streamnode makes it) lists each rendition once per site
//! and names this server. Every `TTL` seconds the player asks
//! `SERVER-URI?_HLS_pathway=CURRENT&_HLS_throughput=BITS` and moves to the first pathway of the
//! answer's `PATHWAY-PRIORITY` at its next segment. That list is the client's ranking from the
//! atlas, as for DNS, ordered by the one site-health rule ([`preference`]): its first pathway
//! is the site DNS would answer for the same client now, and a site that fails or is drained
//! drops behind the usable ones at the player's next reload, without waiting for its resolver.
//!
//! A malformed parameter is ignored, never an error: the player then gets its client's answer.
//! The `RELOAD-URI` carries the session and the pathway the player reported, so that the next
//! request tells whether the player moved (`geodns_steering_pathway_changes_total`) without any
//! state kept here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use config::Deployment;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};
use serde::Serialize;

use crate::health::Family;
use crate::state::Shared;
use crate::steering::{preference, site_state};

/// The steering manifest (the HLS specification's "Content Steering", version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    #[serde(rename = "VERSION")]
    pub version: u8,
    /// Seconds until the player asks again.
    #[serde(rename = "TTL")]
    pub ttl: u32,
    /// Where the player asks next.
    #[serde(rename = "RELOAD-URI")]
    pub reload_uri: String,
    /// Pathways (site names), the one to use first.
    #[serde(rename = "PATHWAY-PRIORITY")]
    pub pathway_priority: Vec<String>,
}

/// What a player's request says. Each part is dropped when malformed (`malformed` counts it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Request {
    /// `_HLS_pathway`: the pathway the player uses now.
    pub pathway: Option<String>,
    /// `_HLS_throughput`: the player's throughput estimate, bits per second.
    pub throughput: Option<u64>,
    /// `from`: the pathway the player reported last time (this server put it in the RELOAD-URI).
    pub from: Option<String>,
    /// `session`: an opaque tag from the master playlist, carried from reload to reload.
    pub session: Option<String>,
    /// Some parameter was malformed and ignored.
    pub malformed: bool,
}

/// Longest query string read; anything longer is ignored whole.
const MAX_QUERY: usize = 2048;

impl Request {
    /// Reads a request's query string leniently.
    pub fn parse(query: Option<&str>) -> Self {
        let mut request = Self::default();
        let Some(query) = query else {
            return request;
        };
        if query.len() > MAX_QUERY {
            request.malformed = true;
            return request;
        }
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match key.as_ref() {
                "_HLS_pathway" => &mut request.pathway,
                "from" => &mut request.from,
                "session" => &mut request.session,
                "_HLS_throughput" => {
                    match value.parse::<u64>() {
                        Ok(bits) => request.throughput = Some(bits),
                        Err(_) => request.malformed = true,
                    }
                    continue;
                }
                _ => continue,
            };
            if token(&value) {
                *slot = Some(value.into_owned());
            } else {
                request.malformed = true;
            }
        }
        request
    }
}

/// A pathway or session as this server accepts it: 1 to 64 of `A-Z a-z 0-9 . _ -` (the
/// characters of the specification's PATHWAY-ID), so that nothing read is echoed unchecked.
fn token(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The answer to one steering request, with what the metrics and `explain` need.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Steered {
    pub manifest: Manifest,
    /// The first pathway: the site the player is sent to.
    pub site: Option<String>,
    /// The player reports having moved from one pathway to another since its last request.
    #[serde(skip)]
    pub moved: Option<(String, String)>,
}

/// The steering answer for a player at `client` of `service` (an index into the deployment's
/// services, which has content steering), asking with `request`, at `now`.
pub fn answer(
    shared: &Shared,
    service: usize,
    client: IpAddr,
    request: &Request,
    now: Instant,
) -> Option<Steered> {
    let prepared = shared.prepared();
    let d: &Deployment = &prepared.deployment;
    let svc = d.services.get(service)?;
    let settings = svc.content_steering.as_ref()?;
    let health = shared.health();
    let health: &crate::health::HealthState = &health;
    let atlas = shared.atlas();
    let order = atlas.place(client).order;
    let state = |family| move |i: usize| site_state(&health.sites[i], svc, family);
    // A player connected over IPv6 may still reach a site with IPv4 nodes only (most
    // are dual-stack): those come after every site it can reach over IPv6.
    let mut sites = match client.to_canonical() {
        IpAddr::V4(_) => preference(order, state(Family::V4)),
        IpAddr::V6(_) => preference(order, state(Family::V6)),
    };
    for site in preference(order, state(Family::V4)) {
        if !sites.contains(&site) {
            sites.push(site);
        }
    }
    let ttl = match sites.first() {
        Some(&first) => health.answer_ttl(order, first, settings.ttl, settings.changing_ttl, now),
        None => settings.ttl,
    };
    let name = |i: usize| d.sites[i].name.clone();
    let known = |p: &Option<String>| p.as_ref().filter(|p| d.site(p).is_some()).cloned();
    let (pathway, from) = (known(&request.pathway), known(&request.from));
    let mut reload = url::Url::parse(&settings.server).ok()?;
    let context = [
        ("session", request.session.as_ref()),
        ("from", pathway.as_ref()),
    ];
    if context.iter().any(|(_, v)| v.is_some()) {
        let mut pairs = reload.query_pairs_mut();
        for (key, value) in context {
            if let Some(value) = value {
                pairs.append_pair(key, value);
            }
        }
    }
    let moved = match (from, pathway) {
        (Some(from), Some(to)) if from != to => Some((from, to)),
        _ => None,
    };
    Some(Steered {
        site: sites.first().map(|&i| name(i)),
        manifest: Manifest {
            version: 1,
            ttl,
            reload_uri: reload.into(),
            pathway_priority: sites.into_iter().map(name).collect(),
        },
        moved,
    })
}

/// The services with content steering, by the path of their steering URL.
pub fn paths(d: &Deployment) -> HashMap<String, usize> {
    d.services
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let url = url::Url::parse(&s.content_steering.as_ref()?.server).ok()?;
            Some((url.path().to_owned(), i))
        })
        .collect()
}

/// The steering server's routes: every configured steering path, on one handler.
pub fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(shared)
}

/// The player's address: the connection's peer, or when that is a trusted proxy, the last
/// address of `X-Forwarded-For` that is not one (each proxy appends the address it was reached
/// from; earlier entries are the client's word and could be anything).
pub fn client_of(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(&ip.to_canonical()));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => continue,
            Ok(ip) => return ip,
            // A hop we cannot read ends what can be believed.
            Err(_) => break,
        }
    }
    peer
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(daemon::public::Client(peer)): ConnectInfo<daemon::public::Client>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let cors = [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")];
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, cors, "GET only\n").into_response();
    }
    let prepared = shared.prepared();
    let trusted = prepared
        .deployment
        .dns
        .as_ref()
        .and_then(|d| d.content_steering.as_ref())
        .map_or(&[][..], |s| &s.trusted_proxies[..]);
    let client = client_of(peer.ip(), &headers, trusted);
    let Some(service) = prepared.steering_paths.get(uri.path()).copied() else {
        return (
            StatusCode::NOT_FOUND,
            cors,
            "no service is steered at this path\n",
        )
            .into_response();
    };
    let request = Request::parse(query.as_deref());
    let Some(steered) = answer(&shared, service, client, &request, Instant::now()) else {
        return (StatusCode::NOT_FOUND, cors, "no such service\n").into_response();
    };
    shared.metrics.content_steering.observe(
        &shared.prepared().deployment,
        service,
        &request,
        &steered,
    );
    tracing::debug!(client = %peer, site = steered.site.as_deref().unwrap_or("-"), ttl = steered.manifest.ttl, reported = request.pathway.as_deref().unwrap_or("-"), "steering answered");
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            // Each client has its own answer, and it changes with health.
            (header::CACHE_CONTROL, "no-store"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        axum::Json(steered.manifest),
    )
        .into_response()
}

/// Connections the steering server serves at once, per listener; more wait in the kernel's
/// queue. A player holds one for a moment every TTL.
const MAX_CONNECTIONS: u32 = 10_000;

/// Serves the steering routes on `listener` in the background, with the accept loop and per-client
/// limits of every public HTTP server; `trusted_proxies` are never limited (each speaks for
/// many players).
pub fn serve(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    trusted_proxies: &[ipnet::IpNet],
    liveness: &daemon::Liveness,
    finish: daemon::public::Finish,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let addr = listener.local_addr()?;
    let limits = daemon::public::Limits {
        max_connections: MAX_CONNECTIONS,
        header_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(20),
    };
    let limits_per_client = config::site::ClientLimits {
        trusted: trusted_proxies.to_vec(),
        ..Default::default()
    };
    let admission = daemon::admission::Admission::new(&limits_per_client, []);
    let beat = liveness.flag(format!("steering listener on {addr}"));
    tracing::info!(%addr, "answering HLS content steering requests");
    Ok(tokio::spawn(daemon::public::serve(
        listener,
        router(shared),
        None,
        limits,
        Arc::new(admission),
        beat,
        finish,
    )))
}

/// The steering server's metrics.
pub struct SteeringMetrics {
    requests: IntCounterVec,
    changes: IntCounterVec,
    ttl: HistogramVec,
    malformed: IntCounter,
}

impl SteeringMetrics {
    pub fn new(registry: &Registry) -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "geodns_steering_requests_total",
                "Content steering requests answered, by service and the site put first",
            ),
            &["service", "site"],
        )
        .expect("valid metric");
        let changes = IntCounterVec::new(
            Opts::new(
                "geodns_steering_pathway_changes_total",
                "Players reporting a pathway other than at their previous steering request",
            ),
            &["service", "from", "to"],
        )
        .expect("valid metric");
        let ttl = HistogramVec::new(
            HistogramOpts::new(
                "geodns_steering_ttl_seconds",
                "TTLs of the steering manifests served",
            )
            .buckets(vec![1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0]),
            &["service"],
        )
        .expect("valid metric");
        let malformed = IntCounter::new(
            "geodns_steering_malformed_requests_total",
            "Steering requests with a malformed parameter (ignored; the client's answer was given)",
        )
        .expect("valid metric");
        for m in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(changes.clone()),
            Box::new(ttl.clone()),
            Box::new(malformed.clone()),
        ] {
            registry.register(m).expect("unique metric");
        }
        Self {
            requests,
            changes,
            ttl,
            malformed,
        }
    }

    /// Every steered service and site at 0 from the start.
    pub fn know(&self, d: &Deployment) {
        for service in d.services.iter().filter(|s| s.content_steering.is_some()) {
            for site in &d.sites {
                self.requests
                    .with_label_values(&[service.name.as_str(), site.name.as_str()]);
            }
        }
    }

    fn observe(&self, d: &Deployment, service: usize, request: &Request, steered: &Steered) {
        let Some(svc) = d.services.get(service) else {
            return;
        };
        let service = svc.name.as_str();
        let site = steered.site.as_deref().unwrap_or("none");
        self.requests.with_label_values(&[service, site]).inc();
        self.ttl
            .with_label_values(&[service])
            .observe(f64::from(steered.manifest.ttl));
        if let Some((from, to)) = &steered.moved {
            self.changes
                .with_label_values(&[service, from.as_str(), to.as_str()])
                .inc();
        }
        if request.malformed {
            self.malformed.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepared::Prepared;

    fn shared() -> Shared {
        let text = include_str!("../../config/examples/three-sites.toml");
        let d = Deployment::parse(text, std::path::Path::new("three-sites.toml")).unwrap();
        let db = crate::geo::GeoDb::from_bytes(
            crate::geo::synthetic_db(&[crate::geo::Place {
                network: "192.0.2.0/25".parse().unwrap(),
                country: "GB",
                continent: "EU",
                latitude: 51.51,
                longitude: -0.13,
            }])
            .unwrap(),
        )
        .unwrap();
        Shared::new(Prepared::new(d).unwrap(), Some(db)).unwrap()
    }

    fn live(shared: &Shared) -> usize {
        let prepared = shared.prepared();
        prepared
            .deployment
            .services
            .iter()
            .position(|s| s.name == "live")
            .unwrap()
    }

    #[test]
    fn a_trusted_proxy_is_believed_and_no_one_else() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7, 10.1.1.1".parse().unwrap(),
        );
        let proxy: IpAddr = "10.2.2.2".parse().unwrap();
        let stranger: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            client_of(proxy, &headers, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap(),
            "the last hop that is not a trusted proxy"
        );
        assert_eq!(client_of(stranger, &headers, &trusted), stranger);
        headers.insert("x-forwarded-for", "nonsense".parse().unwrap());
        assert_eq!(client_of(proxy, &headers, &trusted), proxy);
        assert_eq!(client_of(proxy, &HeaderMap::new(), &trusted), proxy);
    }

    #[test]
    fn requests_are_read_leniently() {
        let r = Request::parse(Some(
            "_HLS_pathway=ams&_HLS_throughput=5000000&session=a1b2&from=fra&other=x",
        ));
        assert_eq!(r.pathway.as_deref(), Some("ams"));
        assert_eq!(r.throughput, Some(5_000_000));
        assert_eq!(r.session.as_deref(), Some("a1b2"));
        assert_eq!(r.from.as_deref(), Some("fra"));
        assert!(!r.malformed);
        let bad = Request::parse(Some(
            "_HLS_pathway=%22%3Cscript%3E&_HLS_throughput=-1&session=",
        ));
        assert_eq!(bad.pathway, None);
        assert_eq!(bad.throughput, None);
        assert_eq!(bad.session, None);
        assert!(bad.malformed);
        assert!(Request::parse(Some(&"a".repeat(5000))).malformed);
        assert_eq!(Request::parse(None), Request::default());
    }

    #[test]
    fn the_first_pathway_is_the_site_dns_answers_and_a_failed_site_drops_behind() {
        let shared = shared();
        let live = live(&shared);
        let london = "192.0.2.7".parse().unwrap();
        let now = Instant::now();
        let request = Request::parse(Some("_HLS_pathway=lon&session=s1"));
        let steered = answer(&shared, live, london, &request, now).unwrap();
        assert_eq!(steered.manifest.pathway_priority, ["lon", "ams", "fra"]);
        assert_eq!(steered.site.as_deref(), Some("lon"));
        assert_eq!(steered.manifest.ttl, 2, "the example's steering TTL");
        assert_eq!(steered.manifest.version, 1);
        let reload = url::Url::parse(&steered.manifest.reload_uri).unwrap();
        let pairs: Vec<(String, String)> = reload.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                ("session".into(), "s1".into()),
                ("from".into(), "lon".into())
            ]
        );
        // London's nodes go down: it drops behind the usable sites, as the DNS answer moves.
        shared.update_health(|h| {
            let lon = h.sites.iter_mut().find(|s| s.name == "lon").unwrap();
            for n in &mut lon.nodes {
                n.healthy = false;
            }
            lon.changed_at = Some(now);
        });
        let steered = answer(&shared, live, london, &request, now).unwrap();
        assert_eq!(steered.manifest.pathway_priority, ["ams", "fra", "lon"]);
        let dns = crate::answer::answer(
            &shared,
            &hickory_proto::rr::Name::from_ascii("live.tv.example.net.").unwrap(),
            hickory_proto::rr::RecordType::A,
            london,
        );
        assert_eq!(
            dns.steering.and_then(|s| s.site).as_deref(),
            Some("ams"),
            "DNS and steering agree"
        );
        // An operator drains Amsterdam too: it drops behind Frankfurt at the next reload.
        shared.update_health(|h| h.set_admin("ams", None, Some(crate::health::AdminState::Down)));
        let drained = answer(&shared, live, london, &request, now).unwrap();
        assert_eq!(drained.manifest.pathway_priority, ["fra", "ams", "lon"]);
        assert_eq!(drained.manifest.ttl, 1, "a site it depends on is changing");
        // The player moved: the next request, through the RELOAD-URI, says so.
        let next = Request::parse(Some("_HLS_pathway=ams&session=s1&from=lon"));
        let steered = answer(&shared, live, london, &next, now).unwrap();
        assert_eq!(steered.moved, Some(("lon".into(), "ams".into())));
    }

    #[test]
    fn unlocated_and_malformed_clients_get_the_default_order() {
        let shared = shared();
        let live = live(&shared);
        let request = Request::parse(Some("_HLS_pathway=nowhere&from=%00&_HLS_throughput=x"));
        let steered = answer(
            &shared,
            live,
            "10.9.9.9".parse().unwrap(),
            &request,
            Instant::now(),
        )
        .unwrap();
        assert_eq!(steered.manifest.pathway_priority, ["ams", "fra", "lon"]);
        assert_eq!(steered.moved, None);
        let json = serde_json::to_value(&steered.manifest).unwrap();
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["PATHWAY-PRIORITY", "RELOAD-URI", "TTL", "VERSION"],
            "the specification's keys and no others"
        );
    }
}
