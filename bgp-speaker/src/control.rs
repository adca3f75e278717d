//! The local control API: one JSON object per line in each direction, over a unix socket
//! (protected by its file mode) or a loopback TCP port (protected by a token).
//!
//! ```text
//! → {"op":"announce","prefixes":["198.51.100.0/24"],"service":"live","lease_ms":3000,
//!    "attrs":{"communities":["65000:100"],"prepend":1}}
//! ← {"changed":{"change":"added","routes":1}}
//! ```

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use config::types::ControlEndpoint;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tracing::{debug, warn};

use crate::speaker::{Op, Reply, SpeakerHandle};

/// A request line: the operation and, on TCP, the token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(flatten)]
    pub op: Op,
}

/// Longest request line accepted; anything longer is refused, not buffered.
const MAX_LINE: usize = 8 * 1024 * 1024;

/// Why the control API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot listen on control endpoint {endpoint}: {cause}")]
    Listen {
        endpoint: String,
        cause: std::io::Error,
    },
    #[error(
        "cannot connect to the speaker's control endpoint {endpoint}: {cause} (is bgp-speaker running for this site?)"
    )]
    Connect {
        endpoint: String,
        cause: std::io::Error,
    },
    #[error("control connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad answer from the speaker: {0}")]
    Protocol(String),
}

/// Serves the control API until the returned server is dropped.
pub async fn serve(
    endpoint: &ControlEndpoint,
    token: Option<String>,
    speaker: SpeakerHandle,
) -> Result<ControlServer, ControlError> {
    let listen_err = |cause| ControlError::Listen {
        endpoint: endpoint.to_string(),
        cause,
    };
    match endpoint {
        ControlEndpoint::Unix(path) => {
            prepare_socket_path(path).map_err(listen_err)?;
            let listener = UnixListener::bind(path).map_err(listen_err)?;
            // Only the owner (root or the speaker's user) may talk to the speaker.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(listen_err)?;
            let inode = {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata(path).map_err(listen_err)?.ino()
            };
            let task = tokio::spawn(async move {
                loop {
                    match listener.accept().await {
                        // File permissions are the authentication on a unix socket.
                        Ok((stream, _)) => {
                            drop(tokio::spawn(session(stream, None, speaker.clone())))
                        }
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
            let listener = TcpListener::bind(addr).await.map_err(listen_err)?;
            let task = tokio::spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((stream, _)) => drop(tokio::spawn(session(
                            stream,
                            token.clone(),
                            speaker.clone(),
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
) {
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        let mut limited = (&mut lines).take(MAX_LINE as u64);
        match limited.read_line(&mut line).await {
            Ok(0) => return,
            Ok(_) if !line.ends_with('\n') && line.len() >= MAX_LINE => {
                let _ = reply(
                    &mut write,
                    &Reply::Error(format!("request longer than {MAX_LINE} bytes")),
                )
                .await;
                return;
            }
            Ok(_) => {}
            Err(e) => {
                debug!("control read failed: {e}");
                return;
            }
        }
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Envelope>(&line) {
            Err(e) => Reply::Error(format!("bad request: {e}")),
            Ok(envelope) if token.is_some() && envelope.token != token => {
                Reply::Error("bad or missing token".into())
            }
            Ok(envelope) => speaker.ask(envelope.op).await,
        };
        if reply(&mut write, &answer).await.is_err() {
            return;
        }
    }
}

async fn reply<W: AsyncWrite + Unpin>(write: &mut W, answer: &Reply) -> std::io::Result<()> {
    let mut text =
        serde_json::to_string(answer).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    text.push('\n');
    write.write_all(text.as_bytes()).await
}

/// A client of the control API (the CLI, healthd).
pub struct Client {
    reader: BufReader<Box<dyn AsyncRead + Unpin + Send>>,
    writer: Box<dyn AsyncWrite + Unpin + Send>,
    token: Option<String>,
}

impl Client {
    pub async fn connect(
        endpoint: &ControlEndpoint,
        token: Option<String>,
    ) -> Result<Self, ControlError> {
        let connect_err = |cause| ControlError::Connect {
            endpoint: endpoint.to_string(),
            cause,
        };
        let (reader, writer): (
            Box<dyn AsyncRead + Unpin + Send>,
            Box<dyn AsyncWrite + Unpin + Send>,
        ) = match endpoint {
            ControlEndpoint::Unix(path) => {
                let (r, w) = UnixStream::connect(path)
                    .await
                    .map_err(connect_err)?
                    .into_split();
                (Box::new(r), Box::new(w))
            }
            ControlEndpoint::Tcp(addr) => {
                let (r, w) = TcpStream::connect(addr)
                    .await
                    .map_err(connect_err)?
                    .into_split();
                (Box::new(r), Box::new(w))
            }
        };
        Ok(Self {
            reader: BufReader::new(reader),
            writer,
            token,
        })
    }

    pub async fn call(&mut self, op: Op) -> Result<Reply, ControlError> {
        let mut text = serde_json::to_string(&Envelope {
            token: self.token.clone(),
            op,
        })
        .map_err(|e| ControlError::Protocol(e.to_string()))?;
        text.push('\n');
        self.writer.write_all(text.as_bytes()).await?;
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            return Err(ControlError::Protocol(
                "speaker closed the connection".into(),
            ));
        }
        serde_json::from_str(&line).map_err(|e| ControlError::Protocol(format!("{e}: {line}")))
    }
}
