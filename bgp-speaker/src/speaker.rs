//! The speaker: owns the originated-route table and its lease timer, starts one task per
//! peer, routes incoming connections to them, and answers control requests.
//!
//! ```text
//!   control API ──Request──▶ speaker task (Rib, leases) ──watch<Snapshot>──▶ peer tasks
//!   listener ──────────────────────────────────── TcpStream by address ──▶ peer tasks
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use config::Deployment;
use config::site::{MaxPrefixAction, Peer, Site};
use daemon::{Beat, Liveness};
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::packet::open::{Capabilities, GracefulRestart, Open};
use crate::rib::{Originated, Rib, Snapshot};
use crate::session::peer::{Export, Import, PeerConfig};
use crate::session::status::PeerStatus;
use crate::session::task::{self, PeerCommand, PeerHandle, PeerSetup, RoutePage, RoutesOf};
use crate::session::transport::{self, TransportOptions};
use speaker_control::{Change, Op, Reply, RouteEntry};

/// Why the speaker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("site {0:?} is not in the deployment file (known sites: {1})")]
    UnknownSite(String, String),
    #[error("peer {peer}: cannot read its TCP-MD5 key: {cause}")]
    Md5Key {
        peer: String,
        cause: config::types::SecretError,
    },
    #[error("cannot listen for BGP on {addr}: {cause}")]
    Listen {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error("cannot set the TCP-MD5 key of peer {peer} on the listener: {cause}")]
    ListenMd5 { peer: String, cause: std::io::Error },
}

/// A request for the table task, with where to send the answer.
#[derive(Debug)]
pub struct Request {
    pub op: Op,
    pub reply: oneshot::Sender<Reply>,
}

pub use crate::rib::SavedRib;
/// Binds the BGP listener (`speaker.listen`), as a std listener a replacement can be handed.
pub use crate::session::transport::listen_std as bgp_listener;

/// What the table task is asked: a control operation, or the table for a replacement.
#[derive(Debug)]
enum TableRequest {
    Op(Request),
    Save(oneshot::Sender<Carried>),
}

/// The table as a replacement speaker starts from.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Carried {
    pub rib: SavedRib,
    /// The table was complete (End-of-RIB may go out at once).
    pub complete: bool,
}

/// How a speaker starts when it replaces another (see `bgp-speaker replace`).
#[derive(Default)]
pub struct Replacing {
    /// The replaced speaker's table.
    pub carried: Option<Carried>,
    /// Its BGP listener.
    pub listener: Option<std::net::TcpListener>,
    /// Peers wait for [`SpeakerHandle::start_peers`]: the replaced speaker's sessions must
    /// be gone first, or the peers would see two speakers at once.
    pub hold_peers: bool,
}

/// How long a caller waits for the table task or a peer task before answering that it is not
/// responding: neither ever waits on a peer, so this is only reached by a bug.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(2);

/// The running peers, changed in place by a reload.
pub type PeerList = Arc<std::sync::RwLock<Vec<PeerHandle>>>;

/// One version of our table, read a page at a time ([`SpeakerHandle::table`]).
pub struct TablePages {
    snapshot: Arc<Snapshot>,
    after: Option<IpNet>,
}

impl TablePages {
    /// The next `limit` routes; empty at the end.
    pub fn next_page(&mut self, limit: usize) -> Vec<RouteEntry> {
        use std::ops::Bound::{Excluded, Unbounded};
        let now = std::time::Instant::now();
        let page: Vec<RouteEntry> = self
            .snapshot
            .routes
            .range((self.after.map_or(Unbounded, Excluded), Unbounded))
            .take(limit)
            .map(|(prefix, a)| entry(*prefix, a, now))
            .collect();
        if let Some(last) = page.last() {
            self.after = Some(last.prefix);
        }
        page
    }
}

/// What spawning a peer needs, kept for reloads.
struct Spawner {
    liveness: Liveness,
    site: Site,
    /// BFD sessions, started with the first peer that asks for one.
    bfd: Option<bfd::Bfd>,
    rib: watch::Receiver<Arc<Snapshot>>,
    gate: watch::Receiver<bool>,
    listener: Option<Arc<TcpListener>>,
}

/// A running speaker: send it requests, read its peers' status.
#[derive(Clone)]
pub struct SpeakerHandle {
    requests: mpsc::Sender<TableRequest>,
    /// The parts that must be serving (the table, listeners), for `/healthz`.
    liveness: Liveness,
    peers: PeerList,
    /// The current originated-route table.
    pub rib: watch::Receiver<Arc<Snapshot>>,
    spawner: Arc<tokio::sync::Mutex<Spawner>>,
}

/// What a reload changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconfigured {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
}

fn read(peers: &PeerList) -> Vec<PeerHandle> {
    // A poisoned lock only means a panic elsewhere mid-update; the list itself is whole.
    peers.read().unwrap_or_else(|e| e.into_inner()).clone()
}

impl SpeakerHandle {
    /// What `/healthz` checks.
    pub fn liveness(&self) -> Liveness {
        self.liveness.clone()
    }

    /// Answers a control request. Table operations go to the table task; questions about
    /// peers and peer commands are answered here, from the peers' shared status and their
    /// tasks, so a peer never holds the table (and the table never waits on a peer). Route
    /// streams are paged with [`SpeakerHandle::routes_page`].
    pub async fn ask(&self, op: Op) -> Reply {
        match op {
            Op::Neighbors => Reply::Neighbors(
                self.statuses()
                    .iter()
                    .filter_map(|s| serde_json::to_value(s).ok())
                    .collect(),
            ),
            Op::PeerDown { peer, reason } => self.command(&peer, PeerCommand::Stop(reason)),
            Op::PeerUp { peer } => self.command(&peer, PeerCommand::Start),
            Op::Routes | Op::Advertised { .. } | Op::Received { .. } => {
                Reply::Error("routes come as a stream: page them".into())
            }
            op => self.ask_table(op).await,
        }
    }

    async fn ask_table(&self, op: Op) -> Reply {
        let (reply, rx) = oneshot::channel();
        let asked = async {
            self.requests
                .send(TableRequest::Op(Request { op, reply }))
                .await
                .ok()?;
            rx.await.ok()
        };
        match tokio::time::timeout(ANSWER_DEADLINE, asked).await {
            Ok(Some(reply)) => reply,
            Ok(None) => Reply::Error("speaker is shutting down".into()),
            Err(_) => Reply::Error(format!(
                "the route table did not answer within {ANSWER_DEADLINE:?}"
            )),
        }
    }

    /// The table as a replacement starts from it.
    pub async fn save(&self) -> Option<Carried> {
        let (reply, rx) = oneshot::channel();
        let asked = async {
            self.requests.send(TableRequest::Save(reply)).await.ok()?;
            rx.await.ok()
        };
        tokio::time::timeout(ANSWER_DEADLINE, asked).await.ok()?
    }

    /// Starts the sessions held back while the replaced speaker's were still up.
    pub async fn start_peers(&self) -> Result<(), StartError> {
        let mut spawner = self.spawner.lock().await;
        let site = spawner.site.clone();
        let started = site
            .peers
            .iter()
            .map(|peer| spawner.spawn(peer))
            .collect::<Result<Vec<_>, _>>()?;
        self.peers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(started);
        Ok(())
    }

    /// Ends every session without a NOTIFICATION, as a process that dies: peers that
    /// negotiated graceful restart keep our routes until the replacement has announced them
    /// again (RFC 4724), where a Cease would have them dropped at once.
    pub fn vanish_all(&self) {
        for peer in self.peers() {
            let _ = peer.commands.try_send(PeerCommand::Vanish);
        }
    }

    /// Queues a command for a peer without waiting (its queue full means it is not
    /// responding).
    fn command(&self, name: &str, command: PeerCommand) -> Reply {
        let Some(peer) = self.peers().into_iter().find(|p| p.name == name) else {
            return Reply::Error(format!("no peer named {name:?}"));
        };
        match peer.commands.try_send(command) {
            Ok(()) => Reply::Changed {
                change: Change::Updated,
                routes: self.rib.borrow().routes.len(),
            },
            Err(_) => Reply::Error(format!("peer {name:?} is not responding")),
        }
    }

    /// Up to `limit` of the routes sent to or received from `peer` after `after`, within
    /// [`ANSWER_DEADLINE`].
    pub async fn routes_page(
        &self,
        peer: &str,
        which: RoutesOf,
        after: Option<IpNet>,
        limit: usize,
    ) -> RoutePage {
        let handle = self
            .peers()
            .into_iter()
            .find(|p| p.name == peer)
            .ok_or_else(|| format!("no peer named {peer:?}"))?;
        let (reply, rx) = oneshot::channel();
        handle
            .commands
            .try_send(PeerCommand::Routes {
                which,
                after,
                limit,
                reply,
            })
            .map_err(|_| format!("peer {peer:?} is not responding"))?;
        match tokio::time::timeout(ANSWER_DEADLINE, rx).await {
            Ok(Ok(page)) => page,
            Ok(Err(_)) => Err(format!("peer {peer:?} is gone")),
            Err(_) => Err(format!(
                "peer {peer:?} is not responding (no answer within {ANSWER_DEADLINE:?})"
            )),
        }
    }

    /// Our table as it is now, to be read a page at a time (taking it costs nothing and
    /// never involves the table task).
    pub fn table(&self) -> TablePages {
        TablePages {
            snapshot: self.rib.borrow().clone(),
            after: None,
        }
    }

    /// Every prefix `peer` sent us (import enabled), paged.
    pub async fn received_prefixes(&self, peer: &str) -> Result<Vec<IpNet>, String> {
        let mut prefixes = Vec::new();
        loop {
            let page = self
                .routes_page(peer, RoutesOf::Received, prefixes.last().copied(), 1000)
                .await?;
            if page.is_empty() {
                return Ok(prefixes);
            }
            prefixes.extend(page.into_iter().map(|(p, _)| p));
        }
    }

    /// Closes every session with a Cease carrying `reason`, without waiting on any peer.
    pub fn stop_all(&self, reason: &str) {
        for peer in self.peers() {
            let _ = peer.commands.try_send(PeerCommand::Stop(reason.to_owned()));
        }
    }

    /// The peers right now.
    pub(crate) fn peers(&self) -> Vec<PeerHandle> {
        read(&self.peers)
    }

    /// The names of the peers, in configuration order.
    pub fn peer_names(&self) -> Vec<String> {
        self.peers().into_iter().map(|p| p.name).collect()
    }

    pub fn statuses(&self) -> Vec<PeerStatus> {
        self.peers()
            .iter()
            .map(|p| {
                p.status
                    .read()
                    .map(|s| s.clone())
                    .unwrap_or_else(|e| e.into_inner().clone())
            })
            .collect()
    }

    /// Applies a new deployment file to the running speaker (SIGHUP): peers that appeared are
    /// started, peers that disappeared are closed with a Cease (Peer De-configured), peers
    /// whose settings changed are restarted; the others and the route table are untouched.
    /// A change of the site's own identity (ASN, router id) restarts every peer.
    pub async fn reconfigure(
        &self,
        deployment: &Deployment,
        site: &str,
    ) -> Result<Reconfigured, StartError> {
        let new_site = deployment
            .site(site)
            .ok_or_else(|| StartError::UnknownSite(site.to_owned(), String::new()))?
            .clone();
        let mut spawner = self.spawner.lock().await;
        let identity_changed = (
            spawner.site.asn,
            spawner.site.router_id,
            spawner.site.speaker.restart_time,
        ) != (
            new_site.asn,
            new_site.router_id,
            new_site.speaker.restart_time,
        );
        let old: HashMap<String, Peer> = spawner
            .site
            .peers
            .iter()
            .map(|p| (p.name.clone(), p.clone()))
            .collect();
        let mut summary = Reconfigured::default();
        let mut stop = Vec::new();
        let mut start = Vec::new();
        for peer in &new_site.peers {
            match old.get(&peer.name) {
                None => {
                    summary.added.push(peer.name.clone());
                    start.push(peer.clone());
                }
                Some(before) if before != peer || identity_changed => {
                    summary.restarted.push(peer.name.clone());
                    stop.push(peer.name.clone());
                    start.push(peer.clone());
                }
                Some(_) => {}
            }
        }
        for name in old
            .keys()
            .filter(|n| !new_site.peers.iter().any(|p| &p.name == *n))
        {
            summary.removed.push(name.clone());
            stop.push(name.clone());
        }
        spawner.site = new_site;
        for name in &stop {
            if let (Some(bfd), Some(peer)) = (&spawner.bfd, old.get(name))
                && peer.bfd.is_some()
            {
                bfd.remove(peer.address);
            }
        }
        let mut handles = Vec::new();
        for peer in &start {
            handles.push(spawner.spawn(peer)?);
        }
        let mut peers = self.peers.write().unwrap_or_else(|e| e.into_inner());
        peers.retain(|p| {
            if stop.contains(&p.name) {
                // Dropping the handle closes the command channel: the task sends a Cease and ends.
                let _ = p
                    .commands
                    .try_send(PeerCommand::Stop("peer de-configured".into()));
                false
            } else {
                true
            }
        });
        peers.extend(handles);
        Ok(summary)
    }
}

impl Spawner {
    /// Starts the task of one peer (and installs its TCP-MD5 key on the listener, and its BFD
    /// session).
    fn spawn(&mut self, peer: &Peer) -> Result<PeerHandle, StartError> {
        let bfd = peer.bfd.and_then(|settings| {
            let local = peer.local_address?;
            let driver = self.bfd.get_or_insert_with(bfd::Bfd::start);
            Some(driver.add(bfd::Peer {
                remote: peer.address,
                local,
                config: bfd::Config {
                    desired_min_tx: settings.interval.get(),
                    required_min_rx: settings.interval.get(),
                    detect_mult: settings.multiplier,
                    passive: settings.passive,
                },
            }))
        });
        let site = &self.site;
        let md5_key = match &peer.md5_key {
            Some(secret) => Some(
                secret
                    .resolve()
                    .map_err(|cause| StartError::Md5Key {
                        peer: peer.name.clone(),
                        cause,
                    })?
                    .into_bytes(),
            ),
            None => None,
        };
        if let (Some(listener), Some(key)) = (&self.listener, &md5_key) {
            transport::set_md5_key(listener.as_ref(), peer.address, key).map_err(|cause| {
                StartError::ListenMd5 {
                    peer: peer.name.clone(),
                    cause,
                }
            })?;
        }
        let transport = TransportOptions {
            local_addr: peer.local_address,
            local_port: peer.local_port,
            ttl: peer.multihop.or((peer.remote_asn != site.asn).then_some(1)),
            ttl_security: peer.ttl_security,
            md5_key,
        };
        // Restart bit (RFC 4724 section 3): set when we come back within the restart time;
        // a peer that never saw us ignores it.
        let mut open = local_open(site, peer.hold_time, peer.graceful_restart);
        if !peer.graceful_restart {
            open.caps.graceful_restart = None;
        }
        let (handle, _join) = task::spawn(PeerSetup {
            peer: peer_config(peer),
            local_asn: site.asn,
            local_open: open,
            transport,
            rib: self.rib.clone(),
            startup_gate: self.gate.clone(),
            bfd,
            beat: self.liveness.heartbeat(
                format!("session task of peer {}", peer.name),
                task::LIVENESS_BOUND,
            ),
        });
        Ok(handle)
    }
}

/// The session layer's view of a `[[sites.peers]]` entry: the one place where the deployment
/// file's peer becomes a protocol-level peer configuration.
pub(crate) fn peer_config(peer: &Peer) -> PeerConfig {
    PeerConfig {
        name: peer.name.clone(),
        address: peer.address,
        port: peer.port,
        remote_asn: peer.remote_asn,
        hold_time: peer.hold_time,
        keepalive: peer.keepalive,
        passive: peer.passive,
        connect_retry: peer.connect_retry.get(),
        next_hop: peer.next_hop,
        next_hop_v6: peer.next_hop_v6,
        export: Export {
            services: peer.export.services.clone(),
            prepend: peer.export.prepend,
            med: peer.export.med,
            local_pref: peer.export.local_pref,
            communities: peer.export.communities.clone(),
            large_communities: peer.export.large_communities.clone(),
        },
        import: Import {
            enabled: peer.import.enabled,
            max_prefixes: peer.import.max_prefixes,
            restart_on_max: peer.import.on_max_prefixes == MaxPrefixAction::Restart,
            restart_after: peer.import.restart_after.get(),
        },
    }
}

/// Our OPEN for a site.
pub fn local_open(site: &Site, hold_time: u16, restarting: bool) -> Open {
    let families = vec![(1, 1, true), (2, 1, true)];
    Open {
        asn: site.asn,
        hold_time,
        router_id: site.router_id,
        caps: Capabilities {
            four_octet_as: Some(site.asn),
            ipv4_unicast: true,
            ipv6_unicast: true,
            route_refresh: true,
            enhanced_route_refresh: false,
            graceful_restart: Some(GracefulRestart {
                restart_time: site.speaker.restart_time,
                restarting,
                families,
            }),
            other: Vec::new(),
        },
    }
}

/// Starts the speaker for `site`: peer tasks, the listener (when configured) and the table.
pub async fn start(
    deployment: &Deployment,
    site: &str,
) -> Result<(SpeakerHandle, tokio::task::JoinHandle<()>), StartError> {
    start_replacing(deployment, site, Replacing::default()).await
}

/// [`start`], going on from a replaced speaker's table and listener.
pub async fn start_replacing(
    deployment: &Deployment,
    site: &str,
    replacing: Replacing,
) -> Result<(SpeakerHandle, tokio::task::JoinHandle<()>), StartError> {
    let site = deployment.site(site).ok_or_else(|| {
        let known: Vec<&str> = deployment.sites.iter().map(|s| s.name.as_str()).collect();
        StartError::UnknownSite(site.to_owned(), known.join(", "))
    })?;
    let now = std::time::Instant::now();
    let complete = replacing.carried.as_ref().is_some_and(|c| c.complete);
    let rib = replacing
        .carried
        .map(|c| Rib::restore(c.rib, now))
        .unwrap_or_default();
    let (rib_tx, rib_rx) = watch::channel(Arc::new(rib.snapshot()));
    let gate_open = complete || site.speaker.startup_hold.get().is_zero();
    let (gate_tx, gate_rx) = watch::channel(gate_open);
    let listener = match (site.speaker.listen, replacing.listener) {
        (Some(addr), Some(received)) => Some(Arc::new(
            received
                .set_nonblocking(true)
                .and_then(|()| TcpListener::from_std(received))
                .map_err(|cause| StartError::Listen { addr, cause })?,
        )),
        (Some(addr), None) => Some(Arc::new(
            transport::listen(addr).map_err(|cause| StartError::Listen { addr, cause })?,
        )),
        (None, _) => None,
    };
    let liveness = Liveness::default();
    let mut spawner = Spawner {
        bfd: None,
        liveness: liveness.clone(),
        site: site.clone(),
        rib: rib_rx.clone(),
        gate: gate_rx,
        listener: listener.clone(),
    };
    let peers: PeerList = Arc::new(std::sync::RwLock::new(if replacing.hold_peers {
        Vec::new()
    } else {
        site.peers
            .iter()
            .map(|peer| spawner.spawn(peer))
            .collect::<Result<Vec<_>, _>>()?
    }));
    if let (Some(listener), Some(addr)) = (listener, site.speaker.listen) {
        let beat = liveness.flag(format!("BGP listener on {addr}"));
        tokio::spawn(accept_loop(listener, peers.clone(), beat));
        info!(%addr, "listening for BGP connections");
    }
    let (req_tx, req_rx) = mpsc::channel(256);
    let table = Table {
        beat: liveness.heartbeat("route table task", TABLE_BOUND),
        rib,
        rib_tx,
        peers: peers.clone(),
        drain_delay: site.speaker.drain_delay.get(),
        gate: gate_tx,
        gate_deadline: (!gate_open).then(|| Instant::now() + site.speaker.startup_hold.get()),
    };
    let join = tokio::spawn(table.run(req_rx));
    Ok((
        SpeakerHandle {
            requests: req_tx,
            liveness,
            peers,
            rib: rib_rx,
            spawner: Arc::new(tokio::sync::Mutex::new(spawner)),
        },
        join,
    ))
}

/// Hands each accepted connection to the peer with that address; refuses strangers.
async fn accept_loop(listener: Arc<TcpListener>, peers: PeerList, beat: Beat) {
    let _serving = beat.serving_while();
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let peer = read(&peers).into_iter().find(|p| p.address == from.ip());
        match peer {
            // Never wait on a peer task: a full queue means it has connections to handle.
            Some(peer) => {
                if peer.incoming.try_send(stream).is_err() {
                    warn!(%from, peer = %peer.name, "connection dropped: the peer's session task is busy");
                }
            }
            None => warn!(%from, "connection from an unknown address refused"),
        }
    }
}

/// How often the idle table task proves it is alive, and the most it may go without.
const TABLE_BEAT: Duration = Duration::from_millis(500);
const TABLE_BOUND: Duration = Duration::from_secs(3);

/// The table task.
struct Table {
    beat: Beat,
    rib: Rib,
    rib_tx: watch::Sender<Arc<Snapshot>>,
    peers: PeerList,
    drain_delay: Duration,
    /// Opened when the table is complete after start: on `synced` or at `gate_deadline`.
    gate: watch::Sender<bool>,
    gate_deadline: Option<Instant>,
}

impl Table {
    async fn run(mut self, mut requests: mpsc::Receiver<TableRequest>) {
        let mut alive = tokio::time::interval(TABLE_BEAT);
        loop {
            self.beat.beat();
            let deadline = self.rib.next_deadline().map(Instant::from_std);
            tokio::select! {
                _ = alive.tick() => {}
                request = requests.recv() => {
                    match request {
                        None => {
                            for peer in read(&self.peers) {
                                let _ = peer.commands.try_send(PeerCommand::Stop("speaker shutting down".into()));
                            }
                            return;
                        }
                        Some(TableRequest::Op(Request { op, reply })) => {
                            let answer = self.handle(op);
                            let _ = reply.send(answer);
                        }
                        Some(TableRequest::Save(reply)) => {
                            let _ = reply.send(Carried {
                                rib: self.rib.save(std::time::Instant::now()),
                                complete: *self.gate.borrow(),
                            });
                        }
                    }
                }
                () = async { tokio::time::sleep_until(self.gate_deadline.expect("guarded")).await }, if self.gate_deadline.is_some() => {
                    self.open_gate("startup hold elapsed");
                }
                () = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                    for (prefix, reason) in self.rib.expire(std::time::Instant::now()) {
                        info!(%prefix, "route withdrawn: {reason}");
                    }
                    self.publish();
                }
            }
        }
    }

    fn open_gate(&mut self, why: &str) {
        if self.gate_deadline.take().is_some() {
            info!("table complete ({why}): End-of-RIB may go out");
            self.gate.send_replace(true);
        }
    }

    fn publish(&self) {
        self.rib_tx.send_replace(Arc::new(self.rib.snapshot()));
    }

    /// A table operation; never waits on anything.
    fn handle(&mut self, op: Op) -> Reply {
        let now = std::time::Instant::now();
        match op {
            Op::Announce {
                prefixes,
                attrs,
                service,
                lease_ms,
            } => {
                if let Some(bad) = prefixes.iter().find(|p| p.trunc() != **p) {
                    return Reply::Error(format!(
                        "{bad} has host bits set: expected {}",
                        bad.trunc()
                    ));
                }
                let lease = lease_ms.map(Duration::from_millis);
                let mut change = Change::Renewed;
                for prefix in &prefixes {
                    let c = self
                        .rib
                        .announce(*prefix, attrs.clone(), service.clone(), lease, now);
                    if c != Change::Renewed {
                        info!(%prefix, ?c, "route announced");
                        change = c;
                    }
                }
                if change != Change::Renewed {
                    self.publish();
                }
                Reply::Changed {
                    change,
                    routes: self.rib.len(),
                }
            }
            Op::Withdraw { prefixes } => {
                let mut change = Change::Unknown;
                for prefix in &prefixes {
                    if self.rib.withdraw(prefix) == Change::Removed {
                        info!(%prefix, "route withdrawn on request");
                        change = Change::Removed;
                    }
                }
                if change == Change::Removed {
                    self.publish();
                }
                Reply::Changed {
                    change,
                    routes: self.rib.len(),
                }
            }
            Op::Drain {
                prefixes,
                delay_ms,
                by,
            } => {
                let delay = delay_ms.map_or(self.drain_delay, Duration::from_millis);
                let by = by.unwrap_or_else(|| "an operator".into());
                let routes = self.rib.drain(prefixes.as_deref(), delay, &by, now);
                info!(
                    routes,
                    %by,
                    delay_ms = delay.as_millis() as u64,
                    "drain ordered: GRACEFUL_SHUTDOWN, then withdrawn, until undrain"
                );
                self.publish();
                Reply::Drained { routes }
            }
            Op::Undrain { prefixes } => {
                let routes = self.rib.undrain(prefixes.as_deref(), now);
                info!(routes, "drain ended by an operator");
                self.publish();
                Reply::Undrained { routes }
            }
            Op::Synced => {
                self.open_gate("the control client re-announced everything");
                Reply::Changed {
                    change: Change::Renewed,
                    routes: self.rib.len(),
                }
            }
            // Answered by the speaker handle, never sent here.
            other => Reply::Error(format!("not a table operation: {other:?}")),
        }
    }
}

fn entry(prefix: IpNet, a: &Originated, now: std::time::Instant) -> RouteEntry {
    RouteEntry {
        prefix,
        attrs: a.effective_attrs(),
        service: a.service.clone(),
        lease_left_ms: a
            .expires
            .map(|t| t.saturating_duration_since(now).as_millis() as u64),
        draining: a.draining(),
        withdrawn_by_drain: a.withdrawn_by_drain(),
        drained_by: a.drain.as_ref().map(|d| d.by.clone()),
        drained_at: a.drain.as_ref().map(|d| {
            d.at.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |t| t.as_secs())
        }),
    }
}
