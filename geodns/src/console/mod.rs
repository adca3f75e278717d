//! The operators' console: one read-only page on geodns's admin listener showing every site
//! (its feed, BGP sessions, announcements, each service's verdict and nodes), where each region
//! of clients is steered now and why, and the recent events. geodns is the one place that
//! follows every site's feed, so the page needs nothing else; it follows them live over
//! server-sent events.
//!
//! Routes: `/console` (the page), `/console/app.js` and `/console/style.css` (its only assets,
//! served from the binary: nothing is fetched from elsewhere at run time), `/console/state`
//! (the whole state as JSON) and `/console/events` (the state again on every change).

pub mod board;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use config::service::AnswerMode;
use serde::Serialize;

use crate::health::Family;
use crate::state::Shared;
use crate::steering::{RankReason, Ranking, SiteVerdict, choose, verdict};
use board::Event;

/// How many regions the console lists per service (the largest; the rest are summed).
const REGIONS: usize = 12;

/// How often a console stream looks for changes.
const POLL: Duration = Duration::from_millis(200);

/// A stream sends the state at least this often, changed or not (ages move).
const REFRESH: Duration = Duration::from_secs(5);

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

/// Nothing but this page's own assets, and its stream, may load.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's routes, open like `/explain` (they change nothing).
pub fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route(
            "/console",
            get(|| async { asset("text/html; charset=utf-8", PAGE) }),
        )
        .route(
            "/console/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/console/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route("/console/state", get(state_handler))
        .route("/console/events", get(events_handler))
        .with_state(shared)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn state_handler(State(shared): State<Arc<Shared>>) -> Response {
    Json(snapshot(&shared)).into_response()
}

/// The state at once, then again whenever health, configuration or the board moves.
async fn events_handler(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let events = daemon::sse::from_task(move |tx| async move {
        let mut seen = None;
        let mut sent_at = tokio::time::Instant::now();
        loop {
            let now = (shared.generation(), shared.console.version());
            if seen != Some(now) || sent_at.elapsed() >= REFRESH {
                let data = serde_json::to_string(&snapshot(&shared)).unwrap_or_default();
                let event = Ok::<_, Infallible>(SseEvent::default().data(data));
                if tx.send(event).await.is_err() {
                    return;
                }
                seen = Some(now);
                sent_at = tokio::time::Instant::now();
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// Everything the page shows.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// Milliseconds since the Unix epoch.
    pub now_ms: u64,
    pub sites: Vec<SiteCard>,
    pub steering: Vec<ServiceSteering>,
    pub events: Vec<Event>,
}

/// One site.
#[derive(Debug, Serialize)]
pub struct SiteCard {
    pub name: String,
    /// `live`, `silent` (past its grace: its nodes count as up) or `never heard`.
    pub feed: &'static str,
    /// Milliseconds since the feed was last heard.
    pub feed_age_ms: Option<u64>,
    pub instance: Option<String>,
    pub generation: u64,
    /// An operator's override here (`up`, `down`).
    pub admin: Option<crate::health::AdminState>,
    pub services: Vec<ServiceCard>,
    pub nodes: Vec<NodeCard>,
    pub peers: Vec<feed::PeerState>,
}

/// One service at one site: healthd's verdict and announcement, and geodns's own verdict.
#[derive(Debug, Serialize)]
pub struct ServiceCard {
    pub name: String,
    /// healthd's verdict (absent before its feed is heard).
    pub healthy: Option<bool>,
    pub announcement: Option<String>,
    pub reason: Option<String>,
    /// Whether DNS may answer with this site (IPv4 questions), and why.
    pub dns: SiteVerdict,
}

/// One node.
#[derive(Debug, Serialize)]
pub struct NodeCard {
    pub name: String,
    pub addresses: Vec<String>,
    pub services: Vec<String>,
    /// Up for DNS answers (after operators' overrides).
    pub up: bool,
    pub draining: bool,
    /// Egress over capacity, 0..1.
    pub load: f64,
    pub reason: Option<String>,
    pub admin: Option<crate::health::AdminState>,
}

/// Where each region's clients are sent for one service.
#[derive(Debug, Serialize)]
pub struct ServiceSteering {
    pub service: String,
    pub hostnames: Vec<String>,
    pub regions: Vec<RegionCard>,
    /// Located IPv4 addresses of the regions not listed.
    pub other_addresses: u64,
}

/// One region: the clients one site order ranks.
#[derive(Debug, Serialize)]
pub struct RegionCard {
    pub countries: Vec<(String, u64)>,
    pub ipv4_addresses: u64,
    /// Site names, best first.
    pub ranking: Vec<String>,
    /// The site answering now.
    pub site: Option<String>,
    pub fail_open: bool,
    /// Each ranked site's verdict, as `explain` gives it.
    pub verdicts: Vec<SiteVerdict>,
}

/// The console's state now.
pub fn snapshot(shared: &Shared) -> Snapshot {
    let prepared = shared.prepared();
    let health = shared.health();
    let atlas = shared.atlas();
    let d = &prepared.deployment;
    let sites = health
        .sites
        .iter()
        .map(|view| {
            let doc = shared.console.document(&view.name);
            let feed = match (view.last_feed, &doc) {
                (Some(_), _) => "live",
                (None, Some(_)) => "silent",
                (None, None) => "never heard",
            };
            let services = d
                .services
                .iter()
                .filter(|s| view.nodes.iter().any(|n| n.services.contains(&s.name)))
                .map(|s| {
                    let said = doc
                        .as_ref()
                        .and_then(|doc| doc.services.iter().find(|x| x.name == s.name));
                    ServiceCard {
                        name: s.name.clone(),
                        healthy: said.map(|x| x.healthy),
                        announcement: said.map(|x| x.announcement.clone()),
                        reason: said.map(|x| x.reason.clone()),
                        dns: verdict(view, s, Family::V4),
                    }
                })
                .collect();
            let nodes = view
                .nodes
                .iter()
                .map(|n| {
                    let said = doc
                        .as_ref()
                        .and_then(|doc| doc.nodes.iter().find(|x| x.name == n.name));
                    NodeCard {
                        name: n.name.clone(),
                        addresses: n
                            .ipv4
                            .map(|a| a.to_string())
                            .into_iter()
                            .chain(n.ipv6.map(|a| a.to_string()))
                            .collect(),
                        services: n.services.clone(),
                        up: n.up(),
                        draining: said.is_some_and(|x| x.draining),
                        load: n.load,
                        reason: said.and_then(|x| x.reason.clone()),
                        admin: n.admin,
                    }
                })
                .collect();
            SiteCard {
                name: view.name.clone(),
                feed,
                feed_age_ms: view.last_feed.map(|t| t.elapsed().as_millis() as u64),
                instance: doc.as_ref().map(|doc| doc.instance.clone()),
                generation: view.generation,
                admin: view.admin,
                services,
                nodes,
                peers: doc.map(|doc| doc.peers).unwrap_or_default(),
            }
        })
        .collect();
    let steering = d
        .services
        .iter()
        .filter(|s| s.answer == AnswerMode::Nodes && !s.hostnames.is_empty())
        .map(|s| {
            // Only the listed regions are judged: a database with many sites has many orders,
            // and the page is rebuilt on every change of health.
            let regions: Vec<RegionCard> = atlas
                .regions
                .iter()
                .take(REGIONS)
                .map(|r| {
                    let ranking = Ranking {
                        order: r.order.clone(),
                        distances: Vec::new(),
                        reason: RankReason::Default,
                    };
                    let choice = choose(&ranking, &health, s, Family::V4);
                    let name = |i: usize| d.sites.get(i).map(|site| site.name.clone());
                    RegionCard {
                        countries: r.countries.clone(),
                        ipv4_addresses: r.ipv4_addresses,
                        ranking: r.order.iter().filter_map(|&i| name(i)).collect(),
                        site: choice.as_ref().and_then(|c| name(c.site)),
                        fail_open: choice.as_ref().is_some_and(|c| c.fail_open),
                        verdicts: choice.map(|c| c.verdicts).unwrap_or_default(),
                    }
                })
                .collect();
            let other_addresses = atlas
                .regions
                .iter()
                .skip(REGIONS)
                .map(|r| r.ipv4_addresses)
                .sum();
            ServiceSteering {
                service: s.name.clone(),
                hostnames: s.hostnames.clone(),
                regions,
                other_addresses,
            }
        })
        .collect();
    Snapshot {
        now_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        sites,
        steering,
        events: shared.console.events(),
    }
}
