//! Starting a node: its channels and feeders, the HTTP server, the admin endpoint.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result, bail};
use config::Deployment;
use config::service::{ChannelSource, Clip};
use tracing::info;

use crate::channel::Channel;
use crate::ingest::{self, UdpIngest};
use crate::server::{NodeState, router};

/// Starts node `name` of the deployment; it runs in background tasks until the runtime ends.
pub async fn start(deployment: &Deployment, name: &str) -> Result<Arc<NodeState>> {
    let (site, node) = deployment
        .nodes()
        .find(|(_, n)| n.name == name)
        .with_context(|| format!("node {name:?} is not in the deployment file"))?;
    // Certificates are read before anything starts: a node asked for TLS never serves clear text.
    let tls = node
        .tls
        .as_ref()
        .map(|files| daemon::public::tls_acceptor(&files.cert, &files.key))
        .transpose()
        .with_context(|| format!("node {name:?}: TLS"))?;
    let faults = crate::feeder::Faults::default();
    let changes = crate::status::Changes::default();
    let epoch = crate::feeder::Epoch::now();
    let mut channels = HashMap::new();
    let mut renditions = HashMap::new();
    let mut pathways = HashMap::new();
    for service in node.services.iter().filter_map(|s| deployment.service(s)) {
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
                let channel = Arc::new(RwLock::new(Channel::new(
                    &path,
                    config.segment_duration.get(),
                    config.window,
                )));
                match config.source {
                    ChannelSource::Builtin => {
                        tokio::spawn(crate::feeder::builtin(
                            channel.clone(),
                            clip,
                            epoch,
                            faults.clone(),
                            changes.clone(),
                            config.stall_timeout.get(),
                        ));
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
                        let open = |addr| {
                            ingest::open(addr, ingest.interface.as_deref()).with_context(|| {
                                format!("channel {path:?}: cannot receive the feed on {addr}")
                            })
                        };
                        let primary = open(primary)?;
                        let backup = ingest.backup.map(open).transpose()?;
                        tokio::spawn(ingest::run(
                            channel.clone(),
                            primary,
                            backup,
                            ingest,
                            faults.clone(),
                            changes.clone(),
                        ));
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
    state.faults = faults;
    state.changes = changes;
    let state = Arc::new(state);
    let listener = tokio::net::TcpListener::bind(node.listen)
        .await
        .with_context(|| format!("cannot listen on {}", node.listen))?;
    let liveness = daemon::Liveness::default();
    tokio::spawn(watch_channels(state.clone(), &liveness));
    let beat = liveness.flag(format!("viewer listener on {}", node.listen));
    let (served, limits) = (state.clone(), daemon::public::Limits::of(node));
    let viewers = Arc::new(Viewers {
        addr: node.listen,
        serving: std::sync::Mutex::new(None),
        start: Box::new(move |listener| {
            tokio::spawn(daemon::public::serve(
                listener,
                router(served.clone()),
                tls.clone(),
                limits,
                served.admission.clone(),
                beat.clone(),
            ))
        }),
    });
    viewers.up(listener);
    daemon::systemd::serving(&liveness);
    if let Some(admin) = node.admin {
        let token = node
            .admin_token
            .as_ref()
            .map(|t| t.resolve())
            .transpose()
            .with_context(|| format!("node {name:?}: admin_token"))?;
        let scraped = state.clone();
        let open = daemon::admin::router(
            "streamnode",
            Arc::new(move || crate::metrics::render(&scraped)),
            liveness,
        );
        let routes = open
            .merge(client_route(&state))
            .merge(daemon::admin::protected(
                admin_routes(&state, node.fault_injection.then_some(&viewers)),
                token,
            ));
        daemon::admin::serve(admin, routes).await?;
    }
    info!(node = %node.name, listen = %node.listen, channels = state.channels.len(), "streamnode running");
    Ok(state)
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
fn admin_routes(state: &Arc<NodeState>, fault_injection: Option<&Arc<Viewers>>) -> axum::Router {
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
