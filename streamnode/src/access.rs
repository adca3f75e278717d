//! Subscriber tokens at the node: a protected channel (`token = "PROFILE"`) answers only
//! requests with a valid token ([`tokens::Profile::check`]), and its playlists carry the
//! token on to the files they name (written into their URIs, or set as a cookie), so that a
//! player checked once at its playlist keeps playing. A refusal is a 403 (410 for an expired
//! secure link) saying why, counted by reason, and logged at most a few times a second.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use config::Deployment;
use config::token::TokenCarry;
use tokens::{Grant, Profile, Refusal, Request};

/// The protected channels of a node, with what their checks gave.
#[derive(Debug, Default)]
pub struct Access {
    by_channel: HashMap<String, Guarded>,
    /// Refusals logged in the current second, for [`LOG_PER_SECOND`].
    logged: AtomicU64,
}

#[derive(Debug)]
struct Guarded {
    profile: Profile,
    granted: AtomicU64,
    /// By [`Refusal::ALL`]'s order.
    refused: [AtomicU64; 7],
}

/// Refusals logged each second at most (a flood of forged tokens must not flood the log);
/// the counters have every one.
const LOG_PER_SECOND: u64 = 10;

/// What a request to a channel may do (when it is not refused).
pub enum Checked<'a> {
    /// The channel is not protected.
    Open,
    /// A valid token: serve, carrying it on.
    Granted(&'a Profile, Grant),
}

impl Access {
    /// The protected ones of `channels` (the node's), their profiles' keys read now.
    pub fn new<'a>(
        deployment: &Deployment,
        channels: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, tokens::KeyError> {
        let mut by_channel = HashMap::new();
        for name in channels {
            let Some(channel) = deployment.channels.iter().find(|c| c.name == name) else {
                continue;
            };
            let Some(config) = channel
                .token
                .as_deref()
                .and_then(|t| deployment.token_profile(t))
            else {
                continue;
            };
            by_channel.insert(
                name.to_owned(),
                Guarded {
                    profile: Profile::new(config)?,
                    granted: AtomicU64::new(0),
                    refused: Default::default(),
                },
            );
        }
        Ok(Self {
            by_channel,
            logged: AtomicU64::new(0),
        })
    }

    /// Checks a request for `channel` (the top-level name) at `path` (as sent); a refusal is
    /// the answer to send.
    pub fn check(
        &self,
        channel: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        client: IpAddr,
    ) -> Result<Checked<'_>, Refused> {
        let Some(guarded) = self.by_channel.get(channel) else {
            return Ok(Checked::Open);
        };
        let cookie = headers.get(header::COOKIE).and_then(|c| c.to_str().ok());
        let request = Request {
            path,
            query,
            cookie,
            client,
            now: tokens::now(),
        };
        match guarded.profile.check(&request) {
            Ok(grant) => {
                guarded.granted.fetch_add(1, Ordering::Relaxed);
                Ok(Checked::Granted(&guarded.profile, grant))
            }
            Err(refusal) => {
                let index = Refusal::ALL.iter().position(|r| *r == refusal).unwrap_or(0);
                guarded.refused[index].fetch_add(1, Ordering::Relaxed);
                self.log(channel, path, client, refusal);
                let status = StatusCode::from_u16(guarded.profile.status(refusal))
                    .unwrap_or(StatusCode::FORBIDDEN);
                Err(Refused { status, refusal })
            }
        }
    }

    fn log(&self, channel: &str, path: &str, client: IpAddr, refusal: Refusal) {
        let second = tokens::now();
        // The second in the high bits, the count logged in it in the low 16.
        let seen = self.logged.load(Ordering::Relaxed);
        let next = if seen >> 16 == second {
            seen + 1
        } else {
            second << 16
        };
        if self
            .logged
            .compare_exchange(seen, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
            && next & 0xffff < LOG_PER_SECOND
        {
            tracing::info!(channel, path, %client, reason = refusal.label(), "token refused");
        }
    }

    /// The query the edge adds to what it fetches of `channel` from a protected origin: a token
    /// of its own, minted now for the channel, valid five minutes.
    pub fn origin_query(&self, channel: &str) -> Option<String> {
        let profile = &self.by_channel.get(channel)?.profile;
        let acl = format!("/{channel}/*");
        let end = Some(tokens::now() + 300);
        let mint = match profile.kind() {
            config::token::TokenKind::EdgeAuth => tokens::Mint {
                acl: Some(&acl),
                end,
                ..tokens::Mint::default()
            },
            // A secure link signs one URI (and perhaps the address): the edge cannot make one
            // for every object it fetches ahead of time; its origin must trust it otherwise.
            config::token::TokenKind::SecureLink => return None,
        };
        profile.mint(&mint).ok().map(|m| m.query)
    }

    /// `(channel, result, count)` for every protected channel: `granted` and each refusal.
    pub fn counts(&self) -> Vec<(&str, &'static str, u64)> {
        let mut out = Vec::new();
        for (channel, g) in &self.by_channel {
            out.push((
                channel.as_str(),
                "granted",
                g.granted.load(Ordering::Relaxed),
            ));
            for (refusal, n) in Refusal::ALL.iter().zip(&g.refused) {
                out.push((channel.as_str(), refusal.label(), n.load(Ordering::Relaxed)));
            }
        }
        out.sort_unstable();
        out
    }
}

/// A request refused: answered with its status and why.
#[derive(Debug, Clone, Copy)]
pub struct Refused {
    status: StatusCode,
    refusal: Refusal,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (
            self.status,
            format!("token refused: {}\n", explain(self.refusal)),
        )
            .into_response()
    }
}

/// What a refused client is told: the reason, without anything about the keys.
fn explain(refusal: Refusal) -> &'static str {
    match refusal {
        Refusal::Missing => "no token (expected one in the query or a cookie)",
        Refusal::Malformed => "not a token",
        Refusal::NotYetValid => "not valid yet",
        Refusal::Expired => "expired",
        Refusal::WrongPath => "not valid for this path",
        Refusal::WrongAddress => "not valid for this client",
        Refusal::Forged => "signature does not match",
    }
}

impl Checked<'_> {
    /// The query parameters a token of the channel takes; none for an open channel.
    pub fn params(&self) -> Vec<&str> {
        match self {
            Checked::Granted(profile, _) => profile.params(),
            Checked::Open => Vec::new(),
        }
    }

    /// A playlist `text` served for `path` as this check allows: as it is for an open channel,
    /// else carrying the token on (every URI rewritten, or a cookie for the channel), with the
    /// response's cache headers: a playlist carrying a viewer's token is theirs alone.
    pub fn playlist(&self, text: String, path: &str, max_age: u32) -> Response {
        let public = [
            (
                header::CONTENT_TYPE,
                "application/vnd.apple.mpegurl".to_owned(),
            ),
            (header::CACHE_CONTROL, format!("max-age={max_age}")),
        ];
        let Checked::Granted(profile, grant) = self else {
            return (public, text).into_response();
        };
        let private = [
            (
                header::CONTENT_TYPE,
                "application/vnd.apple.mpegurl".to_owned(),
            ),
            (header::CACHE_CONTROL, format!("private, max-age={max_age}")),
        ];
        match profile.carry() {
            TokenCarry::Query => {
                let text = tokens::carry::playlist(&text, path, |p| grant.query_for(profile, p));
                (private, text).into_response()
            }
            TokenCarry::Cookie => {
                let channel_dir = match path.get(1..).and_then(|p| p.find('/')) {
                    Some(at) => &path[..=at + 1],
                    None => "/",
                };
                let pair = grant.query_for(profile, &format!("{channel_dir}index.m3u8"));
                let max_age = grant.expires().map_or(String::new(), |e| {
                    format!("; Max-Age={}", e.saturating_sub(tokens::now()))
                });
                let cookie = format!("{pair}; Path={channel_dir}; HttpOnly{max_age}");
                let mut response = (private, text).into_response();
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().insert(header::SET_COOKIE, value);
                }
                response
            }
        }
    }
}
