//! Replacing a running geodns without a lost query (`geodns --take-over`): the running process
//! offers its sockets on `dns.handover` ([`daemon::handover`]); the replacement receives its
//! UDP workers' sockets, its TCP, steering and admin listeners, and the state to start from
//! (operators' overrides and every node's health as the feeds last said), applies the state
//! before it answers, serves on the same sockets, and says so. The old process then stops
//! reading, lets its TCP connections finish, and exits. If the replacement fails before it
//! says it serves, the old one goes on serving.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use daemon::handover::{self, Handover, HandoverError};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::admin_state::Override;
use crate::health::HealthState;
use crate::state::Shared;

/// How long the old process waits for its replacement to say it serves.
const REPLACEMENT_DEADLINE: Duration = Duration::from_secs(60);

/// What the replacement starts from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub overrides: Vec<Override>,
    pub nodes: Vec<NodeHealth>,
}

/// One node's health as the old process last heard it from its site's feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeHealth {
    pub site: String,
    pub node: String,
    pub healthy: bool,
    pub load: f64,
}

impl State {
    pub fn capture(health: &HealthState) -> Self {
        Self {
            overrides: crate::admin_state::current(health),
            nodes: health
                .sites
                .iter()
                .flat_map(|s| {
                    s.nodes.iter().map(|n| NodeHealth {
                        site: s.name.clone(),
                        node: n.name.clone(),
                        healthy: n.healthy,
                        load: n.load,
                    })
                })
                .collect(),
        }
    }

    /// Applies the state to `health`, by name (sites and nodes the configuration no longer has
    /// are skipped).
    pub fn apply(&self, health: &mut HealthState) {
        crate::admin_state::apply(health, &self.overrides);
        for n in &self.nodes {
            let node = health
                .sites
                .iter_mut()
                .filter(|s| s.name == n.site)
                .flat_map(|s| s.nodes.iter_mut())
                .find(|node| node.name == n.node);
            if let Some(node) = node {
                node.healthy = n.healthy;
                node.load = n.load;
            }
        }
    }
}

/// The sockets a replacement received, by name, until it takes them.
#[derive(Debug, Default)]
pub struct Inherited {
    sockets: HashMap<String, Vec<OwnedFd>>,
    pub state: Option<State>,
    /// Where to say "serving" once serving.
    stream: Option<UnixStream>,
}

impl Inherited {
    /// Connects to the running geodns at `path` and takes its sockets and state.
    pub fn receive(path: &Path) -> Result<Self, TakeOverError> {
        let stream = UnixStream::connect(path).map_err(|cause| TakeOverError::Connect {
            path: path.to_owned(),
            cause,
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let (handover, fds) = handover::receive(&stream)?;
        let state = serde_json::from_value(handover.state)?;
        let mut sockets: HashMap<String, Vec<OwnedFd>> = HashMap::new();
        for (name, fd) in handover.sockets.into_iter().zip(fds) {
            sockets.entry(name).or_default().push(fd);
        }
        info!(path = %path.display(), sockets = sockets.values().map(Vec::len).sum::<usize>(), "took over the running geodns's sockets");
        Ok(Self {
            sockets,
            state: Some(state),
            stream: Some(stream),
        })
    }

    /// The UDP sockets for `addr`: those received (one per worker of the old process), or
    /// `threads` bound afresh.
    pub fn udp(&mut self, addr: SocketAddr, threads: usize) -> std::io::Result<Vec<UdpSocket>> {
        match self.sockets.remove(&udp_name(addr)) {
            Some(fds) => Ok(fds.into_iter().map(UdpSocket::from).collect()),
            None => (0..threads.max(1))
                .map(|_| crate::udp::bind(addr))
                .collect(),
        }
    }

    /// A TCP listener of kind `kind` (`"dns tcp"`, `"steering"`, `"admin"`) on `addr`:
    /// received, or bound afresh.
    pub fn tcp(&mut self, kind: &str, addr: SocketAddr) -> std::io::Result<TcpListener> {
        let received = self
            .sockets
            .get_mut(&tcp_name(kind, addr))
            .and_then(Vec::pop);
        let listener = match received {
            Some(fd) => TcpListener::from(fd),
            None => TcpListener::bind(addr)?,
        };
        listener.set_nonblocking(true)?;
        Ok(listener)
    }

    /// Tells the old process this one serves; sockets received and not taken (listeners the
    /// new configuration dropped) are closed.
    pub fn serving(&mut self) {
        if let Some(stream) = self.stream.take()
            && let Err(e) = handover::say_serving(&stream)
        {
            warn!("could not tell the old geodns that this one serves: {e}");
        }
        self.sockets.clear();
    }
}

/// The sockets a running geodns offers its replacement (copies of the descriptors it serves
/// on: the same sockets).
#[derive(Default)]
pub struct Offered {
    sockets: Vec<(String, OwnedFd)>,
}

impl Offered {
    pub fn udp(&mut self, addr: SocketAddr, sockets: &[UdpSocket]) -> std::io::Result<()> {
        for s in sockets {
            let fd = s.as_fd().try_clone_to_owned()?;
            self.sockets.push((udp_name(addr), fd));
        }
        Ok(())
    }

    pub fn tcp(
        &mut self,
        kind: &str,
        addr: SocketAddr,
        listener: &TcpListener,
    ) -> std::io::Result<()> {
        let fd = listener.as_fd().try_clone_to_owned()?;
        self.sockets.push((tcp_name(kind, addr), fd));
        Ok(())
    }
}

/// The Unix socket a geodns offers its sockets on.
pub struct Offer {
    listener: UnixListener,
    path: PathBuf,
    /// Where a replacement binds until it serves: the path still leads to the old process
    /// until then, so that a replacement that fails leaves it reachable for the next try.
    pending: Option<PathBuf>,
}

impl Offer {
    /// Binds the offer at `path`; a `replacement` binds beside it, to move in by
    /// [`Offer::start`] once it serves.
    pub fn bind(path: &Path, replacement: bool) -> std::io::Result<Self> {
        if replacement {
            let mut pending = path.as_os_str().to_owned();
            pending.push(".new");
            let pending = PathBuf::from(pending);
            let _ = std::fs::remove_file(&pending);
            return Ok(Self {
                listener: UnixListener::bind(&pending)?,
                path: path.to_owned(),
                pending: Some(pending),
            });
        }
        // A file left by a process that is gone is in the way; a live one means another geodns.
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "another geodns offers its sockets at {}: start this one with --take-over to replace it",
                    path.display()
                ),
            ));
        }
        let _ = std::fs::remove_file(path);
        Ok(Self {
            listener: UnixListener::bind(path)?,
            path: path.to_owned(),
            pending: None,
        })
    }

    /// Offers `offered` for as long as the process runs: the first replacement that says it
    /// serves gets `replaced` fired; one that fails leaves this process serving, and the next
    /// may try.
    pub fn start(
        self,
        offered: Offered,
        shared: Arc<Shared>,
        replaced: tokio::sync::oneshot::Sender<()>,
    ) -> std::io::Result<()> {
        if let Some(pending) = &self.pending {
            // Atomically: the next replacement finds this process, never no one.
            std::fs::rename(pending, &self.path)?;
        }
        info!(path = %self.path.display(), "offering the sockets to a replacement (geodns --take-over)");
        let listener = self.listener;
        std::thread::Builder::new()
            .name("dns-handover".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    let stream = match stream {
                        Ok(s) => s,
                        Err(e) => {
                            warn!("hand-over socket: {e}");
                            continue;
                        }
                    };
                    match hand_over(&stream, &offered, &shared) {
                        Ok(()) => {
                            info!("the replacement serves: this geodns stops");
                            let _ = replaced.send(());
                            return;
                        }
                        Err(e) => warn!("hand-over failed, still serving: {e}"),
                    }
                }
            })?;
        Ok(())
    }
}

fn hand_over(stream: &UnixStream, offered: &Offered, shared: &Shared) -> Result<(), HandoverError> {
    let state = State::capture(&shared.health());
    let handover = Handover {
        sockets: offered.sockets.iter().map(|(n, _)| n.clone()).collect(),
        state: serde_json::to_value(state)?,
    };
    let fds: Vec<BorrowedFd<'_>> = offered.sockets.iter().map(|(_, fd)| fd.as_fd()).collect();
    handover::send(stream, &handover, &fds)?;
    stream.set_read_timeout(Some(REPLACEMENT_DEADLINE))?;
    handover::wait_serving(stream)
}

fn udp_name(addr: SocketAddr) -> String {
    format!("dns udp {addr}")
}

fn tcp_name(kind: &str, addr: SocketAddr) -> String {
    format!("{kind} {addr}")
}

/// Why this process could not take over.
#[derive(Debug, thiserror::Error)]
pub enum TakeOverError {
    #[error("cannot reach the running geodns at {path} (dns.handover): {cause}")]
    Connect {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Handover(#[from] HandoverError),
    #[error("hand-over: {0}")]
    Io(#[from] std::io::Error),
    #[error("hand-over state: {0}")]
    State(#[from] serde_json::Error),
}
