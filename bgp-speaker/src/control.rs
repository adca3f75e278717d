//! Serving the control API (the protocol and its client are the `speaker-control` crate): a
//! task per connection, over a unix socket (protected by its file mode) or a loopback TCP port
//! (protected by a token).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use config::types::ControlEndpoint;
use speaker_control::{Envelope, Op, Reply, read_request, write_reply};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, UnixListener};
use tracing::{debug, warn};

use std::sync::{Arc, OnceLock};

use daemon::handover::{Inherited, Offered, Replacer};

use crate::session::task::RoutesOf;
use crate::speaker::SpeakerHandle;

/// Why the control API could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on control endpoint {endpoint}: {cause}")]
pub struct ControlError {
    endpoint: String,
    cause: std::io::Error,
}

/// Where the control API finds the speaker's replacer once it has one (`Op::Replace`).
pub type ReplacerSlot = Arc<OnceLock<Arc<Replacer>>>;

/// Serves the control API until the returned server is dropped.
pub async fn serve(
    endpoint: &ControlEndpoint,
    token: Option<String>,
    speaker: SpeakerHandle,
) -> Result<ControlServer, ControlError> {
    let (mut inherited, mut offered) = (Inherited::default(), Offered::default());
    let slot = ReplacerSlot::default();
    serve_handing_over(endpoint, token, speaker, slot, &mut inherited, &mut offered).await
}

/// [`serve`] on the listener a replaced speaker handed over when there is one, offering it
/// to this one's replacement in turn.
pub async fn serve_handing_over(
    endpoint: &ControlEndpoint,
    token: Option<String>,
    speaker: SpeakerHandle,
    replacer: ReplacerSlot,
    inherited: &mut Inherited,
    offered: &mut Offered,
) -> Result<ControlServer, ControlError> {
    let listen_err = |cause| ControlError {
        endpoint: endpoint.to_string(),
        cause,
    };
    match endpoint {
        ControlEndpoint::Unix(path) => {
            let name = format!("control {}", path.display());
            let listener = match inherited.take(&name) {
                Some(fd) => {
                    let listener = std::os::unix::net::UnixListener::from(fd);
                    listener.set_nonblocking(true).map_err(listen_err)?;
                    UnixListener::from_std(listener).map_err(listen_err)?
                }
                None => {
                    prepare_socket_path(path).map_err(listen_err)?;
                    let listener = UnixListener::bind(path).map_err(listen_err)?;
                    // Only the owner (root or the speaker's user) may talk to the speaker.
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                        .map_err(listen_err)?;
                    listener
                }
            };
            offered.add(name, &listener).map_err(listen_err)?;
            let inode = {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata(path).map_err(listen_err)?.ino()
            };
            let beat = speaker
                .liveness()
                .flag(format!("control API on {}", endpoint));
            let task = tokio::spawn(async move {
                let _serving = beat.serving_while();
                loop {
                    match listener.accept().await {
                        // File permissions are the authentication on a unix socket.
                        Ok((stream, _)) => drop(tokio::spawn(session(
                            stream,
                            None,
                            speaker.clone(),
                            replacer.clone(),
                        ))),
                        Err(e) => accept_failed(e).await,
                    }
                }
            });
            Ok(ControlServer {
                task,
                socket: Some((path.clone(), inode)),
            })
        }
        ControlEndpoint::Tcp(addr) => {
            let listener = inherited.tcp("control", *addr).map_err(listen_err)?;
            offered
                .tcp("control", *addr, &listener)
                .map_err(listen_err)?;
            let listener = TcpListener::from_std(listener).map_err(listen_err)?;
            let beat = speaker.liveness().flag(format!("control API on {addr}"));
            let task = tokio::spawn(async move {
                let _serving = beat.serving_while();
                loop {
                    match listener.accept().await {
                        Ok((stream, _)) => drop(tokio::spawn(session(
                            stream,
                            token.clone(),
                            speaker.clone(),
                            replacer.clone(),
                        ))),
                        Err(e) => accept_failed(e).await,
                    }
                }
            });
            Ok(ControlServer { task, socket: None })
        }
    }
}

/// Out of file descriptors and the like: say so and back off instead of spinning.
async fn accept_failed(e: std::io::Error) {
    warn!("control accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Creates the socket's directory and removes a stale socket left by a previous run.
///
/// A socket that still answers belongs to a running speaker: taking it over would leave that
/// speaker unreachable, so this is refused.
fn prepare_socket_path(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "another bgp-speaker is running on this socket; stop it first",
        ));
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The running control API; dropping it stops it and removes its socket (if still ours).
pub struct ControlServer {
    task: tokio::task::JoinHandle<()>,
    socket: Option<(std::path::PathBuf, u64)>,
}

impl ControlServer {
    /// Stops accepting (from any thread); sessions open go on.
    pub fn stop_accepting(&self) -> impl Fn() + Send + Sync + 'static {
        let accepting = self.task.abort_handle();
        move || accepting.abort()
    }

    /// Stops serving and leaves the socket file to the replacement that serves on the same
    /// socket.
    pub fn leave(mut self) {
        self.socket = None;
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        self.task.abort();
        if let Some((path, inode)) = &self.socket {
            // A newer instance may have replaced the file: only remove the one we created.
            if std::fs::metadata(path).is_ok_and(|m| m.ino() == *inode) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    token: Option<String>,
    speaker: SpeakerHandle,
    replacer: ReplacerSlot,
) {
    let (read, write) = tokio::io::split(stream);
    let mut reader = BufReader::new(read);
    let mut write = BufWriter::new(write);
    let mut line = String::new();
    loop {
        let request = match read_request(&mut reader, &mut line).await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(e) => {
                debug!("control read failed: {e}");
                return;
            }
        };
        let result = match request {
            Err((refused, close)) => {
                let _ = write_reply(&mut write, &refused).await;
                let _ = write.flush().await;
                if close {
                    return;
                }
                continue;
            }
            Ok(envelope) if token.is_some() && envelope.token != token => {
                warn!("control request refused: bad or missing token");
                write_reply(&mut write, &Reply::Error("bad or missing token".into())).await
            }
            Ok(Envelope { op: Op::Routes, .. }) => stream_table(&speaker, &mut write).await,
            Ok(Envelope {
                op: Op::Advertised { peer },
                ..
            }) => stream_routes(&speaker, &peer, RoutesOf::Advertised, &mut write).await,
            Ok(Envelope {
                op: Op::Received { peer },
                ..
            }) => stream_routes(&speaker, &peer, RoutesOf::Received, &mut write).await,
            Ok(Envelope {
                op: Op::Replace, ..
            }) => {
                let reply = match replacer.get() {
                    None => Reply::Error(
                        "this speaker offers no hand-over: set speaker.handover (a Unix socket path) and restart it once".into(),
                    ),
                    Some(r) => match r.replace().await {
                        Ok(done) => Reply::Replaced {
                            pid: done.pid,
                            ms: done.elapsed.as_millis() as u64,
                        },
                        Err(e) => Reply::Error(format!("not replaced, still running: {e}")),
                    },
                };
                write_reply(&mut write, &reply).await
            }
            Ok(envelope) => write_reply(&mut write, &speaker.ask(envelope.op).await).await,
        };
        if result.is_err() || write.flush().await.is_err() {
            return;
        }
    }
}

/// Routes fetched from a peer task per page.
const PAGE: usize = 1000;

/// Streams a peer's routes a page at a time: neither the speaker nor this session ever holds
/// more than a page, however large the table, and a client that stops reading stops the stream
/// (the writes wait on it), not the peer.
async fn stream_routes<W: AsyncWrite + Unpin>(
    speaker: &SpeakerHandle,
    peer: &str,
    which: RoutesOf,
    write: &mut W,
) -> std::io::Result<()> {
    let mut after = None;
    let mut routes = 0;
    loop {
        let page = match speaker.routes_page(peer, which, after, PAGE).await {
            Ok(page) => page,
            Err(e) => return write_reply(write, &Reply::Error(e)).await,
        };
        let Some((last, _)) = page.last() else {
            return write_reply(write, &Reply::RoutesEnd { routes }).await;
        };
        after = Some(*last);
        routes += page.len();
        for (_, route) in page {
            write_reply(write, &Reply::PeerRoute(route)).await?;
        }
    }
}

/// Streams our table a page at a time, all from the version it had when asked.
async fn stream_table<W: AsyncWrite + Unpin>(
    speaker: &SpeakerHandle,
    write: &mut W,
) -> std::io::Result<()> {
    let mut table = speaker.table();
    let mut routes = 0;
    loop {
        let page = table.next_page(PAGE);
        if page.is_empty() {
            return write_reply(write, &Reply::RoutesEnd { routes }).await;
        }
        routes += page.len();
        for entry in page {
            write_reply(write, &Reply::Route(entry)).await?;
        }
    }
}
