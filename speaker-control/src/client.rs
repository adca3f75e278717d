//! A client of the control API (the CLI, healthd, the lab). Every call has a deadline: a
//! speaker that stops answering costs its caller that long, never more.

use std::time::Duration;

use config::types::ControlEndpoint;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::timeout;

use crate::{Envelope, Op, Reply};

/// A deadline that suits an interactive call and healthd's rounds alike.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "cannot connect to the speaker's control endpoint {endpoint}: {cause} (is bgp-speaker running for this site?)"
    )]
    Connect {
        endpoint: String,
        cause: std::io::Error,
    },
    #[error("control connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the speaker did not answer within {0:?}")]
    Timeout(Duration),
    #[error("bad answer from the speaker: {0}")]
    Protocol(String),
}

/// One connection to the control API.
pub struct Client {
    reader: BufReader<Box<dyn AsyncRead + Unpin + Send>>,
    writer: Box<dyn AsyncWrite + Unpin + Send>,
    token: Option<String>,
    deadline: Duration,
    line: String,
}

impl Client {
    /// Connects within `deadline`, which then bounds every call.
    pub async fn connect(
        endpoint: &ControlEndpoint,
        token: Option<String>,
        deadline: Duration,
    ) -> Result<Self, ControlError> {
        let connect_err = |cause| ControlError::Connect {
            endpoint: endpoint.to_string(),
            cause,
        };
        let timed_out = || {
            connect_err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {deadline:?}"),
            ))
        };
        let (reader, writer): (
            Box<dyn AsyncRead + Unpin + Send>,
            Box<dyn AsyncWrite + Unpin + Send>,
        ) = match endpoint {
            ControlEndpoint::Unix(path) => {
                let stream = timeout(deadline, UnixStream::connect(path))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(connect_err)?;
                let (r, w) = stream.into_split();
                (Box::new(r), Box::new(w))
            }
            ControlEndpoint::Tcp(addr) => {
                let stream = timeout(deadline, TcpStream::connect(addr))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(connect_err)?;
                let (r, w) = stream.into_split();
                (Box::new(r), Box::new(w))
            }
        };
        Ok(Self {
            reader: BufReader::new(reader),
            writer,
            token,
            deadline,
            line: String::new(),
        })
    }

    /// Sends `op` and reads its one-line answer (route streams: [`Client::routes`]).
    pub async fn call(&mut self, op: Op) -> Result<Reply, ControlError> {
        if op.streams_routes() {
            return Err(ControlError::Protocol(
                "this request answers with a route stream: use Client::routes".into(),
            ));
        }
        self.send(op).await?;
        self.next_reply().await
    }

    /// Sends a route-stream request (`routes`, `advertised`, `received`) and hands each route
    /// line to `on_route` ([`Reply::Route`] or [`Reply::PeerRoute`]); the route count, or the
    /// speaker's error.
    pub async fn routes(
        &mut self,
        op: Op,
        mut on_route: impl FnMut(Reply),
    ) -> Result<Result<usize, String>, ControlError> {
        self.send(op).await?;
        loop {
            match self.next_reply().await? {
                route @ (Reply::Route(_) | Reply::PeerRoute(_)) => on_route(route),
                Reply::RoutesEnd { routes } => return Ok(Ok(routes)),
                Reply::Error(e) => return Ok(Err(e)),
                other => {
                    return Err(ControlError::Protocol(format!(
                        "expected routes, got {other:?}"
                    )));
                }
            }
        }
    }

    async fn send(&mut self, op: Op) -> Result<(), ControlError> {
        let mut text = serde_json::to_string(&Envelope {
            token: self.token.clone(),
            op,
        })
        .map_err(|e| ControlError::Protocol(e.to_string()))?;
        text.push('\n');
        timeout(self.deadline, self.writer.write_all(text.as_bytes()))
            .await
            .map_err(|_| ControlError::Timeout(self.deadline))??;
        Ok(())
    }

    async fn next_reply(&mut self) -> Result<Reply, ControlError> {
        self.line.clear();
        let read = timeout(self.deadline, self.reader.read_line(&mut self.line))
            .await
            .map_err(|_| ControlError::Timeout(self.deadline))??;
        if read == 0 {
            return Err(ControlError::Protocol(
                "speaker closed the connection".into(),
            ));
        }
        serde_json::from_str(&self.line)
            .map_err(|e| ControlError::Protocol(format!("{e}: {}", self.line.trim())))
    }
}
