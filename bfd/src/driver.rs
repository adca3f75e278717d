//! Running sessions on the network (RFC 5881): control packets to UDP port 3784 with TTL 255,
//! each session from a source port of its own in 49152-65535; packets received on port 3784
//! are taken only with TTL 255, so they can only come from the link itself (GTSM, RFC 5082).
//!
//! One task owns every session: it reads the sockets, runs the timers and reports each
//! session's state on a `watch` channel. The sessions themselves are [`crate::session`].
//! The task runs on a thread and runtime of its own, as bfdd is a process of its own beside
//! bgpd: a busy daemon around it (a table being rebuilt, a slow peer) must not delay a
//! packet by the detection time and take a healthy link down.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Instant;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::packet::{Diag, Packet, State};
use crate::session::{Config, Session};

/// The destination port of single-hop control packets.
pub const PORT: u16 = 3784;

/// A session to run: with the router at `remote`, from our address `local` on that link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub remote: IpAddr,
    pub local: IpAddr,
    pub config: Config,
}

/// A session's state as the driver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    pub remote_state: State,
    /// Why it last went down.
    pub diag: Diag,
    /// Changes to Up so far: a session that has been Up and goes down is a failure.
    pub ups: u64,
    /// Why the session cannot run at all (a socket that cannot be bound).
    pub problem: Option<String>,
}

impl Status {
    fn new() -> Self {
        Self {
            state: State::Down,
            remote_state: State::Down,
            diag: Diag::None,
            ups: 0,
            problem: None,
        }
    }
}

enum Command {
    Add(Peer, watch::Sender<Status>),
    Remove(IpAddr),
}

/// The handle on the driver task; dropping every handle stops it (its sessions tell their
/// peers they go administratively down).
#[derive(Clone)]
pub struct Bfd {
    commands: mpsc::UnboundedSender<Command>,
}

impl Bfd {
    /// Starts the driver on a thread of its own. Port 3784 is bound for each address family
    /// when its first session is added. A driver that cannot start says so in every session's
    /// [`Status::problem`].
    pub fn start() -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("bfd".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(Driver::new().run(rx)),
                    Err(e) => tracing::error!("the BFD driver cannot start: {e}"),
                }
            });
        if let Err(e) = thread {
            tracing::error!("the BFD driver cannot start: {e}");
        }
        Self { commands }
    }

    /// Starts a session with `peer`; its state comes on the receiver (with `problem` set if
    /// it cannot run).
    pub fn add(&self, peer: Peer) -> watch::Receiver<Status> {
        let (tx, rx) = watch::channel(Status::new());
        if self.commands.send(Command::Add(peer, tx.clone())).is_err() {
            tx.send_modify(|s| s.problem = Some("the BFD driver stopped".into()));
        }
        rx
    }

    /// Ends the session with `remote`, telling the peer (AdminDown).
    pub fn remove(&self, remote: IpAddr) {
        let _ = self.commands.send(Command::Remove(remote));
    }
}

/// A running session: its state machine, its socket and its reporter.
struct Entry {
    peer: Peer,
    session: Session,
    socket: UdpSocket,
    status: watch::Sender<Status>,
}

/// A datagram received on port 3784.
struct Datagram {
    bytes: Vec<u8>,
    from: SocketAddr,
    /// Its TTL or hop limit, when the kernel said.
    ttl: Option<u8>,
}

struct Driver {
    sessions: HashMap<u32, Entry>,
    /// Datagrams from the receiving sockets, and whether each family's is bound.
    datagrams: (mpsc::Sender<Datagram>, mpsc::Receiver<Datagram>),
    bound: [bool; 2],
    next_discr: u32,
    seed: u64,
}

impl Driver {
    fn new() -> Self {
        let seed = u64::from(std::process::id())
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
        Self {
            sessions: HashMap::new(),
            datagrams: mpsc::channel(64),
            bound: [false; 2],
            // Discriminators start somewhere unpredictable, so a restarted speaker's sessions
            // are not taken for its previous ones.
            next_discr: (seed as u32).max(1),
            seed,
        }
    }

    fn random(&mut self) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            self.send_due(Instant::now()).await;
            let wake = self
                .sessions
                .values()
                .filter_map(|e| e.session.next_wakeup())
                .min();
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Add(peer, status)) => self.add(peer, status),
                    Some(Command::Remove(remote)) => self.remove(remote).await,
                    None => {
                        let remotes: Vec<IpAddr> =
                            self.sessions.values().map(|e| e.peer.remote).collect();
                        for remote in remotes {
                            self.remove(remote).await;
                        }
                        return;
                    }
                },
                Some(d) = self.datagrams.1.recv() => self.receive(&d.bytes, d.from, d.ttl),
                _ = sleep => {}
            }
            let now = Instant::now();
            for entry in self.sessions.values_mut() {
                if let Some(change) = entry.session.expire(now) {
                    report(entry, change.diag);
                }
            }
        }
    }

    fn add(&mut self, peer: Peer, status: watch::Sender<Status>) {
        if let Err(e) = self.listen(peer.remote.is_ipv6()) {
            warn!(peer = %peer.remote, "BFD session cannot run: {e}");
            status.send_modify(|s| s.problem = Some(e.to_string()));
            return;
        }
        let socket = match bind_sender(peer.local, peer.remote, self.random()) {
            Ok(s) => s,
            Err(e) => {
                let e = format!("cannot send BFD from {}: {e}", peer.local);
                warn!(peer = %peer.remote, "BFD session cannot run: {e}");
                status.send_modify(|s| s.problem = Some(e));
                return;
            }
        };
        let discr = loop {
            let d = self.next_discr;
            self.next_discr = self.next_discr.wrapping_add(1).max(1);
            if !self.sessions.contains_key(&d) {
                break d;
            }
        };
        info!(peer = %peer.remote, local = %peer.local, discriminator = discr, "BFD session started");
        let session = Session::new(peer.config, discr);
        self.sessions.insert(
            discr,
            Entry {
                peer,
                session,
                socket,
                status,
            },
        );
    }

    /// Binds port 3784 for the family, the first time a session needs it.
    fn listen(&mut self, v6: bool) -> io::Result<()> {
        if self.bound[usize::from(v6)] {
            return Ok(());
        }
        let addr = if v6 {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, PORT))
        } else {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT))
        };
        let receiver = Receiver::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot receive BFD on {addr}: {e}")))?;
        tokio::spawn(receiver.read(self.datagrams.0.clone()));
        self.bound[usize::from(v6)] = true;
        Ok(())
    }

    async fn remove(&mut self, remote: IpAddr) {
        let Some(discr) = self
            .sessions
            .iter()
            .find(|(_, e)| e.peer.remote == remote)
            .map(|(d, _)| *d)
        else {
            return;
        };
        if let Some(mut entry) = self.sessions.remove(&discr) {
            entry.status.send_modify(|s| s.state = State::AdminDown);
            // Tell the peer, so it does not take our going for a failure.
            let _ = entry.session.set_admin_down(true);
            if let Some(p) = entry.session.transmit(Instant::now(), 0.0) {
                let _ = entry.socket.send(&p.encode()).await;
            }
            info!(peer = %remote, "BFD session removed");
        }
    }

    /// A datagram from `from` with TTL or hop limit `ttl`.
    fn receive(&mut self, bytes: &[u8], from: SocketAddr, ttl: Option<u8>) {
        if ttl != Some(255) {
            debug!(%from, ?ttl, "BFD packet not sent from the link itself (TTL not 255), discarded");
            return;
        }
        let packet = match Packet::decode(bytes) {
            Ok(p) => p,
            Err(e) => {
                debug!(%from, "BFD packet discarded: {e}");
                return;
            }
        };
        let remote = canonical(from.ip());
        let entry = if packet.your_discr != 0 {
            self.sessions
                .get_mut(&packet.your_discr)
                .filter(|e| e.peer.remote == remote)
        } else {
            self.sessions.values_mut().find(|e| e.peer.remote == remote)
        };
        let Some(entry) = entry else {
            debug!(%from, your = packet.your_discr, "BFD packet for no session of ours, discarded");
            return;
        };
        if let Some(change) = entry.session.receive(&packet, Instant::now()) {
            report(entry, change.diag);
        } else {
            // The remote state may have changed without ours.
            entry.status.send_if_modified(|s| {
                let remote_state = entry.session.remote_state();
                let changed = s.remote_state != remote_state;
                s.remote_state = remote_state;
                changed
            });
        }
    }

    /// Sends every packet due at `now`.
    async fn send_due(&mut self, now: Instant) {
        let jitters: Vec<f64> = (0..self.sessions.len())
            .map(|_| (self.random() % 1000) as f64 / 1000.0)
            .collect();
        for (entry, jitter) in self.sessions.values_mut().zip(jitters) {
            while let Some(packet) = entry.session.transmit(now, jitter) {
                if let Err(e) = entry.socket.send(&packet.encode()).await {
                    debug!(peer = %entry.peer.remote, "BFD send failed: {e}");
                    break;
                }
            }
        }
    }
}

/// Publishes a session's new state, logging the change.
fn report(entry: &mut Entry, diag: Diag) {
    let state = entry.session.state();
    let peer = entry.peer.remote;
    match state {
        State::Up => info!(%peer, "BFD session up"),
        State::Down if entry.status.borrow().state == State::Up => {
            warn!(%peer, "BFD session down: {}", diag.describe())
        }
        _ => debug!(%peer, state = state.name(), "BFD session state"),
    }
    entry.status.send_modify(|s| {
        if state == State::Up && s.state != State::Up {
            s.ups += 1;
        }
        s.state = state;
        s.remote_state = entry.session.remote_state();
        s.diag = diag;
    });
}

/// IPv4-mapped IPv6 addresses as the IPv4 addresses they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A session's sending socket: from `local` on a port in 49152-65535 (RFC 5881 section 4),
/// TTL 255, to the peer's port 3784.
fn bind_sender(local: IpAddr, remote: IpAddr, random: u64) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if local.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let mut last = io::Error::other("no source port free in 49152-65535");
    for attempt in 0..64u64 {
        let port = 49152 + ((random.wrapping_add(attempt * 7919)) % 16384) as u16;
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if local.is_ipv4() {
            socket.set_ttl_v4(255)?;
        } else {
            socket.set_unicast_hops_v6(255)?;
        }
        socket.set_nonblocking(true)?;
        match socket.bind(&SocketAddr::new(local, port).into()) {
            Ok(()) => {
                socket.connect(&SocketAddr::new(remote, PORT).into())?;
                return UdpSocket::from_std(socket.into());
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A socket on port 3784 that reports each datagram's TTL or hop limit.
struct Receiver {
    socket: UdpSocket,
    v6: bool,
}

impl Receiver {
    fn bind(addr: SocketAddr) -> io::Result<Self> {
        use socket2::{Domain, Protocol, Socket, Type};
        let v6 = addr.is_ipv6();
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        let fd = socket.as_raw_fd();
        let on: libc::c_int = 1;
        let (level, option) = if v6 {
            socket.set_only_v6(true)?;
            (libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT)
        } else {
            (libc::IPPROTO_IP, libc::IP_RECVTTL)
        };
        // SAFETY: a valid socket, an int option of the right size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                option,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        socket.bind(&addr.into())?;
        Ok(Self {
            socket: UdpSocket::from_std(socket.into())?,
            v6,
        })
    }

    /// Reads datagrams for the driver until it stops.
    async fn read(self, driver: mpsc::Sender<Datagram>) {
        let mut buf = [0u8; 512];
        let fd = self.socket.as_raw_fd();
        loop {
            let received = self
                .socket
                .async_io(Interest::READABLE, || recv_with_ttl(fd, &mut buf, self.v6))
                .await;
            match received {
                Ok((len, from, ttl)) => {
                    let datagram = Datagram {
                        bytes: buf[..len].to_vec(),
                        from,
                        ttl,
                    };
                    if driver.send(datagram).await.is_err() {
                        return;
                    }
                }
                Err(e) => debug!("BFD: receiving failed: {e}"),
            }
        }
    }
}

/// `recvmsg` with the TTL (IPv4) or hop limit (IPv6) the kernel attaches: the standard
/// library and tokio give datagrams without it.
fn recv_with_ttl(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
    v6: bool,
) -> io::Result<(usize, SocketAddr, Option<u8>)> {
    // SAFETY: every pointer handed to recvmsg is to a live local of the size given, and the
    // control messages are read only within what the kernel wrote (CMSG_FIRSTHDR/NXTHDR).
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 16];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(fd, &mut msg, 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let (level, kind) = if v6 {
            (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT)
        } else {
            (libc::IPPROTO_IP, libc::IP_TTL)
        };
        let mut ttl = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == level && (*cmsg).cmsg_type == kind {
                let value: libc::c_int = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                ttl = u8::try_from(value).ok();
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        let from = match i32::from(addr.ss_family) {
            libc::AF_INET => {
                let sin = &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                SocketAddr::from((
                    Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                    u16::from_be(sin.sin_port),
                ))
            }
            libc::AF_INET6 => {
                let sin6 = &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                SocketAddr::from((
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                ))
            }
            _ => return Err(io::Error::other("a datagram from a non-IP address")),
        };
        Ok((n as usize, from, ttl))
    }
}
