//! Probes: one module per kind, run against a node with the profile's timeout.

pub mod hls;
pub mod http;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use config::check::CheckProfile;
use config::{CheckKind, Node};

/// The result of one probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub ok: bool,
    /// Why it failed (or what it saw), for the log line of a state change.
    pub detail: String,
    pub latency: Duration,
}

/// Probes one node with one profile, remembering stream progress between rounds.
#[derive(Debug)]
pub struct Prober {
    profile: CheckProfile,
    /// Channels an `hls` probe plays.
    channels: Vec<String>,
    progress: HashMap<String, hls::Progress>,
    /// Token profiles of the protected channels, by channel.
    tokens: HashMap<String, tokens::Profile>,
    /// HTTP(S) client for `hls` and `http` probes and the status document.
    client: http::Client,
}

impl Prober {
    pub fn new(profile: CheckProfile, service_channels: Vec<String>) -> Self {
        let channels = profile
            .hls
            .as_ref()
            .and_then(|h| h.channels.clone())
            .unwrap_or(service_channels);
        Self {
            profile,
            channels,
            progress: HashMap::new(),
            tokens: HashMap::new(),
            client: http::Client::default(),
        }
    }

    /// Plays the channels in `tokens` with a token of their profile.
    pub fn with_tokens(mut self, tokens: HashMap<String, tokens::Profile>) -> Self {
        self.tokens = tokens;
        self
    }

    /// The path of `channel`'s playlist, with a token for the channel when it is protected:
    /// minted for this round, valid for ten minutes (the node carries it to the segments).
    fn playlist_path(&self, channel: &str) -> String {
        let path = format!("/{channel}/index.m3u8");
        let Some(profile) = self.tokens.get(channel) else {
            return path;
        };
        let now = tokens::now();
        let acl = format!("/{channel}/*");
        let edge_auth = profile.kind() == config::token::TokenKind::EdgeAuth;
        let minted = profile.mint(&tokens::Mint {
            acl: edge_auth.then_some(acl.as_str()),
            url: (!edge_auth).then_some(path.as_str()),
            end: Some(now + 600),
            ..tokens::Mint::default()
        });
        match minted {
            Ok(m) => format!("{path}?{}", m.query),
            // A profile that cannot mint plain tokens: the probe shows the refusal.
            Err(_) => path,
        }
    }

    /// Probes over HTTPS with `client` (for nodes that serve TLS).
    pub fn with_client(mut self, client: http::Client) -> Self {
        self.client = client;
        self
    }

    /// The HTTP(S) client probes use.
    pub fn client(&self) -> &http::Client {
        &self.client
    }

    pub fn profile(&self) -> &CheckProfile {
        &self.profile
    }

    /// The channels an `hls` probe plays (the profile's, else the node's services').
    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    /// Runs one probe against `node`, bounded by the profile's timeout.
    pub async fn probe(&mut self, node: &Node) -> Outcome {
        let started = Instant::now();
        let timeout = self.profile.timeout.get();
        let result = match tokio::time::timeout(timeout, self.run(node, timeout)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no result within {}ms", timeout.as_millis())),
        };
        let latency = started.elapsed();
        match result {
            Ok(detail) => Outcome {
                ok: true,
                detail,
                latency,
            },
            Err(detail) => Outcome {
                ok: false,
                detail,
                latency,
            },
        }
    }

    async fn run(&mut self, node: &Node, timeout: Duration) -> Result<String, String> {
        let base = node.base_url();
        match self.profile.kind {
            CheckKind::Hls => self.hls(&base, timeout).await,
            CheckKind::Http => {
                let http = self.profile.http.clone().unwrap_or_else(toml_default_http);
                let got = self.client.get(&base, &http.path, timeout).await?;
                if got.status != http.status {
                    return Err(format!(
                        "GET {} answered {}, expected {}",
                        http.path, got.status, http.status
                    ));
                }
                if let Some(needle) = &http.body_contains
                    && !String::from_utf8_lossy(&got.body).contains(needle.as_str())
                {
                    return Err(format!("GET {}: body lacks {needle:?}", http.path));
                }
                Ok(format!("GET {} {}", http.path, got.status))
            }
            CheckKind::Tcp => {
                let port = self
                    .profile
                    .tcp
                    .as_ref()
                    .and_then(|t| t.port)
                    .unwrap_or(node.listen.port());
                let addr = SocketAddr::new(node.reach().ip(), port);
                tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("connect {addr}: {e}"))?;
                Ok(format!("connected to {addr}"))
            }
            CheckKind::Exec => {
                let Some(exec) = &self.profile.exec else {
                    return Err("exec check without a command".into());
                };
                let (program, args) = exec
                    .command
                    .split_first()
                    .ok_or("exec check without a command")?;
                let status = tokio::process::Command::new(program)
                    .args(args)
                    .env("NODE_NAME", &node.name)
                    .env("NODE_ADDR", node.reach().ip().to_string())
                    .kill_on_drop(true)
                    .status()
                    .await
                    .map_err(|e| format!("cannot run {program}: {e}"))?;
                if status.success() {
                    Ok(format!("{program} exited 0"))
                } else {
                    Err(format!("{program} exited with {status}"))
                }
            }
            CheckKind::Dns => {
                let Some(dns) = &self.profile.dns else {
                    return Err("dns check without a name".into());
                };
                let addr = SocketAddr::new(node.reach().ip(), dns.port.unwrap_or(53));
                query(addr, &dns.name, &dns.qtype).await
            }
        }
    }

    async fn hls(&mut self, base: &str, timeout: Duration) -> Result<String, String> {
        let settings = self.profile.hls.clone();
        let factor = settings.as_ref().map_or(1.5, |h| h.max_stall_factor);
        let min_speed = settings.as_ref().map_or(1.0, |h| h.min_speed);
        if self.channels.is_empty() {
            return Err(
                "hls check without channels: list them in the service or the profile".into(),
            );
        }
        // One connection for the whole round, as a player keeps one.
        let mut session = self.client.session(base);
        let mut playlists = 0;
        for channel in self.channels.clone() {
            let path = self.playlist_path(&channel);
            let (text, playlist) = self.fetch_playlist(&mut session, &path, timeout).await?;
            match hls::parse_master(&text) {
                Some(variants) => {
                    // A steered master lists each rendition once per site, by absolute URL:
                    // the same paths on this node, probed once each.
                    let mut paths: Vec<String> = variants
                        .iter()
                        .map(|uri| hls::resolve(&path, uri))
                        .collect();
                    let mut seen = std::collections::HashSet::new();
                    paths.retain(|p| seen.insert(p.clone()));
                    for variant in paths {
                        let (_, media) =
                            self.fetch_playlist(&mut session, &variant, timeout).await?;
                        let media = media.ok_or_else(|| {
                            format!("{variant} (in {path}) is not a media playlist")
                        })?;
                        self.check_media(
                            &mut session,
                            &variant,
                            &media,
                            timeout,
                            factor,
                            min_speed,
                        )
                        .await?;
                        playlists += 1;
                    }
                }
                None => {
                    let media = playlist.ok_or_else(|| format!("{path} is not an HLS playlist"))?;
                    self.check_media(&mut session, &path, &media, timeout, factor, min_speed)
                        .await?;
                    playlists += 1;
                }
            }
        }
        Ok(format!(
            "{} channel(s) live, {playlists} media playlist(s)",
            self.channels.len()
        ))
    }

    /// GETs a playlist: its text, and the media playlist it is if it is one.
    async fn fetch_playlist(
        &mut self,
        session: &mut http::Session,
        path: &str,
        timeout: Duration,
    ) -> Result<(String, Option<hls::Playlist>), String> {
        let got = session.get(path, timeout).await?;
        if got.status != 200 {
            return Err(format!("GET {path} answered {}", got.status));
        }
        let text = String::from_utf8_lossy(&got.body).into_owned();
        let playlist = hls::parse_playlist(&text);
        Ok((text, playlist))
    }

    /// Checks one media playlist at `path`: it advances, and its newest segment is MPEG-TS
    /// that arrives fast enough.
    async fn check_media(
        &mut self,
        session: &mut http::Session,
        path: &str,
        playlist: &hls::Playlist,
        timeout: Duration,
        factor: f64,
        min_speed: f64,
    ) -> Result<(), String> {
        self.progress
            .entry(path.to_owned())
            .or_default()
            .check(playlist, factor, Instant::now())
            .map_err(|e| format!("{path}: {e}"))?;
        let (uri, duration) = playlist
            .newest
            .clone()
            .ok_or_else(|| format!("{path} lists no segment"))?;
        let segment = hls::resolve(path, &uri);
        let seg = session.get(&segment, timeout).await?;
        if seg.status != 200 {
            return Err(format!("GET {segment} answered {}", seg.status));
        }
        hls::check_segment(&seg.body, seg.elapsed, duration, min_speed)
    }
}

/// The `[http]` defaults of a profile that has none.
fn toml_default_http() -> config::check::HttpCheck {
    config::check::HttpCheck {
        path: "/healthz".into(),
        status: 200,
        body_contains: None,
        ca_file: None,
    }
}

/// The `dns` probe: one query, success when the server answers NOERROR.
async fn query(server: SocketAddr, name: &str, qtype: &str) -> Result<String, String> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};
    let rtype: RecordType = qtype
        .parse()
        .map_err(|_| format!("unknown query type {qtype}"))?;
    let qname = Name::from_ascii(name).map_err(|e| format!("invalid name {name}: {e}"))?;
    let id = (std::process::id() as u16) ^ (Instant::now().elapsed().subsec_nanos() as u16);
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(qname, rtype));
    let bytes = message.to_vec().map_err(|e| e.to_string())?;
    let bind = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| e.to_string())?;
    socket
        .send_to(&bytes, server)
        .await
        .map_err(|e| format!("query {server}: {e}"))?;
    let mut buf = [0u8; 4096];
    loop {
        let (n, from) = socket
            .recv_from(&mut buf)
            .await
            .map_err(|e| format!("query {server}: {e}"))?;
        let Ok(reply) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if from != server || reply.metadata.id != id {
            continue;
        }
        return match reply.metadata.response_code {
            ResponseCode::NoError => Ok(format!("{name} {qtype}: {} answers", reply.answers.len())),
            other => Err(format!("{name} {qtype}: {other}")),
        };
    }
}
