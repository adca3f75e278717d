//! Running geodns: UDP and TCP listeners, the admin endpoint (metrics, explain, admin state),
//! location database reloads, SIGHUP and SIGTERM.

use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use config::Deployment;
use daemon::Liveness;
use daemon::handover::{Inherited, Offer, Offered};
use hickory_proto::rr::{Name, RecordType};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::answer::{LocationView, Steered, answer};
use crate::geo::GeoDb;
use crate::health::AdminState;
use crate::prepared::Prepared;
use crate::state::Shared;

/// Why geodns could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen for DNS on {addr}: {cause}")]
    Listen {
        addr: std::net::SocketAddr,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Prepare(#[from] crate::prepared::PrepareError),
    #[error(transparent)]
    Geo(#[from] crate::geo::GeoError),
    #[error(transparent)]
    Atlas(#[from] crate::atlas::AtlasError),
    #[error("compiling the location atlas stopped: {0}")]
    Compile(String),
    #[error(transparent)]
    Admin(#[from] daemon::admin::AdminError),
    #[error("the deployment file has no [dns] section: nothing to serve")]
    NoDns,
    #[error(transparent)]
    AdminState(#[from] crate::admin_state::AdminStateError),
    #[error("dns.admin_token: {0}")]
    Secret(#[from] config::types::SecretError),
    #[error(transparent)]
    TakeOver(#[from] daemon::handover::TakeOverError),
    #[error("the state the running geodns handed over: {0}")]
    TakenState(#[from] serde_json::Error),
    #[error(
        "--take-over needs dns.handover: the socket where the running geodns offers its sockets"
    )]
    NoHandover,
    #[error("dns.handover: {0}")]
    Offer(std::io::Error),
}

/// Opens the location database named in the deployment, if any.
pub fn open_geo(d: &Deployment) -> Result<Option<GeoDb>, crate::geo::GeoError> {
    d.dns
        .as_ref()
        .and_then(|dns| dns.geoip_db.as_ref())
        .map(|p| GeoDb::open(p))
        .transpose()
}

/// How long a replaced geodns lets its open TCP connections finish before it exits.
const TCP_DRAIN: Duration = Duration::from_secs(2);

/// Serves DNS until SIGTERM/Ctrl-C, or until a replacement took over (see [`crate::takeover`]).
/// SIGHUP re-reads `config_path`. `udp_threads` workers answer UDP on each listen address, a
/// task per listener TCP. With `take_over`, the sockets and state come from the running geodns
/// at `dns.handover` instead of being bound here.
pub async fn run(
    deployment: Deployment,
    config_path: PathBuf,
    udp_threads: usize,
    take_over: bool,
) -> Result<(), RunError> {
    let dns = deployment.dns.clone().ok_or(RunError::NoDns)?;
    // Taken first: a replacement that cannot reach the running geodns changes nothing.
    let mut inherited = match (take_over, &dns.handover) {
        (false, _) => Inherited::default(),
        (true, None) => return Err(RunError::NoHandover),
        (true, Some(path)) => Inherited::receive(path, "geodns")?,
    };
    let geo = open_geo(&deployment)?;
    if geo.is_none() {
        warn!("no location database (dns.geoip_db): every client gets the default site order");
    }
    let prepared = Prepared::new(deployment)?;
    // Compiling a full-size database takes seconds: off the runtime's threads.
    let shared = tokio::task::spawn_blocking(move || Shared::new(prepared, geo))
        .await
        .map_err(|e| RunError::Compile(e.to_string()))??;
    let shared = Arc::new(shared);
    if let Some(path) = &dns.admin_state {
        // A file that cannot be read stops the start: silently dropping an operator's
        // "keep this site out" would put it back into service.
        let saved = crate::admin_state::load(path)?;
        let deployment = &shared.prepared().deployment;
        let stale =
            shared.update_health(|health| crate::admin_state::apply(health, deployment, &saved));
        for stale in stale {
            warn!(path = %path.display(), "saved admin state names {stale}, which the deployment no longer has; ignored");
        }
        if saved != crate::admin_state::Saved::default() {
            info!(overrides = saved.overrides.len(), withdrawn_canaries = saved.withdrawn_canaries.len(), path = %path.display(), "operator overrides restored");
        }
    }
    // What the replaced process knew, in place before the first answer.
    if let Some((state, _)) = inherited.state::<crate::takeover::State>()? {
        let deployment = &shared.prepared().deployment;
        shared.update_health(|health| state.apply(health, deployment));
    }
    // Every socket is had and the offer bound before the first query is read, so that a
    // replacement that fails leaves the old process as it was (nothing read and dropped).
    let mut offered = Offered::default();
    let mut dns_sockets = Vec::new();
    for addr in &dns.listen {
        let listen_error = |cause| RunError::Listen { addr: *addr, cause };
        let listener = inherited.tcp("dns tcp", *addr).map_err(listen_error)?;
        offered
            .tcp("dns tcp", *addr, &listener)
            .map_err(listen_error)?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(listen_error)?;
        let name = crate::takeover::udp_name(*addr);
        let received: Vec<UdpSocket> = inherited
            .take_all(&name)
            .into_iter()
            .map(UdpSocket::from)
            .collect();
        // The old process's workers' sockets, or as many bound afresh.
        let sockets = if received.is_empty() {
            (0..udp_threads.max(1))
                .map(|_| crate::udp::bind(*addr))
                .collect::<Result<_, _>>()
                .map_err(listen_error)?
        } else {
            received
        };
        for socket in &sockets {
            offered.add(name.clone(), socket).map_err(listen_error)?;
        }
        dns_sockets.push((*addr, listener, sockets));
    }
    let mut steering_sockets = Vec::new();
    for steering in dns.content_steering.iter() {
        for addr in &steering.listen {
            let listen_error = |cause| RunError::Listen { addr: *addr, cause };
            let listener = inherited.tcp("steering", *addr).map_err(listen_error)?;
            offered
                .tcp("steering", *addr, &listener)
                .map_err(listen_error)?;
            let listener = tokio::net::TcpListener::from_std(listener).map_err(listen_error)?;
            steering_sockets.push((*addr, listener, &steering.trusted_proxies));
        }
    }
    let token = dns.admin_token.as_ref().map(|t| t.resolve()).transpose()?;
    let admin_error = |cause| daemon::admin::AdminError {
        addr: dns.admin,
        cause,
    };
    let admin = inherited.tcp("admin", dns.admin).map_err(admin_error)?;
    offered
        .tcp("admin", dns.admin, &admin)
        .map_err(admin_error)?;
    let admin = tokio::net::TcpListener::from_std(admin).map_err(admin_error)?;
    let offer = dns
        .handover
        .as_ref()
        .map(|path| Offer::bind(path, take_over, "geodns"))
        .transpose()
        .map_err(RunError::Offer)?;
    let replacer = match offer {
        Some(offer) => {
            let carried = Arc::new(crate::takeover::Carried(shared.clone()));
            Some(offer.start(offered, carried).map_err(RunError::Offer)?)
        }
        None => None,
    };

    let liveness = Liveness::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    let mut tcp = Vec::new();
    for (addr, listener, sockets) in dns_sockets {
        let listen_error = |cause| RunError::Listen { addr, cause };
        let beat = liveness.flag(format!("dns tcp listener on {addr}"));
        tcp.push(tokio::spawn(crate::tcp::serve(
            shared.clone(),
            listener,
            beat,
        )));
        workers.extend(
            crate::udp::spawn_on(shared.clone(), addr, sockets, stop.clone(), &liveness)
                .map_err(listen_error)?,
        );
        info!(%addr, udp_threads, "answering DNS over UDP and TCP");
    }
    let mut steering_listeners = Vec::new();
    let steering_finish = daemon::public::Finish::default();
    for (addr, listener, trusted_proxies) in steering_sockets {
        let listening = crate::content_steering::serve(
            shared.clone(),
            listener,
            trusted_proxies,
            &liveness,
            steering_finish.clone(),
        );
        steering_listeners.push(listening.map_err(|cause| RunError::Listen { addr, cause })?);
    }
    let mut followers = crate::feeds::spawn(shared.clone(), &shared.prepared().deployment);
    daemon::systemd::serving(&liveness);
    let admin = daemon::admin::serve_on(
        admin,
        admin_router(shared.clone(), liveness, token, replacer.clone()),
    );
    if let Some(r) = &replacer {
        r.on_served(admin.stop_accepting());
        let finish = steering_finish.clone();
        r.on_served(move || finish.now());
        let accepting: Vec<tokio::task::AbortHandle> = tcp
            .iter()
            .map(tokio::task::JoinHandle::abort_handle)
            .collect();
        r.on_served(move || accepting.iter().for_each(tokio::task::AbortHandle::abort));
    }
    inherited.serving();
    let replaced = daemon::handover::replaced(replacer.as_ref());
    tokio::pin!(replaced);
    if let Some(path) = dns.geoip_db.clone() {
        tokio::spawn(watch_geo(shared.clone(), path));
    }
    let mut signals = daemon::signals::Signals::new().map_err(|cause| RunError::Listen {
        addr: dns.admin,
        cause,
    })?;
    let mut handed_over = false;
    loop {
        let request = tokio::select! {
            request = signals.next() => request,
            _ = &mut replaced => {
                handed_over = true;
                break;
            }
        };
        if request != daemon::signals::Request::Reload {
            break;
        }
        // Parsing and compiling happen off the serving threads and the runtime's; the running
        // configuration answers until the new one is swapped in.
        let (reloading, path) = (shared.clone(), config_path.clone());
        let reloaded = tokio::task::spawn_blocking(move || reload(&reloading, &path))
            .await
            .unwrap_or(false);
        if reloaded {
            // Sites, feed URLs, token or grace may have changed: follow the new set.
            followers = crate::feeds::spawn(shared.clone(), &shared.prepared().deployment);
        }
    }
    drop(followers);
    info!("shutting down");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in &tcp {
        task.abort();
    }
    if handed_over {
        // An operator's change from now on must reach the replacement, never this process:
        // the admin endpoint stops accepting at once, answering only what is in flight (the
        // `replace` that started the replacement). Queries already read are answered by the
        // workers before they stop; TCP connections and steering requests open here get a
        // moment to finish (new ones go to the replacement).
        steering_finish.now();
        let admin = admin.finish(TCP_DRAIN);
        let steering = async {
            for task in steering_listeners {
                let _ = tokio::time::timeout(TCP_DRAIN, task).await;
            }
        };
        let _ = tokio::join!(admin, steering, tokio::time::sleep(TCP_DRAIN));
    } else {
        for task in steering_listeners {
            task.abort();
        }
    }
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

/// Applies a changed deployment file; false when it is invalid and the running one is kept.
fn reload(shared: &Shared, path: &Path) -> bool {
    info!(path = %path.display(), "SIGHUP: reloading the deployment file");
    let prepared = match Deployment::load(path)
        .map_err(|e| e.to_string())
        .and_then(|d| Prepared::new(d).map_err(|e| e.to_string()))
    {
        Ok(prepared) => prepared,
        Err(e) => {
            warn!("SIGHUP: keeping the running configuration, the new one is invalid:\n{e}");
            return false;
        }
    };
    match shared.set_prepared(prepared) {
        Ok(()) => {
            info!("SIGHUP: deployment file reloaded");
            true
        }
        Err(e) => {
            warn!("SIGHUP: keeping the running configuration, its atlas cannot be compiled: {e}");
            false
        }
    }
}

/// Reloads the location database when its file changes (checked every two seconds), opening
/// and compiling it off the runtime's threads.
async fn watch_geo(shared: Arc<Shared>, path: PathBuf) {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last: Option<SystemTime> = mtime(&path);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = mtime(&path);
        if now == last {
            continue;
        }
        last = now;
        info!(path = %path.display(), "location database changed: compiling it");
        let (shared, path) = (shared.clone(), path.clone());
        let _ = tokio::task::spawn_blocking(move || {
            let installed = GeoDb::open(&path)
                .map_err(|e| e.to_string())
                .and_then(|db| shared.set_geo(db).map_err(|e| e.to_string()));
            match installed {
                Ok(()) => info!(path = %path.display(), "location database reloaded"),
                Err(e) => {
                    warn!("location database changed but cannot be used, keeping the old one: {e}")
                }
            }
        })
        .await;
    }
}

/// The admin endpoint: `/metrics`, `/healthz`, `/explain` and reading `/admin-state` are open;
/// changing the admin state needs `token` when one is set.
pub fn admin_router(
    shared: Arc<Shared>,
    liveness: Liveness,
    token: Option<String>,
    replacer: Option<Arc<daemon::handover::Replacer>>,
) -> axum::Router {
    let scrape = shared.clone();
    let shared_console = shared.clone();
    let open = axum::Router::new()
        .route("/explain", get(explain_handler))
        .route("/admin-state", get(health_handler))
        .with_state(shared.clone());
    let mut protected = axum::Router::new()
        .route("/admin-state", post(admin_state_handler))
        .route("/canary", post(canary_handler))
        .with_state(shared);
    if let Some(replacer) = replacer {
        protected = protected.merge(daemon::handover::route(replacer));
    }
    daemon::admin::router(
        "geodns",
        Arc::new(move || {
            daemon::admin::encode(&scrape.metrics.registry)
                + &crate::metrics::health_text(&scrape.health())
        }),
        liveness,
    )
    .merge(open)
    .merge(crate::console::router(shared_console))
    .merge(daemon::admin::protected(protected, token))
}

#[derive(Deserialize)]
struct ExplainQuery {
    name: String,
    client: IpAddr,
    #[serde(default)]
    qtype: Option<String>,
}

/// Why a client gets the answer it gets.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub name: String,
    pub client: IpAddr,
    pub rcode: String,
    pub location: Option<LocationView>,
    pub steering: Option<serde_json::Value>,
    pub answer: Vec<String>,
    pub scope: u8,
    /// What the content steering server answers the same client, for a steered service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_steering: Option<crate::content_steering::Steered>,
    /// The rate limiter's bucket for `client` as a UDP source (absent when limiting is off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<crate::rrl::PrefixState>,
}

/// Explains the answer to `name` for `client` with the state `shared` holds now.
pub fn explain(
    shared: &Shared,
    name: &str,
    client: IpAddr,
    qtype: RecordType,
) -> Result<Explanation, String> {
    let mut qname = Name::from_ascii(name).map_err(|e| format!("invalid name {name:?}: {e}"))?;
    qname.set_fqdn(true);
    let qname = qname.to_lowercase();
    let outcome = answer(shared, &qname, qtype, client);
    let location = shared
        .geo()
        .and_then(|g| g.locate(client))
        .as_ref()
        .map(LocationView::from);
    Ok(Explanation {
        name: qname.to_string(),
        client,
        rcode: crate::metrics::rcode_label(outcome.rcode).to_owned(),
        location,
        steering: outcome
            .steering
            .as_ref()
            .and_then(|s: &Steered| serde_json::to_value(s).ok()),
        answer: outcome.answers.iter().map(|r| r.data.to_string()).collect(),
        scope: outcome.scope,
        content_steering: outcome.steering.as_ref().and_then(|s| {
            let service = shared
                .prepared()
                .deployment
                .services
                .iter()
                .position(|svc| svc.name == s.service)?;
            crate::content_steering::answer(
                shared,
                service,
                client,
                &Default::default(),
                std::time::Instant::now(),
            )
        }),
        rate_limit: shared
            .limiter()
            .map(|l| l.state(client, crate::rrl::Tick::now())),
    })
}

async fn explain_handler(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<ExplainQuery>,
) -> Response {
    let qtype = q
        .qtype
        .as_deref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(RecordType::A);
    match explain(&shared, &q.name, q.client, qtype) {
        Ok(e) => Json(e).into_response(),
        Err(e) => (axum::http::StatusCode::BAD_REQUEST, e).into_response(),
    }
}

#[derive(Deserialize)]
struct AdminQuery {
    site: String,
    #[serde(default)]
    node: Option<String>,
    /// `up`, `down` or `clear`.
    state: String,
}

async fn admin_state_handler(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<AdminQuery>,
) -> Response {
    let state = match q.state.as_str() {
        "up" => Some(AdminState::Up),
        "down" => Some(AdminState::Down),
        "clear" => None,
        other => {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                format!("state {other:?}: expected up, down or clear\n"),
            )
                .into_response();
        }
    };
    let set = shared.update_health(|health| {
        health
            .set_admin(&q.site, q.node.as_deref(), state)
            .then(|| crate::admin_state::current(health))
    });
    if let Some(saved) = set {
        info!(site = %q.site, node = q.node.as_deref().unwrap_or("-"), state = %q.state, "admin state set by an operator");
        let what = q
            .node
            .as_deref()
            .map_or_else(|| "the site".to_owned(), |n| format!("node {n}"));
        shared.console.note(
            &q.site,
            crate::console::board::Level::Warn,
            format!("an operator set {what} {} in geodns", q.state),
        );
        persisted(&shared, &saved, "ok\n".into())
    } else {
        (
            axum::http::StatusCode::NOT_FOUND,
            format!("no site {:?} (or node {:?} there)\n", q.site, q.node),
        )
            .into_response()
    }
}

#[derive(Deserialize)]
struct CanaryQuery {
    service: String,
    /// `withdraw` or `restore`.
    action: String,
}

/// Withdraws a service's canary from every answer, or puts it back.
async fn canary_handler(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<CanaryQuery>,
) -> Response {
    let withdraw = match q.action.as_str() {
        "withdraw" => true,
        "restore" => false,
        other => {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                format!("action {other:?}: expected withdraw or restore\n"),
            )
                .into_response();
        }
    };
    let prepared = shared.prepared();
    let canary = prepared
        .deployment
        .services
        .iter()
        .find(|s| s.name == q.service)
        .map(|s| s.canary.as_ref());
    let canary = match canary {
        Some(Some(canary)) => canary,
        Some(None) => {
            return (
                axum::http::StatusCode::NOT_FOUND,
                format!(
                    "service {:?} has no canary: expected [services.canary] in the deployment file\n",
                    q.service
                ),
            )
                .into_response();
        }
        None => {
            return (
                axum::http::StatusCode::NOT_FOUND,
                format!("no service {:?}\n", q.service),
            )
                .into_response();
        }
    };
    let withdrawal = crate::canary::Withdrawal {
        service: q.service.clone(),
        version: canary.version.clone(),
    };
    let saved = shared.update_health(|health| {
        if withdraw {
            health.withdrawn_canaries.insert(withdrawal.clone());
        } else {
            health.withdrawn_canaries.remove(&withdrawal);
        }
        crate::admin_state::current(health)
    });
    let done = if withdraw { "withdrawn" } else { "restored" };
    info!(service = %q.service, version = %canary.version, "canary {done} by an operator");
    for site in &prepared.deployment.sites {
        shared.console.note(
            &site.name,
            crate::console::board::Level::Warn,
            format!(
                "an operator {done} the canary {} of {} in geodns",
                canary.version, q.service
            ),
        );
    }
    let answer = format!(
        "ok: canary {} of {} {done}{}\n",
        canary.version,
        q.service,
        if withdraw {
            ": every viewer is answered with the other nodes"
        } else {
            ""
        }
    );
    persisted(&shared, &saved, answer)
}

/// Saves what operators set to `dns.admin_state`, if configured; `answer` when that worked.
fn persisted(shared: &Shared, saved: &crate::admin_state::Saved, answer: String) -> Response {
    let path = shared
        .prepared()
        .deployment
        .dns
        .as_ref()
        .and_then(|d| d.admin_state.clone());
    if let Some(path) = path
        && let Err(e) = crate::admin_state::save(&path, saved)
    {
        warn!("{e}");
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("applied, but not saved (lost at restart): {e}\n"),
        )
            .into_response();
    }
    answer.into_response()
}

async fn health_handler(State(shared): State<Arc<Shared>>) -> Response {
    Json(&*shared.health()).into_response()
}

/// Answers for `explain` and tests without a running server.
pub fn offline(deployment: Deployment) -> Result<Shared, RunError> {
    let geo = open_geo(&deployment)?;
    Ok(Shared::new(Prepared::new(deployment)?, geo)?)
}
