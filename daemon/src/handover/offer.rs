//! The running process's side: offering its sockets, and starting its own replacement.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};
use tracing::{info, warn};

use super::{Handover, HandoverError};

/// How long the old process waits for its replacement to say it serves (a replacement may
/// compile a full-size location database first).
const REPLACEMENT_DEADLINE: Duration = Duration::from_secs(60);

/// The sockets a running daemon offers its replacement: copies of the descriptors it serves
/// on, so the same sockets.
#[derive(Default)]
pub struct Offered {
    sockets: Vec<(String, OwnedFd)>,
}

impl Offered {
    /// Offers `socket` under `name`; several may share a name (a UDP worker's each).
    pub fn add(&mut self, name: String, socket: &impl AsFd) -> std::io::Result<()> {
        let fd = socket.as_fd().try_clone_to_owned()?;
        self.sockets.push((name, fd));
        Ok(())
    }

    /// Offers a TCP listener of kind `kind` on `addr` ([`super::name`]).
    pub fn tcp(
        &mut self,
        kind: &str,
        addr: SocketAddr,
        listener: &impl AsFd,
    ) -> std::io::Result<()> {
        self.add(super::name(kind, addr), listener)
    }
}

/// What a daemon hands its replacement besides the sockets.
#[derive(Debug, Default)]
pub struct Captured {
    pub state: serde_json::Value,
    pub payload: Vec<u8>,
}

/// The state a daemon carries over: taken when a replacement connects.
pub trait Carry: Send + Sync + 'static {
    /// What the replacement starts from, or why it cannot be had (the hand-over is then
    /// refused). A daemon whose state moves on by itself (a packager reading its ingest)
    /// stops moving it here, so that nothing happens after the capture that the replacement
    /// would not know.
    fn capture(&self) -> Result<Captured, String>;

    /// The replacement failed after [`Carry::capture`]: move on again.
    fn resume(&self) {}
}

/// The Unix socket a daemon offers its sockets on.
pub struct Offer {
    listener: UnixListener,
    path: PathBuf,
    /// Where a replacement binds until it serves: the path still leads to the old process
    /// until then, so that a replacement that fails leaves it reachable for the next try.
    pending: Option<PathBuf>,
    daemon: &'static str,
    /// How to start a replacement, read at start: a package upgrade replaces the file at the
    /// path, and the new binary is what must start.
    executable: PathBuf,
    args: Vec<OsString>,
}

impl Offer {
    /// Binds the offer of `daemon` at `path`; a `replacement` binds beside it, to move in by
    /// [`Offer::start`] once it serves.
    pub fn bind(path: &Path, replacement: bool, daemon: &'static str) -> std::io::Result<Self> {
        let executable = std::env::current_exe()?;
        let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
        if !args.iter().any(|a| a == "--take-over") {
            args.push("--take-over".into());
        }
        let (listener, pending) = if replacement {
            let mut pending = path.as_os_str().to_owned();
            pending.push(".new");
            let pending = PathBuf::from(pending);
            let _ = std::fs::remove_file(&pending);
            (UnixListener::bind(&pending)?, Some(pending))
        } else {
            // A file left by a process that is gone is in the way; a live one means another
            // process of the same daemon.
            if UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!(
                        "another {daemon} offers its sockets at {}: replace it (`{daemon} replace`, or start this one with --take-over)",
                        path.display()
                    ),
                ));
            }
            let _ = std::fs::remove_file(path);
            (UnixListener::bind(path)?, None)
        };
        Ok(Self {
            listener,
            path: path.to_owned(),
            pending,
            daemon,
            executable,
            args,
        })
    }

    /// Offers `offered` for as long as the process runs, with the state `carry` captures: the
    /// first replacement that says it serves ends the offer ([`Replacer::replaced`]); one that
    /// fails leaves this process serving, and the next may try.
    pub fn start(self, offered: Offered, carry: Arc<dyn Carry>) -> std::io::Result<Arc<Replacer>> {
        if let Some(pending) = &self.pending {
            // Atomically: the next replacement finds this process, never no one.
            std::fs::rename(pending, &self.path)?;
        }
        let daemon = self.daemon;
        info!(path = %self.path.display(), "offering the sockets to a replacement ({daemon} replace)");
        let (events, _) = broadcast::channel(16);
        let (replaced_tx, replaced) = watch::channel(None);
        let replacer = Arc::new(Replacer {
            daemon,
            executable: self.executable,
            args: self.args,
            events: events.clone(),
            replaced,
            one_at_a_time: tokio::sync::Mutex::new(()),
            held: std::sync::Mutex::new(None),
            hooks: std::sync::Mutex::new(Vec::new()),
        });
        let listener = self.listener;
        let holder = replacer.clone();
        std::thread::Builder::new()
            .name("handover".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    let stream = match stream {
                        Ok(s) => s,
                        Err(e) => {
                            warn!("hand-over socket: {e}");
                            continue;
                        }
                    };
                    let pid = super::peer_pid(&stream);
                    match hand_over(&stream, &offered, carry.as_ref()) {
                        Ok(()) => {
                            info!(pid, "the replacement serves: this {daemon} stops");
                            // Listeners stop accepting before `replace` is answered: whatever
                            // an operator sends next reaches the replacement.
                            for hook in holder
                                .hooks
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .iter()
                            {
                                hook();
                            }
                            // Closed by `release` or this process's exit: the replacement
                            // may wait for it ([`super::Inherited::serving_until_released`]).
                            *holder.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(stream);
                            if let Some(pid) = pid {
                                crate::systemd::main_pid(pid);
                            }
                            let _ = events.send(Event::Served(pid));
                            let _ = replaced_tx.send(Some(pid));
                            return;
                        }
                        Err(e) => {
                            carry.resume();
                            warn!(pid, "hand-over failed, still serving: {e}");
                            let _ = events.send(Event::Failed(pid, e.to_string()));
                        }
                    }
                }
            })?;
        Ok(replacer)
    }
}

fn hand_over(
    stream: &UnixStream,
    offered: &Offered,
    carry: &dyn Carry,
) -> Result<(), HandoverError> {
    let captured = carry.capture().map_err(HandoverError::Capture)?;
    let handover = Handover {
        sockets: offered.sockets.iter().map(|(n, _)| n.clone()).collect(),
        state: captured.state,
        payload: captured.payload,
    };
    let fds: Vec<BorrowedFd<'_>> = offered.sockets.iter().map(|(_, fd)| fd.as_fd()).collect();
    super::send(stream, &handover, &fds)?;
    stream.set_read_timeout(Some(REPLACEMENT_DEADLINE))?;
    super::wait_serving(stream)
}

/// What happened to a replacement.
#[derive(Debug, Clone)]
enum Event {
    /// It serves (the process, when the kernel said).
    Served(Option<u32>),
    /// The hand-over to it failed: why.
    Failed(Option<u32>, String),
    /// A replacement this process started exited: its status.
    Exited(u32, String),
}

/// Starts this daemon's replacement and tells when one serves.
pub struct Replacer {
    daemon: &'static str,
    executable: PathBuf,
    args: Vec<OsString>,
    events: broadcast::Sender<Event>,
    replaced: watch::Receiver<Option<Option<u32>>>,
    one_at_a_time: tokio::sync::Mutex<()>,
    /// The hand-over connection of the replacement that serves, until this process lets go.
    held: std::sync::Mutex<Option<UnixStream>>,
    /// Run the moment a replacement serves, before anyone is told.
    hooks: std::sync::Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

/// A replacement that serves.
#[derive(Debug, Clone, Copy)]
pub struct Replaced {
    pub pid: u32,
    /// From the command to its word that it serves.
    pub elapsed: Duration,
}

/// Why a replacement did not take over; this process serves on whatever happened.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    #[error("cannot start {executable}: {cause}")]
    Spawn {
        executable: PathBuf,
        cause: std::io::Error,
    },
    #[error("the replacement (pid {pid}) exited before it served ({status}); its log says why")]
    Exited { pid: u32, status: String },
    #[error("the hand-over to the replacement (pid {pid}) failed: {why}")]
    Failed { pid: u32, why: String },
    #[error("the replacement (pid {pid}) did not serve within {}s: stopped", REPLACEMENT_DEADLINE.as_secs())]
    Timeout { pid: u32 },
    #[error("this process was replaced already")]
    Gone,
}

impl Replacer {
    /// Resolves once a replacement serves (a replacement started here or by hand with
    /// `--take-over`), with its process id when known.
    pub async fn replaced(&self) -> Option<u32> {
        let mut replaced = self.replaced.clone();
        let pid = replaced
            .wait_for(Option::is_some)
            .await
            .map(|pid| pid.flatten());
        match pid {
            Ok(pid) => pid,
            // The offer ended without a replacement: this process serves on.
            Err(_) => std::future::pending().await,
        }
    }

    /// Runs `hook` the moment a replacement serves, before `replace` is answered and
    /// [`Replacer::replaced`] resolves: where a daemon stops accepting on the listeners it
    /// handed over, so that nothing sent after the answer reaches this process.
    pub fn on_served(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(hook));
    }

    /// Tells the replacement this process has let go of what it must not share (a speaker's
    /// BGP sessions); its exit does the same.
    pub fn release(&self) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Starts the binary this daemon was started from with the same arguments and
    /// `--take-over`, and waits until it serves (this process then stops by itself) or fails
    /// (this process serves on, and the replacement is stopped if it still runs).
    pub async fn replace(&self) -> Result<Replaced, ReplaceError> {
        let _one = self.one_at_a_time.lock().await;
        let replaced = self.replaced.borrow().is_some();
        if replaced {
            return Err(ReplaceError::Gone);
        }
        let mut events = self.events.subscribe();
        let started = Instant::now();
        let mut command = std::process::Command::new(&self.executable);
        // The watchdog is the replacement's own once it is the unit's main process.
        command.args(&self.args).env_remove("WATCHDOG_PID");
        let mut child = command.spawn().map_err(|cause| ReplaceError::Spawn {
            executable: self.executable.clone(),
            cause,
        })?;
        let pid = child.id();
        info!(pid, executable = %self.executable.display(), "started a replacement {}", self.daemon);
        // Watched (and reaped) by a thread of its own; stopped through its handle, never by
        // a process id that could be another's once it was reaped.
        let stop = Arc::new(AtomicBool::new(false));
        let (exited, stopping) = (self.events.clone(), stop.clone());
        std::thread::Builder::new()
            .name("replacement".into())
            .spawn(move || {
                let status = loop {
                    match child.try_wait() {
                        Ok(Some(status)) => break status.to_string(),
                        Ok(None) if stopping.load(Ordering::Relaxed) => {
                            let _ = child.kill();
                            break child
                                .wait()
                                .map_or_else(|e| e.to_string(), |s| s.to_string());
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                        Err(e) => break e.to_string(),
                    }
                };
                let _ = exited.send(Event::Exited(pid, status));
            })
            .map_err(|cause| ReplaceError::Spawn {
                executable: self.executable.clone(),
                cause,
            })?;
        let deadline = tokio::time::Instant::now() + REPLACEMENT_DEADLINE;
        let failure = loop {
            let event = match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => break ReplaceError::Timeout { pid },
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
                Ok(Err(broadcast::error::RecvError::Closed)) => break ReplaceError::Gone,
                Ok(Ok(event)) => event,
            };
            match event {
                Event::Served(Some(p)) if p == pid => {
                    return Ok(Replaced {
                        pid,
                        elapsed: started.elapsed(),
                    });
                }
                Event::Failed(Some(p), why) if p == pid => break ReplaceError::Failed { pid, why },
                Event::Exited(p, status) if p == pid => {
                    return Err(ReplaceError::Exited { pid, status });
                }
                // Another process took over meanwhile (by hand): this one is replaced.
                Event::Served(_) => return Err(ReplaceError::Gone),
                _ => continue,
            }
        };
        // Two processes must never both think they serve: a replacement that failed or is
        // late is stopped (this process serves on).
        stop.store(true, Ordering::Relaxed);
        warn!(pid, "replacement stopped: {failure}");
        Err(failure)
    }
}

/// Resolves once a replacement of this process serves ([`Replacer::replaced`]); never without
/// a replacer (no `handover` configured).
pub async fn replaced(replacer: Option<&Arc<Replacer>>) -> Option<u32> {
    match replacer {
        Some(r) => r.replaced().await,
        None => std::future::pending().await,
    }
}

/// Why `DAEMON replace` could not have the running daemon replaced.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("cannot reach the admin endpoint {admin}: {cause}")]
    Unreachable { admin: String, cause: String },
    #[error(
        "the running daemon offers no hand-over: set {key} (a Unix socket path) and restart it once"
    )]
    NoHandover { key: &'static str },
    #[error("{0}")]
    Refused(String),
}

/// `DAEMON replace`: asks the running daemon's admin endpoint to replace itself ([`route`]);
/// what it answered. `key` names the deployment key that enables the hand-over, for the
/// error when it is not set.
pub async fn ask(admin: &str, token: Option<&str>, key: &'static str) -> Result<String, AskError> {
    // The replacement may compile a full-size location database before it serves.
    let response = crate::http::request(
        crate::http::Method::POST,
        admin,
        "/replace",
        token,
        REPLACEMENT_DEADLINE + Duration::from_secs(30),
    )
    .await
    .map_err(|e| AskError::Unreachable {
        admin: admin.to_owned(),
        cause: e.to_string(),
    })?;
    match response.status {
        404 => Err(AskError::NoHandover { key }),
        _ if response.ok() => Ok(response.body),
        _ => Err(AskError::Refused(response.body.trim().to_owned())),
    }
}

/// `POST /replace`: starts the replacement and answers once it serves (with its process id
/// and the time it took) or failed (500, why; this process serves on). For the admin
/// endpoint's protected routes.
pub fn route(replacer: Arc<Replacer>) -> axum::Router {
    axum::Router::new().route(
        "/replace",
        axum::routing::post(move || async move {
            match replacer.replace().await {
                Ok(done) => (
                    axum::http::StatusCode::OK,
                    format!(
                        "replaced: pid {} serves, {} ms after the command; this process finishes what it has in flight and exits\n",
                        done.pid,
                        done.elapsed.as_millis()
                    ),
                ),
                Err(e) => (
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    format!("not replaced, still serving: {e}\n"),
                ),
            }
        }),
    )
}
