//! Starting a node: its channels and feeders, the HTTP server, the admin endpoint.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use std::time::Duration;

use anyhow::{Context, Result, bail};
use config::Deployment;
use config::service::{ChannelSource, Clip};
use daemon::handover::{Inherited, Offer, Offered, Replacer};
use tracing::info;

use crate::handover::Hold;

use crate::channel::Channel;
use crate::ingest::{self, UdpIngest};
use crate::server::{NodeState, router};

/// A node running in background tasks.
pub struct Running {
    pub state: Arc<NodeState>,
    /// Starts this node's replacement and tells when one serves; `None` without `handover`.
    pub replacer: Option<Arc<Replacer>>,
    viewers: Arc<Viewers>,
    admin: Option<daemon::admin::Serving>,
}

impl Running {
    /// A replacement serves on this node's sockets: stop accepting, tell the status streams
    /// to dial again, and let responses in flight complete (at most
    /// [`daemon::public::FINISH_WITHIN`]).
    pub async fn finish(self) {
        self.viewers.finish.now();
        // The listener is left to the replacement before healthd is told to dial again.
        tokio::task::yield_now().await;
        self.state.set_replaced();
        let serving = self
            .viewers
            .serving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let viewers = async {
            if let Some(task) = serving {
                let _ = task.await;
            }
        };
        let admin = async {
            if let Some(admin) = self.admin {
                admin.finish(Duration::from_secs(2)).await;
            }
        };
        tokio::join!(viewers, admin);
    }
}

/// Starts node `name` of the deployment; it runs in background tasks until the runtime ends.
/// With `take_over`, its sockets and state come from the running process at the node's
/// `handover` (see [`crate::handover`]).
pub async fn start(deployment: &Deployment, name: &str, take_over: bool) -> Result<Running> {
    let (site, node) = deployment
        .nodes()
        .find(|(_, n)| n.name == name)
        .with_context(|| format!("node {name:?} is not in the deployment file"))?;
    // Taken first: a replacement that cannot reach the running node changes nothing.
    let mut inherited = match (take_over, &node.handover) {
        (false, _) => Inherited::default(),
        (true, None) => bail!(
            "--take-over needs the node's `handover`: the socket where the running streamnode offers its sockets"
        ),
        (true, Some(path)) => Inherited::receive(path, "streamnode")?,
    };
    let carried: Option<(crate::handover::State, Vec<u8>)> = inherited
        .state()
        .context("the state the running streamnode handed over")?;
    let (mut saved, mut resumed, payload, epoch, node_carried) = match carried {
        Some((state, payload)) => (
            state
                .channels
                .into_iter()
                .map(|c| (c.name().to_owned(), c))
                .collect::<HashMap<_, _>>(),
            state.feeders,
            payload,
            Some(crate::feeder::Epoch::since(state.epoch)),
            Some((state.draining, state.served, state.requests)),
        ),
        None => Default::default(),
    };
    let mut offered = Offered::default();
    let hold = Hold::default();
    // Certificates are read before anything starts: a node asked for TLS never serves clear text.
    let tls = node
        .tls
        .as_ref()
        .map(|files| daemon::public::tls_acceptor(&files.cert, &files.key))
        .transpose()
        .with_context(|| format!("node {name:?}: TLS"))?;
    let faults = crate::feeder::Faults::default();
    let changes = crate::status::Changes::default();
    let epoch = epoch.unwrap_or_else(crate::feeder::Epoch::now);
    let mut channels = HashMap::new();
    let mut renditions = HashMap::new();
    let mut pathways = HashMap::new();
    // Started only once nothing can fail: a replacement that gives up must not have read a
    // datagram of the ingest the old process goes on with.
    let mut feeders: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> =
        Vec::new();
    // An edge packages nothing: it serves its origins' channels.
    let packaging = node.role == config::site::NodeRole::Origin;
    for service in node
        .services
        .iter()
        .filter_map(|s| deployment.service(s))
        .filter(|_| packaging)
    {
        for channel_name in &service.channels {
            if channels.contains_key(channel_name) || renditions.contains_key(channel_name) {
                continue;
            }
            let config = deployment
                .channel(channel_name)
                .with_context(|| format!("channel {channel_name:?} is not defined"))?;
            // One packager per rendition, or one for the channel itself.
            let packagers: Vec<(String, Clip, Option<SocketAddr>, Option<SocketAddr>)> =
                if config.renditions.is_empty() {
                    vec![(
                        config.name.clone(),
                        config.clip,
                        config.primary,
                        config.backup,
                    )]
                } else {
                    renditions.insert(
                        config.name.clone(),
                        config.renditions.iter().map(|r| r.name.clone()).collect(),
                    );
                    if let Some(steering) = &service.content_steering {
                        pathways.insert(
                            config.name.clone(),
                            steered(deployment, service, steering, &site.name),
                        );
                    }
                    config
                        .renditions
                        .iter()
                        .map(|r| {
                            (
                                format!("{}/{}", config.name, r.name),
                                r.clip,
                                r.primary,
                                r.backup,
                            )
                        })
                        .collect()
                };
            for (path, clip, primary, backup) in packagers {
                // The packager as the replaced process left it, or a new one.
                let channel = match saved.remove(&path) {
                    Some(saved) => Channel::restore(saved, &payload).with_context(|| {
                        format!("channel {path:?}: the handed-over state does not fit its bytes")
                    })?,
                    None => Channel::new(&path, config.segment_duration.get(), config.window),
                };
                let channel = Arc::new(RwLock::new(channel));
                let resume = resumed.remove(&path);
                let hold_point = hold.register();
                match config.source {
                    ChannelSource::Builtin => {
                        let resume = match resume {
                            Some(crate::handover::Feeder::Builtin { position, first }) => {
                                Some(crate::feeder::Resume { position, first })
                            }
                            _ => None,
                        };
                        feeders.push(Box::pin(crate::feeder::builtin(
                            channel.clone(),
                            clip,
                            epoch,
                            faults.clone(),
                            changes.clone(),
                            config.stall_timeout.get(),
                            hold_point,
                            resume,
                        )));
                    }
                    ChannelSource::Udp => {
                        let Some(primary) = primary else {
                            bail!("channel {path:?}: source = \"udp\" needs `primary`");
                        };
                        let ingest = UdpIngest {
                            backup,
                            interface: config.interface.clone(),
                            stall_timeout: config.stall_timeout.get(),
                            max_cc_errors_per_sec: config.max_cc_errors_per_sec,
                            failback: config.failback,
                        };
                        // The replaced process's sockets (what arrived since it stopped waits
                        // in them), or opened here.
                        let mut open = |feed: &str, addr| -> Result<tokio::net::UdpSocket> {
                            let name = crate::handover::ingest_name(&path, feed, addr);
                            let socket = match inherited.take(&name) {
                                Some(fd) => {
                                    let socket = std::net::UdpSocket::from(fd);
                                    socket.set_nonblocking(true)?;
                                    tokio::net::UdpSocket::from_std(socket)?
                                }
                                None => ingest::open(addr, ingest.interface.as_deref())
                                    .with_context(|| {
                                        format!(
                                            "channel {path:?}: cannot receive the feed on {addr}"
                                        )
                                    })?,
                            };
                            offered.add(name, &socket)?;
                            Ok(socket)
                        };
                        let primary = open("primary", primary)?;
                        let backup = ingest.backup.map(|b| open("backup", b)).transpose()?;
                        feeders.push(Box::pin(ingest::run(
                            channel.clone(),
                            primary,
                            backup,
                            ingest,
                            faults.clone(),
                            changes.clone(),
                            hold_point,
                            resume,
                        )));
                    }
                }
                channels.insert(path, channel);
            }
        }
    }
    // healthd's probes leave from its probe source, or (most likely without one) an address
    // it listens on: never limited.
    let healthd = [site.healthd.feed.ip(), site.healthd.admin.ip()]
        .into_iter()
        .chain(site.healthd.probe_source);
    let admission = daemon::admission::Admission::new(&node.client_limits, healthd);
    let mut state = NodeState::new(&node.name, node.capacity_mbps, channels, admission);
    state.renditions = renditions;
    state.pathways = pathways;
    state.version = node.version.clone();
    let names: std::collections::BTreeSet<&str> = node
        .services
        .iter()
        .filter_map(|s| deployment.service(s))
        .flat_map(|s| s.channels.iter().map(String::as_str))
        .collect();
    state.access = crate::access::Access::new(deployment, names.iter().copied())
        .with_context(|| format!("node {name:?}: subscriber tokens"))?;
    if node.role == config::site::NodeRole::Edge {
        let settings = node.edge.clone().unwrap_or_default();
        let origins = if settings.origins.is_empty() {
            // The anycast origin: routing picks the site.
            node.services
                .iter()
                .filter_map(|s| deployment.service(s))
                .flat_map(|s| s.anycast_addresses.first())
                .map(|a| SocketAddr::new(*a, settings.origin_port))
                .take(1)
                .collect()
        } else {
            settings.origins.clone()
        };
        info!(origins = ?origins, "an edge: serving the origins' channels through the cache");
        let carried = names.iter().map(|n| n.to_string());
        state.edge = Some(Arc::new(
            crate::edge::Edge::new(carried, origins, Some(&settings))
                .with_context(|| format!("node {name:?}: the edge"))?,
        ));
    }
    state.faults = faults;
    state.changes = changes;
    if let Some((draining, served, requests)) = node_carried {
        state.set_draining(draining);
        state.carry_counters(served, requests);
        info!(
            channels = state.channels.len(),
            "going on from the replaced streamnode's channels"
        );
    }
    let state = Arc::new(state);
    // Every step that can fail comes before the first request served or datagram read, so
    // that a replacement that fails leaves the old process as it was.
    let listener = inherited
        .tcp("http", node.listen)
        .with_context(|| format!("cannot listen on {}", node.listen))?;
    offered.tcp("http", node.listen, &listener)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let offer = node
        .handover
        .as_ref()
        .map(|path| Offer::bind(path, take_over, "streamnode"))
        .transpose()
        .with_context(|| format!("node {name:?}: handover"))?;
    let mut admin = None;
    if let Some(addr) = node.admin {
        let listener = inherited
            .tcp("admin", addr)
            .map_err(|cause| daemon::admin::AdminError { addr, cause })?;
        offered.tcp("admin", addr, &listener)?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|cause| daemon::admin::AdminError { addr, cause })?;
        let token = node
            .admin_token
            .as_ref()
            .map(|t| t.resolve())
            .transpose()
            .with_context(|| format!("node {name:?}: admin_token"))?;
        admin = Some((listener, token));
    }
    let replacer = match offer {
        Some(offer) => {
            let carried = crate::handover::Carried {
                node: state.clone(),
                hold: hold.clone(),
                epoch: epoch.wall(),
            };
            Some(offer.start(offered, Arc::new(carried))?)
        }
        None => None,
    };

    for feeder in feeders {
        tokio::spawn(feeder);
    }
    let liveness = daemon::Liveness::default();
    tokio::spawn(watch_channels(state.clone(), &liveness));
    let beat = liveness.flag(format!("viewer listener on {}", node.listen));
    let (served, limits) = (state.clone(), daemon::public::Limits::of(node));
    let finish = daemon::public::Finish::default();
    let finishing = finish.clone();
    let viewers = Arc::new(Viewers {
        addr: node.listen,
        serving: std::sync::Mutex::new(None),
        finish,
        start: Box::new(move |listener| {
            tokio::spawn(daemon::public::serve(
                listener,
                router(served.clone()),
                tls.clone(),
                limits,
                served.admission.clone(),
                beat.clone(),
                finishing.clone(),
            ))
        }),
    });
    viewers.up(listener);
    let admin = admin.map(|(listener, token)| {
        let scraped = state.clone();
        let open = daemon::admin::router(
            "streamnode",
            Arc::new(move || crate::metrics::render(&scraped)),
            liveness.clone(),
        );
        let routes = open
            .merge(client_route(&state))
            .merge(daemon::admin::protected(
                admin_routes(
                    &state,
                    node.fault_injection.then_some(&viewers),
                    replacer.clone(),
                ),
                token,
            ));
        daemon::admin::serve_on(listener, routes)
    });
    if let Some(r) = &replacer {
        let finish = viewers.finish.clone();
        r.on_served(move || finish.now());
        if let Some(admin) = &admin {
            r.on_served(admin.stop_accepting());
        }
    }
    daemon::systemd::serving(&liveness);
    inherited.serving();
    info!(node = %node.name, listen = %node.listen, channels = state.channels.len(), "streamnode running");
    Ok(Running {
        state,
        replacer,
        viewers,
        admin,
    })
}

/// The pathways of a steered service's channels as the master playlists of a node at `site`
/// list them: every site with a node carrying the service, this one first.
fn steered(
    deployment: &Deployment,
    service: &config::Service,
    steering: &config::service::ContentSteering,
    site: &str,
) -> crate::channel::Pathways {
    let mut sites: Vec<&str> = deployment
        .sites
        .iter()
        .filter(|s| s.nodes.iter().any(|n| n.services.contains(&service.name)))
        .map(|s| s.name.as_str())
        .collect();
    sites.sort_by_key(|s| *s != site);
    crate::channel::Pathways {
        server: steering.server.clone(),
        current: site.to_owned(),
        sites: sites
            .into_iter()
            .filter_map(|s| Some((s.to_owned(), steering.pathway_url(s)?)))
            .collect(),
    }
}

/// `GET /client?address=ADDR`: whether a client is trusted, the prefix it counts as, the
/// connections it holds and its request bucket (limited within the last second or not).
fn client_route(state: &Arc<NodeState>) -> axum::Router {
    #[derive(serde::Deserialize)]
    struct Query {
        address: std::net::IpAddr,
    }
    let admission = state.admission.clone();
    axum::Router::new().route(
        "/client",
        axum::routing::get(
            move |axum::extract::Query(q): axum::extract::Query<Query>| async move {
                axum::Json(admission.state(q.address))
            },
        ),
    )
}

/// The state-changing admin routes: drain and undrain, and fault injection when the node's
/// configuration offers it (labs and demos).
fn admin_routes(
    state: &Arc<NodeState>,
    fault_injection: Option<&Arc<Viewers>>,
    replacer: Option<Arc<Replacer>>,
) -> axum::Router {
    let (drain, undrain) = (state.clone(), state.clone());
    let routes = axum::Router::new()
        .route(
            "/drain",
            axum::routing::post(move || async move {
                drain.set_draining(true);
                info!("drained by an operator: healthd takes the node out, viewers keep playing");
                "draining\n"
            }),
        )
        .route(
            "/undrain",
            axum::routing::post(move || async move {
                undrain.set_draining(false);
                info!("drain cleared by an operator");
                "ok\n"
            }),
        );
    let routes = match replacer {
        Some(replacer) => routes.merge(daemon::handover::route(replacer)),
        None => routes,
    };
    let Some(viewers) = fault_injection else {
        return routes;
    };
    let (down, up) = (viewers.clone(), viewers.clone());
    // Each fault is a switch, set by one route and cleared by another.
    let switch = |flag: &Arc<AtomicBool>, on: bool, what: &'static str| {
        let flag = flag.clone();
        axum::routing::post(move || async move {
            flag.store(on, Ordering::Relaxed);
            tracing::warn!("{what} by request (fault injection)");
            if on { "on\n" } else { "off\n" }
        })
    };
    let faults = &state.faults;
    routes
        // The playlist stops advancing while HTTP answers 200 and ingest flows: the
        // frozen-packager failure only healthd's player-like probe can catch.
        .route("/freeze", switch(&faults.frozen, true, "streams frozen"))
        .route(
            "/unfreeze",
            switch(&faults.frozen, false, "streams unfrozen"),
        )
        // Ingest stops, as when the encoder or its network fails.
        .route("/cut-ingest", switch(&faults.cut, true, "ingest cut"))
        .route(
            "/restore-ingest",
            switch(&faults.cut, false, "ingest restored"),
        )
        // The node's HTTP server goes away, as when its process or host dies: new connections
        // are refused, open ones closed.
        .route(
            "/stop-serving",
            axum::routing::post(move || async move {
                down.down();
                tracing::warn!("viewer listener stopped by request (fault injection)");
                "off\n"
            }),
        )
        .route(
            "/start-serving",
            axum::routing::post(move || async move {
                match tokio::net::TcpListener::bind(up.addr).await {
                    Ok(listener) => {
                        up.up(listener);
                        tracing::warn!(
                            "viewer listener started again by request (fault injection)"
                        );
                        (axum::http::StatusCode::OK, "on\n".to_owned())
                    }
                    Err(e) => (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot listen on {} again: {e}\n", up.addr),
                    ),
                }
            }),
        )
}

/// The viewer-facing server, which fault injection can take down and bring back.
struct Viewers {
    addr: SocketAddr,
    serving: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Ends the server gracefully: its replacement serves.
    finish: daemon::public::Finish,
    start: Box<dyn Fn(tokio::net::TcpListener) -> tokio::task::JoinHandle<()> + Send + Sync>,
}

impl Viewers {
    /// Serves on `listener` (a server already running is stopped first).
    fn up(&self, listener: tokio::net::TcpListener) {
        let task = (self.start)(listener);
        let old = self
            .serving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(task);
        if let Some(old) = old {
            old.abort();
        }
    }

    /// Stops serving: the listener closes, and every connection with it.
    fn down(&self) {
        let task = self
            .serving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            task.abort();
        }
    }
}

/// Beats each channel's liveness while its newest segment is recent: a channel whose ingest or
/// feeder stopped (or was frozen or cut) makes `/healthz` on the admin address say so.
fn watch_channels(
    state: Arc<NodeState>,
    liveness: &daemon::Liveness,
) -> impl std::future::Future<Output = ()> + use<> {
    let beats: Vec<(String, daemon::Beat, std::time::Duration)> = state
        .channels
        .iter()
        .map(|(path, channel)| {
            let target = channel
                .read()
                .map(|c| c.target())
                .unwrap_or(std::time::Duration::from_secs(2));
            // A new segment comes every target duration; allow a few, and the start.
            let bound = target * 3 + std::time::Duration::from_secs(5);
            (
                path.clone(),
                liveness.heartbeat(format!("channel {path}"), bound),
                bound,
            )
        })
        .collect();
    async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tick.tick().await;
            let now = std::time::SystemTime::now();
            for (path, beat, bound) in &beats {
                let fresh = state.channels.get(path).is_some_and(|c| {
                    c.read().is_ok_and(|c| {
                        c.newest().is_some_and(|s| {
                            now.duration_since(s.started).is_ok_and(|age| age < *bound)
                        })
                    })
                });
                if fresh {
                    beat.beat();
                }
            }
        }
    }
}
