//! The replacement's side: the sockets and state taken from the running process.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, warn};

use super::HandoverError;

/// How long the running process may take to send its sockets and state.
const RECEIVE_DEADLINE: Duration = Duration::from_secs(30);

/// The sockets a replacement received, by name, until it takes them; with nothing received
/// (`Inherited::default()`), every listener is bound afresh.
#[derive(Debug, Default)]
pub struct Inherited {
    sockets: HashMap<String, Vec<OwnedFd>>,
    state: Option<(serde_json::Value, Vec<u8>)>,
    /// Where to say "serving" once serving.
    stream: Option<UnixStream>,
}

impl Inherited {
    /// Connects to the running `daemon` at `path` and takes its sockets and state.
    pub fn receive(path: &Path, daemon: &'static str) -> Result<Self, TakeOverError> {
        let stream = UnixStream::connect(path).map_err(|cause| TakeOverError::Connect {
            daemon,
            path: path.to_owned(),
            cause,
        })?;
        stream.set_read_timeout(Some(RECEIVE_DEADLINE))?;
        let (handover, fds) = super::receive(&stream)?;
        let mut sockets: HashMap<String, Vec<OwnedFd>> = HashMap::new();
        for (name, fd) in handover.sockets.into_iter().zip(fds) {
            sockets.entry(name).or_default().push(fd);
        }
        info!(path = %path.display(), sockets = sockets.values().map(Vec::len).sum::<usize>(), payload = handover.payload.len(), "took over the running {daemon}'s sockets");
        Ok(Self {
            sockets,
            state: Some((handover.state, handover.payload)),
            stream: Some(stream),
        })
    }

    /// Whether this process replaces another.
    pub fn replacing(&self) -> bool {
        self.stream.is_some()
    }

    /// Every socket received under `name`, in the order offered.
    pub fn take_all(&mut self, name: &str) -> Vec<OwnedFd> {
        self.sockets.remove(name).unwrap_or_default()
    }

    /// One socket received under `name` (the first offered).
    pub fn take(&mut self, name: &str) -> Option<OwnedFd> {
        let fds = self.sockets.get_mut(name)?;
        let fd = (!fds.is_empty()).then(|| fds.remove(0));
        if fds.is_empty() {
            self.sockets.remove(name);
        }
        fd
    }

    /// The TCP listener of kind `kind` on `addr` ([`super::name`]): received, or bound afresh;
    /// non-blocking, ready for tokio.
    pub fn tcp(&mut self, kind: &str, addr: SocketAddr) -> std::io::Result<TcpListener> {
        let listener = match self.take(&super::name(kind, addr)) {
            Some(fd) => TcpListener::from(fd),
            None => listen(addr)?,
        };
        listener.set_nonblocking(true)?;
        Ok(listener)
    }

    /// The state the running process sent and its payload, once; `None` when not replacing.
    pub fn state<T: serde::de::DeserializeOwned>(
        &mut self,
    ) -> Result<Option<(T, Vec<u8>)>, serde_json::Error> {
        let Some((state, payload)) = self.state.take() else {
            return Ok(None);
        };
        Ok(Some((serde_json::from_value(state)?, payload)))
    }

    /// Tells the old process this one serves; sockets received and not taken (listeners the
    /// new configuration dropped) are closed here.
    pub fn serving(&mut self) {
        drop(self.serving_until_released());
    }

    /// [`Inherited::serving`], and what tells when the old process has let go; `None` when
    /// not replacing.
    pub fn serving_until_released(&mut self) -> Option<Released> {
        self.sockets.clear();
        let stream = self.stream.take()?;
        if let Err(e) = super::say_serving(&stream) {
            warn!("could not tell the old process that this one serves: {e}");
        }
        Some(Released(stream))
    }
}

/// The hand-over connection kept after saying "serving": it closes once the old process has
/// let go ([`super::Replacer::release`]) or exited.
#[derive(Debug)]
pub struct Released(UnixStream);

impl Released {
    /// Waits until the old process lets go, for at most `within`; whether it did.
    pub async fn wait(self, within: Duration) -> bool {
        let stream = self.0;
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            if stream.set_read_timeout(Some(within)).is_err() {
                return false;
            }
            let mut buf = [0u8; 64];
            loop {
                match (&stream).read(&mut buf) {
                    Ok(0) => return true,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // A reset is a close too; a time-out is not.
                    Err(e) => {
                        return !matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        );
                    }
                }
            }
        })
        .await
        .unwrap_or(false)
    }
}

/// Why this process could not take over.
#[derive(Debug, thiserror::Error)]
pub enum TakeOverError {
    #[error("cannot reach the running {daemon} at {path}: {cause}")]
    Connect {
        daemon: &'static str,
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

/// Connections the kernel queues for a listener before it accepts them (capped by
/// `net.core.somaxconn`): a burst of viewers (a match starting) connects faster than one
/// accept loop takes them, and std's 128 overflows, resetting connections. nginx queues 511.
const BACKLOG: i32 = 4096;

/// A TCP listener on `addr` with a backlog of [`BACKLOG`] and `SO_REUSEADDR` (as std's).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
