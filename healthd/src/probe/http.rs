//! A minimal HTTP/1.1 GET over hyper, for probes: status and body, with a deadline; over TLS
//! (rustls) for nodes that serve HTTPS, verified against a chosen CA.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

/// Where the system's trusted CAs are (Debian's ca-certificates), used when a check names no CA.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// An HTTP response as probes need it.
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub body: Bytes,
    /// Time from the request to the last body byte.
    pub elapsed: Duration,
}

/// Splits `http://HOST:PORT/PATH` (or `https://`) into the base and the path (`/` when none).
pub fn split(url: &str) -> Option<(&str, &str)> {
    let host_start = url.find("://")? + 3;
    let path_start = url[host_start..]
        .find('/')
        .map_or(url.len(), |i| host_start + i);
    let path = &url[path_start..];
    Some((&url[..path_start], if path.is_empty() { "/" } else { path }))
}

/// GETs `http://host:port/path` in clear text. Errors are the probe's failure detail.
pub async fn get(base: &str, path: &str, timeout: Duration) -> Result<Fetched, String> {
    Client::default().get(base, path, timeout).await
}

/// How probes talk to a node: clear text, or TLS too when the node serves HTTPS.
#[derive(Clone, Default)]
pub struct Client {
    tls: Option<Tls>,
    /// The address connections leave from (`probe_source`); the kernel's choice when `None`.
    source: Option<std::net::IpAddr>,
}

#[derive(Clone)]
struct Tls {
    connector: TlsConnector,
    /// The name the node's certificate must carry.
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("tls", &self.tls.as_ref().map(|t| t.server_name.to_str()))
            .field("source", &self.source)
            .finish()
    }
}

impl Client {
    /// A client for `https://` as well: the node's certificate must chain to a CA in `ca_file`
    /// (PEM), or to the system's CAs when there is none, and name `server_name` (the hostname
    /// viewers use, or the node's address).
    pub fn with_tls(ca_file: Option<&Path>, server_name: &str) -> Result<Self, String> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let path = ca_file.unwrap_or(Path::new(SYSTEM_ROOTS));
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: cannot read CA certificates: {e}", path.display()))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!("{}: no usable CA certificate", path.display()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|e| format!("{server_name:?} is not a name a certificate can carry: {e}"))?;
        Ok(Self {
            tls: Some(Tls {
                connector: TlsConnector::from(Arc::new(config)),
                server_name,
            }),
            source: None,
        })
    }

    /// The client with its connections leaving from `source` (when set).
    pub fn from_source(self, source: Option<std::net::IpAddr>) -> Self {
        Self { source, ..self }
    }

    /// GETs `BASE/path`, `BASE` being `http://HOST:PORT` or `https://HOST:PORT`.
    pub async fn get(&self, base: &str, path: &str, timeout: Duration) -> Result<Fetched, String> {
        tokio::time::timeout(timeout, self.fetch(base, path))
            .await
            .map_err(|_| format!("GET {path}: no answer within {}ms", timeout.as_millis()))?
    }

    async fn fetch(&self, base: &str, path: &str) -> Result<Fetched, String> {
        let started = std::time::Instant::now();
        let response = self.open(base, path).await?;
        collect(response, path, started).await
    }

    /// GETs `BASE/path` and returns the response with its body still to read (a stream), the
    /// head within `timeout`.
    pub async fn stream(
        &self,
        base: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        tokio::time::timeout(timeout, self.open(base, path))
            .await
            .map_err(|_| format!("GET {path}: no answer within {}ms", timeout.as_millis()))?
    }

    /// Connects (with TLS for `https://`) and sends `GET path`.
    async fn open(
        &self,
        base: &str,
        path: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let mut connection = self.connect(base).await?;
        connection.send(path).await
    }

    /// A connection to `BASE` (`http://HOST:PORT` or `https://HOST:PORT`), over TLS for
    /// `https://`.
    async fn connect(&self, base: &str) -> Result<Connection, String> {
        let (secure, host) = if let Some(host) = base.strip_prefix("https://") {
            (true, host)
        } else if let Some(host) = base.strip_prefix("http://") {
            (false, host)
        } else {
            return Err(format!(
                "unsupported URL {base:?}: expected http://HOST:PORT or https://HOST:PORT"
            ));
        };
        let host = host.trim_end_matches('/').to_owned();
        let stream = match self.source {
            None => tokio::net::TcpStream::connect(&host).await,
            Some(source) => connect_from(source, &host).await,
        }
        .map_err(|e| format!("connect {host}: {e}"))?;
        let _ = stream.set_nodelay(true);
        if !secure {
            return Connection::handshake(stream, host).await;
        }
        let Some(tls) = &self.tls else {
            return Err(format!("{base} is HTTPS but the check has no TLS settings"));
        };
        let stream = tls
            .connector
            .connect(tls.server_name.clone(), stream)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        Connection::handshake(stream, host).await
    }

    /// Requests to `base` that share one connection while it lasts, as a player's do.
    pub fn session(&self, base: &str) -> Session {
        Session {
            client: self.clone(),
            base: base.to_owned(),
            connection: None,
        }
    }
}

/// A TCP connection to `host` (`ADDR:PORT` or `NAME:PORT`) from `source`.
async fn connect_from(
    source: std::net::IpAddr,
    host: &str,
) -> std::io::Result<tokio::net::TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host(host).await? {
        if addr.is_ipv4() != source.is_ipv4() {
            continue;
        }
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        let bound = socket.bind(std::net::SocketAddr::new(source, 0));
        match bound {
            Ok(()) => match socket.connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(e),
            },
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot send from probe_source {source}: {e}"),
                ));
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("no address of the family of probe_source {source}"),
        )
    }))
}

/// One HTTP/1.1 connection.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: String,
}

impl Connection {
    async fn handshake<S>(stream: S, host: String) -> Result<Self, String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        tokio::spawn(connection);
        Ok(Self { sender, host })
    }

    /// Sends `GET path`; the response's body is still to read.
    async fn send(&mut self, path: &str) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::USER_AGENT, "healthd")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("bad request: {e}"))?;
        self.sender
            .send_request(request)
            .await
            .map_err(|e| format!("GET {path}: {e}"))
    }
}

/// Requests that share a connection (see [`Client::session`]).
pub struct Session {
    client: Client,
    base: String,
    connection: Option<Connection>,
}

impl Session {
    /// GETs `path`, on the session's connection while the server keeps it open.
    pub async fn get(&mut self, path: &str, timeout: Duration) -> Result<Fetched, String> {
        tokio::time::timeout(timeout, self.fetch(path))
            .await
            .map_err(|_| format!("GET {path}: no answer within {}ms", timeout.as_millis()))?
    }

    async fn fetch(&mut self, path: &str) -> Result<Fetched, String> {
        let reusable = match &mut self.connection {
            Some(c) => c.sender.ready().await.is_ok(),
            None => false,
        };
        if !reusable {
            self.connection = Some(self.client.connect(&self.base).await?);
        }
        let connection = self.connection.as_mut().expect("connected above");
        let started = std::time::Instant::now();
        let fetched = match connection.send(path).await {
            Ok(response) => collect(response, path, started).await,
            Err(e) => Err(e),
        };
        if fetched.is_err() {
            self.connection = None;
        }
        fetched
    }
}

/// Reads a whole response.
async fn collect(
    response: hyper::Response<hyper::body::Incoming>,
    path: &str,
    started: std::time::Instant,
) -> Result<Fetched, String> {
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("GET {path}: body: {e}"))?
        .to_bytes();
    Ok(Fetched {
        status,
        body,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_base_and_path() {
        assert_eq!(
            split("http://10.0.0.1:8080/status/stream"),
            Some(("http://10.0.0.1:8080", "/status/stream"))
        );
        assert_eq!(
            split("https://node.example:443"),
            Some(("https://node.example:443", "/"))
        );
        assert_eq!(split("node:8080/status"), None);
    }
}
