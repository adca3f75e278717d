//! One task per peer: owns the FSM, the reading half of the TCP connection and the
//! Adj-RIB-Out; a writer task per connection owns the writing half.
//!
//! ```text
//!   speaker handle ──PeerCommand──▶ ┌──────────── peer task ─────────────┐
//!   listener ─────TcpStream───────▶ │ Fsm ◀─events─ socket reader, timers │ ──bytes──▶ writer task ──▶ TCP
//!   table ──watch<Snapshot>───────▶ │ Adj-RIB-Out diff → UPDATEs          │ ◀─drained / failed─┘
//!                                   └──── writes PeerStatus (shared) ─────┘
//! ```
//!
//! The FSM decides; this task only performs its actions and turns I/O into events. It never
//! waits on the peer: writes are queued to the writer, a peer that takes no bytes for its hold
//! time is dropped, and commands (show, stop) are answered at once.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use super::fsm::{Action, DownReason, Event, Fsm, State};
use super::peer::PeerConfig;
use super::status::PeerStatus;
use super::transport::{self, TransportOptions};
use super::writer::Writer;
use crate::export::ExportContext;
use crate::packet::notification::cease;
use crate::packet::open::Open;
use crate::packet::update_tx::{self, TxContext};
use crate::packet::{MessageType, Notification, next_message};
use crate::receive::{ReceiveError, Receiver};
use crate::rib::{Originated, Snapshot};
use crate::route::{ShownRoute, WireAttrs};
use imbl::OrdMap;
use imbl::ordmap::DiffItem;

/// Which of a peer's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutesOf {
    /// The Adj-RIB-Out, as sent to the peer.
    Advertised,
    /// The Adj-RIB-In (import enabled), as received.
    Received,
}

/// A page of a peer's routes: each with its prefix, the cursor of the next page.
pub type RoutePage = Result<Vec<(IpNet, ShownRoute)>, String>;

/// Commands to a peer task (from the speaker handle, on behalf of the control API).
#[derive(Debug)]
pub enum PeerCommand {
    /// Administrative stop with a reason (sent as RFC 8203 shutdown communication).
    Stop(String),
    Start,
    /// The process is being replaced: end the session without a NOTIFICATION (the peer keeps
    /// the routes through graceful restart) and stop.
    Vanish,
    /// Up to `limit` routes after `after`, in prefix order: pages, so that a full table is
    /// never built whole.
    Routes {
        which: RoutesOf,
        after: Option<IpNet>,
        limit: usize,
        reply: tokio::sync::oneshot::Sender<RoutePage>,
    },
}

/// What the speaker keeps to talk to a peer task.
#[derive(Debug, Clone)]
pub struct PeerHandle {
    pub name: String,
    pub address: IpAddr,
    pub status: Arc<RwLock<PeerStatus>>,
    pub incoming: mpsc::Sender<TcpStream>,
    pub commands: mpsc::Sender<PeerCommand>,
}

/// Everything a peer task needs at start.
pub struct PeerSetup {
    pub peer: PeerConfig,
    pub local_asn: u32,
    pub local_open: Open,
    pub transport: TransportOptions,
    pub rib: watch::Receiver<Arc<Snapshot>>,
    /// Opens once the table is complete after a start (see `speaker.startup_hold`); End-of-RIB
    /// waits for it.
    pub startup_gate: watch::Receiver<bool>,
    /// Beaten while the task runs (`/healthz`), retired when it ends.
    pub beat: daemon::Beat,
    /// The peer's BFD session, when it has one: its going down tears the session down.
    pub bfd: Option<watch::Receiver<bfd::Status>>,
}

/// How often an idle peer task proves it is alive, and the most it may go without.
const BEAT: Duration = Duration::from_secs(1);
pub const LIVENESS_BOUND: Duration = Duration::from_secs(5);

struct Conn {
    reader: OwnedReadHalf,
    writer: Writer,
    local: SocketAddr,
    /// Whether we opened it (for collision resolution, RFC 4271 section 6.8).
    outgoing: bool,
    buf: Vec<u8>,
}

impl Conn {
    fn new(stream: TcpStream, outgoing: bool) -> std::io::Result<Self> {
        let local = stream.local_addr()?;
        let (reader, writer) = stream.into_split();
        Ok(Self {
            reader,
            writer: Writer::spawn(writer),
            local,
            outgoing,
            buf: Vec::with_capacity(65536),
        })
    }
}

/// Reads until at least one whole message is buffered; returns `false` on EOF or error.
async fn fill(conn: &mut Conn) -> bool {
    matches!(conn.reader.read_buf(&mut conn.buf).await, Ok(n) if n > 0)
}

/// Prefixes a route sync handles between two yields to the runtime.
const YIELD_EVERY: usize = 2048;

/// Starts the task; returns its handle.
pub fn spawn(setup: PeerSetup) -> (PeerHandle, JoinHandle<()>) {
    let (incoming_tx, incoming_rx) = mpsc::channel(4);
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let mut first = PeerStatus::new(&setup.peer);
    if setup.bfd.is_some() {
        first.bfd = Some(bfd::State::Down.name().to_owned());
    }
    let status = Arc::new(RwLock::new(first));
    let handle = PeerHandle {
        name: setup.peer.name.clone(),
        address: setup.peer.address,
        status: status.clone(),
        incoming: incoming_tx,
        commands: cmd_tx,
    };
    let fsm = Fsm::new(setup.peer.fsm(setup.local_open.clone()));
    let receiver = Receiver::new(&setup.peer);
    let task = PeerTask {
        setup,
        fsm,
        conn: None,
        pending: None,
        connecting: None,
        hold: None,
        keepalive: None,
        retry: None,
        adj_out: BTreeMap::new(),
        sync_pending: false,
        md5_warned: false,
        down_cause: None,
        status,
        receiver,
        eor_pending: false,
        exported_from: None,
        stale_until: None,
        bfd_up: false,
    };
    // The span goes with the task's future (entering it inside the task would leak it to
    // whatever else the thread runs).
    let span =
        tracing::info_span!("peer", name = %task.setup.peer.name, addr = %task.setup.peer.address);
    let join = tokio::spawn(tracing::Instrument::instrument(
        task.run(incoming_rx, cmd_rx),
        span,
    ));
    (handle, join)
}

struct PeerTask {
    setup: PeerSetup,
    fsm: Fsm,
    conn: Option<Conn>,
    /// A second connection from the peer while ours is opening: kept until its OPEN arrives.
    pending: Option<Conn>,
    connecting: Option<JoinHandle<std::io::Result<TcpStream>>>,
    hold: Option<Instant>,
    keepalive: Option<Instant>,
    retry: Option<Instant>,
    /// Ordered, so that `show routes advertised` pages through it.
    adj_out: BTreeMap<IpNet, WireAttrs>,
    /// Route changes held back while the writer is backlogged; sent once it drains.
    sync_pending: bool,
    /// The TCP-MD5 hint was logged for this outage (reset when the session comes up).
    md5_warned: bool,
    /// Why the session is being dropped, when this task decided it (shown as the last error).
    down_cause: Option<String>,
    status: Arc<RwLock<PeerStatus>>,
    receiver: Receiver,
    /// End-of-RIB not sent yet because the startup gate is closed.
    eor_pending: bool,
    /// When the peer's stale routes go if it has not sent End-of-RIB by then.
    stale_until: Option<Instant>,
    /// The table version `adj_out` was computed from; `None` forces a full comparison.
    exported_from: Option<OrdMap<IpNet, Arc<Originated>>>,
    /// The BFD session was Up when last heard of.
    bfd_up: bool,
}

impl PeerTask {
    async fn run(
        mut self,
        mut incoming: mpsc::Receiver<TcpStream>,
        mut commands: mpsc::Receiver<PeerCommand>,
    ) {
        self.feed(Event::Start).await;
        let mut alive = tokio::time::interval(BEAT);
        loop {
            self.setup.beat.beat();
            let stall = self
                .conn
                .as_ref()
                .and_then(|c| c.writer.stall_deadline(self.stall_bound()));
            let deadline = [
                self.hold,
                self.keepalive,
                self.retry,
                self.stale_until,
                stall,
            ]
            .into_iter()
            .flatten()
            .min();
            let established = self.fsm.state() == State::Established;
            let writer = self.conn.as_ref().map(|c| c.writer.waker());
            tokio::select! {
                _ = alive.tick() => {}
                cmd = commands.recv() => match cmd {
                    Some(PeerCommand::Stop(reason)) => self.feed(Event::Stop { reason }).await,
                    Some(PeerCommand::Start) => self.feed(Event::Start).await,
                    Some(PeerCommand::Vanish) => {
                        info!("session ended without a NOTIFICATION: this speaker is being replaced");
                        self.setup.beat.retire();
                        return;
                    }
                    Some(PeerCommand::Routes { which, after, limit, reply }) => {
                        let _ = reply.send(self.routes_page(which, after, limit));
                    }
                    None => {
                        self.feed(Event::Stop { reason: "speaker shutting down".into() }).await;
                        self.setup.beat.retire();
                        return;
                    }
                },
                result = async { self.connecting.as_mut().expect("guarded").await }, if self.connecting.is_some() => {
                    self.connecting = None;
                    match result {
                        Ok(Ok(stream)) => match Conn::new(stream, true) {
                            Ok(conn) => {
                                self.conn = Some(conn);
                                self.feed(Event::TcpConnected).await;
                            }
                            Err(_) => self.feed(Event::TcpFailed).await,
                        },
                        Ok(Err(e)) => {
                            let error = self.explain_connect_error(&e);
                            self.connect_failed(error);
                            self.feed(Event::TcpFailed).await;
                        }
                        Err(_) => self.feed(Event::TcpFailed).await,
                    }
                }
                Some(stream) = incoming.recv() => self.accept(stream).await,
                ok = async { fill(self.conn.as_mut().expect("guarded")).await }, if self.conn.is_some() => {
                    if ok {
                        self.drain_messages().await;
                    } else {
                        self.feed(Event::TcpFailed).await;
                    }
                }
                () = async { writer.as_ref().expect("guarded").notified().await }, if writer.is_some() => {
                    self.writer_woke().await;
                }
                ok = async { fill(self.pending.as_mut().expect("guarded")).await }, if self.pending.is_some() => {
                    self.pending_progress(ok).await;
                }
                changed = self.setup.startup_gate.changed(), if self.eor_pending => {
                    if changed.is_err() || *self.setup.startup_gate.borrow() {
                        self.eor_pending = false;
                        self.sync_routes().await;
                        self.send_end_of_rib().await;
                    }
                }
                changed = self.setup.rib.changed(), if established => {
                    if changed.is_ok() {
                        self.sync_routes().await;
                    }
                }
                changed = async { self.setup.bfd.as_mut().expect("guarded").changed().await }, if self.setup.bfd.is_some() => {
                    match changed {
                        Ok(()) => self.bfd_changed().await,
                        Err(_) => self.setup.bfd = None,
                    }
                }
                () = async { sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                    self.fire_timers().await;
                }
            }
        }
    }

    fn status_mut(&self) -> std::sync::RwLockWriteGuard<'_, PeerStatus> {
        // A poisoned lock only means another thread panicked mid-update; the data is plain.
        self.status.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a failed connection attempt. With TCP-MD5 configured a key mismatch looks like
    /// any time-out, so the likely cause is logged at WARN, once per outage (not on every retry).
    fn connect_failed(&mut self, error: String) {
        if self.setup.transport.md5_key.is_some() && !self.md5_warned {
            warn!("{error}");
            self.md5_warned = true;
        } else {
            debug!("connect failed: {error}");
        }
        let mut status = self.status_mut();
        status.connect_failures += 1;
        status.last_error = Some(error);
    }

    /// A connect error with what the operator should check.
    fn explain_connect_error(&self, e: &std::io::Error) -> String {
        let hint = match e.kind() {
            // A SYN with a wrong (or missing) TCP-MD5 signature is dropped silently by the
            // peer's kernel, so a key mismatch looks exactly like a time-out.
            std::io::ErrorKind::TimedOut if self.setup.transport.md5_key.is_some() => {
                "; TCP-MD5 is configured: check that the peer uses the same key"
            }
            std::io::ErrorKind::TimedOut => "; check the peer address, routing and filters",
            std::io::ErrorKind::ConnectionRefused => {
                "; the peer is not listening: is BGP configured there for our address?"
            }
            std::io::ErrorKind::AddrNotAvailable => {
                "; local_address is not configured on this host"
            }
            _ => "",
        };
        format!(
            "connect to {}:{}: {e}{hint}",
            self.setup.peer.address, self.setup.peer.port
        )
    }

    async fn fire_timers(&mut self) {
        let now = Instant::now();
        if self.hold.is_some_and(|t| t <= now) {
            self.hold = None;
            self.feed(Event::HoldTimerExpired).await;
        }
        if self.keepalive.is_some_and(|t| t <= now) {
            self.keepalive = None;
            self.feed(Event::KeepaliveTimerExpired).await;
        }
        if self.stale_until.is_some_and(|t| t <= now) {
            self.stale_until = None;
            self.receiver.restart_timer_expired();
            self.status_mut().prefixes_received = self.receiver.prefix_count();
        }
        if self.retry.is_some_and(|t| t <= now) {
            self.retry = None;
            self.feed(Event::ConnectRetryExpired).await;
        }
        let bound = self.stall_bound();
        let stalled = self
            .conn
            .as_ref()
            .filter(|c| c.writer.stalled_for() >= bound)
            .map(|c| c.writer.queued());
        if let Some(queued) = stalled {
            let error = format!(
                "the peer accepted no bytes for {}s with {queued} bytes waiting (it stopped reading): connection dropped",
                bound.as_secs()
            );
            warn!("{error}");
            self.down_cause = Some(error);
            self.feed(Event::TcpFailed).await;
        }
    }

    /// The BFD session changed: one that was Up and is not any more means the path to the
    /// peer is gone, so the BGP session goes at once rather than after the hold time. A BFD
    /// session taken down on purpose, by us or by the router (AdminDown), says nothing about
    /// the path and leaves BGP alone (RFC 5882 section 3.2).
    async fn bfd_changed(&mut self) {
        let Some(status) = self.setup.bfd.as_ref().map(|b| b.borrow().clone()) else {
            return;
        };
        let up = status.state == bfd::State::Up;
        let was_up = std::mem::replace(&mut self.bfd_up, up);
        self.status_mut().bfd = Some(match &status.problem {
            Some(problem) => format!("cannot run: {problem}"),
            None => status.state.name().to_owned(),
        });
        let on_purpose =
            status.state == bfd::State::AdminDown || status.remote_state == bfd::State::AdminDown;
        if was_up && !up && !on_purpose {
            let cause = format!("BFD session down ({})", status.diag.describe());
            warn!("{cause}: BGP session torn down");
            self.status_mut().bfd_downs += 1;
            self.down_cause = Some(cause);
            self.feed(Event::BfdDown).await;
        }
    }

    /// How long the peer may take no bytes before the session is dropped: its hold time (the
    /// negotiated one, else ours), as a peer that sends nothing for that long is dropped too.
    fn stall_bound(&self) -> Duration {
        let hold = self
            .fsm
            .negotiated()
            .map_or(self.setup.peer.hold_time, |n| n.hold_time);
        // Hold time 0 disables the hold timer, not this: a stuck writer still ends.
        Duration::from_secs(u64::from(if hold == 0 { 90 } else { hold }))
    }

    /// The writer drained its queue or failed.
    async fn writer_woke(&mut self) {
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        if conn.writer.failed() {
            self.feed(Event::TcpFailed).await;
        } else if self.sync_pending && !conn.writer.backlogged() {
            self.sync_routes().await;
        }
    }

    /// A page of the routes sent to or received from the peer.
    fn routes_page(&self, which: RoutesOf, after: Option<IpNet>, limit: usize) -> RoutePage {
        match which {
            RoutesOf::Advertised => {
                use std::ops::Bound::{Excluded, Unbounded};
                let from = after.map_or(Unbounded, Excluded);
                Ok(self
                    .adj_out
                    .range((from, Unbounded))
                    .take(limit)
                    .map(|(p, a)| (*p, a.shown(p)))
                    .collect())
            }
            RoutesOf::Received => self.receiver.shown_page(after, limit),
        }
    }

    /// Parses every complete message in the buffer and feeds it to the FSM.
    async fn drain_messages(&mut self) {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            let (kind, len) = match next_message(&conn.buf) {
                Ok(Some(found)) => found,
                Ok(None) => return,
                Err(notification) => {
                    self.feed(Event::ProtocolError(notification)).await;
                    return;
                }
            };
            let message: Vec<u8> = conn.buf.drain(..len).collect();
            self.status_mut().count_in(kind);
            let body = &message[crate::packet::HEADER_LEN..];
            let event = match kind {
                MessageType::Open => match Open::decode(body) {
                    Ok(open) => Event::OpenReceived(open),
                    Err(n) => Event::ProtocolError(n),
                },
                MessageType::Keepalive => Event::KeepaliveReceived,
                MessageType::Notification => match Notification::decode(body) {
                    Some(n) => Event::NotificationReceived(n),
                    None => Event::ProtocolError(Notification::new(1, 2, vec![])),
                },
                MessageType::RouteRefresh => Event::RouteRefreshReceived,
                MessageType::Update => Event::UpdateReceived,
            };
            let established = self.fsm.state() == State::Established;
            self.feed(event).await;
            if established && self.fsm.state() == State::Established {
                match kind {
                    MessageType::Update => {
                        let negotiated = self.fsm.negotiated().cloned();
                        match self
                            .receiver
                            .receive(body, negotiated.as_ref(), self.setup.local_asn)
                        {
                            Ok(()) => {}
                            Err(ReceiveError::Malformed(n)) => {
                                self.feed(Event::ProtocolError(n)).await
                            }
                            Err(ReceiveError::MaxPrefixes(n)) => {
                                warn!(
                                    "prefix limit exceeded: closing, reconnecting in {}",
                                    humantime::format_duration(
                                        self.setup.peer.import.restart_after
                                    )
                                );
                                self.feed(Event::ProtocolError(n)).await;
                                self.retry =
                                    Some(Instant::now() + self.setup.peer.import.restart_after);
                            }
                        }
                        self.status_mut().prefixes_received = self.receiver.prefix_count();
                    }
                    // RFC 2918: answer a refresh by sending that family's routes again; a
                    // refresh for a family the session did not negotiate is ignored (section 4).
                    MessageType::RouteRefresh => self.route_refresh(body).await,
                    _ => {}
                }
            }
        }
    }

    /// The peer asked for our routes again (RFC 2918).
    async fn route_refresh(&mut self, body: &[u8]) {
        let Some(negotiated) = self.fsm.negotiated() else {
            return;
        };
        let (afi, safi) = match body {
            [a, b, _, safi, ..] => (u16::from_be_bytes([*a, *b]), *safi),
            _ => (0, 0),
        };
        let v4 = (afi, safi) == (1, 1) && negotiated.ipv4_unicast;
        let v6 = (afi, safi) == (2, 1) && negotiated.ipv6_unicast;
        if !v4 && !v6 {
            debug!(
                afi,
                safi, "ROUTE-REFRESH for a family not negotiated: ignored (RFC 2918 section 4)"
            );
            return;
        }
        self.adj_out.retain(|p, _| p.addr().is_ipv4() != v4);
        self.exported_from = None;
        self.sync_routes().await;
    }

    /// An incoming connection from the peer (the listener matched its address).
    async fn accept(&mut self, stream: TcpStream) {
        if let Err(e) = transport::accepted(&stream, &self.setup.transport) {
            warn!("cannot configure accepted connection: {e}");
            return;
        }
        match self.fsm.state() {
            State::Idle => {
                // Administratively down: refuse politely.
                reject(stream, cease::CONNECTION_REJECTED);
            }
            State::Connect | State::Active => {
                if let Some(c) = self.connecting.take() {
                    c.abort();
                }
                if let Ok(conn) = Conn::new(stream, false) {
                    self.conn = Some(conn);
                    self.feed(Event::TcpConnected).await;
                }
            }
            State::OpenSent | State::OpenConfirm if self.pending.is_none() => {
                // Collision (section 6.8): keep both until the new one's OPEN tells who wins.
                if let Ok(conn) = Conn::new(stream, false)
                    && conn.writer.send(self.fsm.local_open().encode())
                {
                    self.pending = Some(conn);
                }
            }
            _ => reject(stream, cease::COLLISION_RESOLUTION),
        }
    }

    /// Reads the colliding connection's OPEN and resolves the collision.
    async fn pending_progress(&mut self, ok: bool) {
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        if !ok {
            self.pending = None;
            return;
        }
        let open = match next_message(&pending.buf) {
            Ok(None) => return,
            Ok(Some((MessageType::Open, len))) => {
                Open::decode(&pending.buf[crate::packet::HEADER_LEN..len]).ok()
            }
            _ => None,
        };
        let Some(open) = open else {
            self.pending = None;
            return;
        };
        let current_outgoing = self.conn.as_ref().is_some_and(|c| c.outgoing);
        let keep_other = self.fsm.collision_keeps_other(&open, current_outgoing);
        let mut pending = self.pending.take().expect("checked above");
        let cease = || Notification::cease(cease::COLLISION_RESOLUTION, "").encode();
        if !keep_other {
            pending.writer.send(cease());
            return;
        }
        info!("connection collision: keeping the connection from the peer");
        if let Some(old) = self.conn.take() {
            old.writer.send(cease());
        }
        // Our OPEN already went out on the surviving connection; its OPEN is consumed here.
        let len = next_message(&pending.buf)
            .ok()
            .flatten()
            .map_or(0, |(_, l)| l);
        pending.buf.drain(..len);
        self.conn = Some(pending);
        self.feed(Event::SwitchConnection(open)).await;
        self.drain_messages().await;
    }

    /// Feeds an event and performs the resulting actions (which may produce more events).
    async fn feed(&mut self, event: Event) {
        let before = self.fsm.state();
        let actions = self.fsm.handle(event);
        self.note_state(before);
        self.perform(actions.into()).await;
    }

    fn note_state(&self, before: State) {
        let now = self.fsm.state();
        if now != before {
            info!(from = before.name(), to = now.name(), "state change");
            let mut status = self.status_mut();
            status.state = now;
            status.since = SystemTime::now();
        }
    }

    async fn perform(&mut self, mut queue: VecDeque<Action>) {
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Connect => {
                    let addr = SocketAddr::new(self.setup.peer.address, self.setup.peer.port);
                    let opts = self.setup.transport.clone();
                    let timeout = self.setup.peer.connect_retry.max(Duration::from_secs(5));
                    if let Some(c) = self.connecting.take() {
                        // The previous attempt got no answer before the retry timer fired.
                        c.abort();
                        let timeout = std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "no answer before the connect retry timer fired",
                        );
                        let error = self.explain_connect_error(&timeout);
                        self.connect_failed(error);
                    }
                    self.connecting = Some(tokio::spawn(async move {
                        transport::connect(addr, &opts, timeout).await
                    }));
                }
                Action::Send(bytes) => {
                    if !self.send(&bytes).await {
                        let before = self.fsm.state();
                        let more = self.fsm.handle(Event::TcpFailed);
                        self.note_state(before);
                        queue.extend(more);
                    }
                }
                Action::Disconnect => {
                    // Dropping the connection lets its writer send what is queued (a
                    // NOTIFICATION) for a moment, then closes it.
                    self.conn = None;
                    self.sync_pending = false;
                    if let Some(c) = self.connecting.take() {
                        c.abort();
                    }
                }
                Action::ArmConnectRetry(d) => self.retry = Some(Instant::now() + d),
                Action::ArmHold(d) => self.hold = Some(Instant::now() + d),
                Action::DisarmHold => self.hold = None,
                Action::ArmKeepalive(d) => self.keepalive = Some(Instant::now() + d),
                Action::DisarmKeepalive => self.keepalive = None,
                Action::Up(negotiated) => {
                    self.md5_warned = false;
                    info!(
                        hold = negotiated.hold_time,
                        ipv4 = negotiated.ipv4_unicast,
                        ipv6 = negotiated.ipv6_unicast,
                        "session established"
                    );
                    {
                        let mut status = self.status_mut();
                        status.negotiated = Some((*negotiated).clone());
                        status.last_error = None;
                        status.local_addr = self.conn.as_ref().map(|c| c.local);
                    }
                    self.retry = None;
                    self.adj_out.clear();
                    self.exported_from = None;
                    self.sync_routes().await;
                    if *self.setup.startup_gate.borrow() {
                        self.send_end_of_rib().await;
                    } else {
                        // RFC 4724 section 4.1: routes kept by a helper peer are flushed at our
                        // End-of-RIB, so it waits until healthd has announced everything again.
                        info!("holding End-of-RIB until the table is complete");
                        self.eor_pending = true;
                    }
                }
                Action::Down(reason) => self.went_down(reason),
            }
        }
    }

    async fn send_end_of_rib(&mut self) {
        let Some(n) = self.fsm.negotiated().cloned() else {
            return;
        };
        for eor in update_tx::end_of_rib(n.ipv4_unicast, n.ipv6_unicast) {
            self.send(&eor).await;
        }
    }

    fn went_down(&mut self, reason: DownReason) {
        self.eor_pending = false;
        let negotiated = self.status.read().ok().and_then(|s| s.negotiated.clone());
        let was_up = negotiated.is_some();
        // Helper mode (RFC 4724 section 4.2) only when the connection dropped without a
        // NOTIFICATION; a NOTIFICATION means the peer meant to close.
        let restart_time = negotiated
            .and_then(|n| n.peer_graceful_restart)
            .map(|gr| gr.restart_time)
            .filter(|_| reason == DownReason::ConnectionLost);
        let cause = self.down_cause.take().unwrap_or_else(|| reason.to_string());
        let md5_hint = if self.setup.transport.md5_key.is_some() && !self.md5_warned {
            self.md5_warned = true;
            "; TCP-MD5 is configured: a key changed on either side drops the session like this"
        } else {
            ""
        };
        match &reason {
            DownReason::Stopped => info!("session stopped: {cause}"),
            DownReason::ConnectionLost => warn!("session down: {cause}{md5_hint}"),
            _ => warn!("session down: {cause}"),
        }
        self.adj_out.clear();
        self.sync_pending = false;
        self.exported_from = None;
        self.stale_until = self
            .receiver
            .session_down(restart_time)
            .map(|t| Instant::now() + t);
        let kept = self.receiver.prefix_count();
        let mut status = self.status_mut();
        if was_up {
            status.flaps += 1;
        }
        status.downs[reason.index()] += 1;
        status.negotiated = None;
        status.prefixes_advertised = 0;
        status.prefixes_received = kept;
        status.last_error = Some(cause);
    }

    /// Queues one message for the writer; false when the connection has failed.
    async fn send(&mut self, bytes: &[u8]) -> bool {
        let Some(conn) = self.conn.as_ref() else {
            return false;
        };
        if !conn.writer.send(bytes.to_vec()) {
            return false;
        }
        if let Some(kind) = bytes.get(18).copied() {
            self.status_mut().count_out(kind);
        }
        true
    }

    /// Brings the peer's view in line with the table: withdraws, then announcements grouped by
    /// identical attributes so that each UPDATE carries as many prefixes as fit.
    async fn sync_routes(&mut self) {
        let Some(negotiated) = self.fsm.negotiated().cloned() else {
            return;
        };
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        if conn.writer.backlogged() {
            // The peer is slow to read: the changes wait, and go as one diff once it drains.
            self.sync_pending = true;
            return;
        }
        self.sync_pending = false;
        let local = conn.local.ip();
        let snapshot = self.setup.rib.borrow_and_update().clone();
        let ctx = ExportContext {
            peer: &self.setup.peer,
            local_asn: self.setup.local_asn,
            local_addr: local,
            ipv4_unicast: negotiated.ipv4_unicast,
            ipv6_unicast: negotiated.ipv6_unicast,
        };
        // Only prefixes that changed since the last sync are looked at: the diff of two
        // versions of the persistent map costs as much as the change, not the table.
        let changed: Vec<IpNet> = match &self.exported_from {
            Some(previous) => previous
                .diff(&snapshot.routes)
                .map(|item| match item {
                    DiffItem::Add(p, _) | DiffItem::Remove(p, _) => *p,
                    DiffItem::Update { new: (p, _), .. } => *p,
                })
                .collect(),
            None => snapshot
                .routes
                .keys()
                .chain(self.adj_out.keys())
                .copied()
                .collect(),
        };
        let mut withdrawn = Vec::new();
        let mut groups: HashMap<WireAttrs, Vec<IpNet>> = HashMap::new();
        let mut updates: Vec<(IpNet, Option<WireAttrs>)> = Vec::with_capacity(changed.len());
        for (i, prefix) in changed.into_iter().enumerate() {
            if i % YIELD_EVERY == YIELD_EVERY - 1 {
                // A big diff must not hold a runtime thread: the control API, the other peers
                // and the table share them.
                tokio::task::yield_now().await;
            }
            let desired = snapshot
                .routes
                .get(&prefix)
                .and_then(|route| ctx.export(&prefix, route));
            match (&desired, self.adj_out.get(&prefix)) {
                (None, Some(_)) => withdrawn.push(prefix),
                (Some(attrs), current) if current != Some(attrs) => {
                    groups.entry(attrs.clone()).or_default().push(prefix)
                }
                _ => continue,
            }
            updates.push((prefix, desired));
        }
        withdrawn.sort_unstable();
        withdrawn.dedup();
        let tx = TxContext {
            four_octet_as: negotiated.four_octet_as,
        };
        let mut out = Vec::new();
        for message in update_tx::withdraw(tx, &withdrawn) {
            out.extend_from_slice(&message);
        }
        for (attrs, mut prefixes) in groups {
            prefixes.sort_unstable();
            prefixes.dedup();
            for chunk in prefixes.chunks(YIELD_EVERY) {
                for message in update_tx::announce(tx, &attrs, chunk) {
                    out.extend_from_slice(&message);
                }
                tokio::task::yield_now().await;
            }
        }
        self.exported_from = Some(snapshot.routes.clone());
        if out.is_empty() {
            return;
        }
        debug!(
            withdrawn = withdrawn.len(),
            changed = updates.len(),
            "sending updates"
        );
        let messages = count_messages(&out);
        if self.send_batch(out, messages) {
            for (prefix, desired) in updates {
                match desired {
                    Some(attrs) => self.adj_out.insert(prefix, attrs),
                    None => self.adj_out.remove(&prefix),
                };
            }
            self.status_mut().prefixes_advertised = self.adj_out.len();
        } else {
            self.feed_boxed(Event::TcpFailed).await;
        }
    }

    /// Queues many messages in one buffer (one write for a burst of UPDATEs).
    fn send_batch(&mut self, bytes: Vec<u8>, messages: u64) -> bool {
        let Some(conn) = self.conn.as_ref() else {
            return false;
        };
        if !conn.writer.send(bytes) {
            return false;
        }
        self.status_mut().messages_out.update += messages;
        true
    }

    /// `feed` from inside `perform` needs boxing to break the async recursion.
    fn feed_boxed(
        &mut self,
        event: Event,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(self.feed(event))
    }
}

fn count_messages(mut bytes: &[u8]) -> u64 {
    let mut n = 0;
    while let Ok(Some((_, len))) = next_message(bytes) {
        n += 1;
        bytes = &bytes[len..];
    }
    n
}

/// Refuses a connection with a Cease, in a task of its own bounded in time: a peer that does
/// not read must not hold the session task.
fn reject(mut stream: TcpStream, subcode: u8) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            stream
                .write_all(&Notification::cease(subcode, "").encode())
                .await?;
            stream.shutdown().await
        })
        .await;
    });
}
