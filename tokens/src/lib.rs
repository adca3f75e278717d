//! Subscriber tokens: the proof a viewer's request carries that the middleware let it play a
//! channel. Two formats, as existing middleware mints them:
//!
//! - [`edge_auth`]: Akamai's EdgeAuth (Auth Token 2.0), an HMAC over `st`, `exp`, `acl` (or
//!   the URL), `ip`, `id` and `data` fields, keyed by a hexadecimal secret;
//! - [`secure_link`]: nginx's `secure_link`, the MD5 of an expression with an expiry.
//!
//! A [`Profile`] is a `[[tokens]]` table with its keys read: it checks a request
//! ([`Profile::check`]), mints tokens ([`Profile::mint`]: `streamnode token`, healthd's
//! probes), and carries a valid playlist token to the files the playlist names
//! ([`Grant::query_for`], [`carry::playlist`]). Origins and edges share it.
//!
//! Nothing here panics on what a client sends: every malformed token is a [`Refusal`].

pub mod carry;
pub mod edge_auth;
pub mod fuzzing;
mod glob;
pub mod secure_link;
mod wire;

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use config::token::{TokenCarry, TokenKind, TokenProfile};

/// A profile whose keys were read.
#[derive(Clone)]
pub struct Profile {
    name: String,
    param: String,
    carry: TokenCarry,
    /// Seconds of clock difference tolerated.
    skew: u64,
    format: Format,
}

#[derive(Clone)]
enum Format {
    EdgeAuth(edge_auth::Signer),
    SecureLink(secure_link::Signer),
}

impl std::fmt::Debug for Profile {
    // Never the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("name", &self.name)
            .field("param", &self.param)
            .finish_non_exhaustive()
    }
}

/// A profile's keys could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("tokens {profile:?}: key {index}: {cause}")]
    Read {
        profile: String,
        index: usize,
        cause: config::types::SecretError,
    },
    #[error(
        "tokens {profile:?}: key {index} is not an even number of hexadecimal digits: EdgeAuth keys are hexadecimal, as Akamai's (`openssl rand -hex 32` makes one)"
    )]
    NotHex { profile: String, index: usize },
    #[error("tokens {profile:?}: key {index} is empty")]
    Empty { profile: String, index: usize },
    #[error("tokens {profile:?}: no key")]
    NoKey { profile: String },
}

/// Why a request's token was refused. Every refusal is a 403 (an expired `secure-link`, 410,
/// as nginx answers), never a 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token in the query or the cookie.
    Missing,
    /// Not a token of the profile's format.
    Malformed,
    /// Its start is still ahead (beyond the clock skew).
    NotYetValid,
    /// Its expiry has passed (beyond the clock skew).
    Expired,
    /// Its ACL does not cover the path asked for.
    WrongPath,
    /// It is bound to another client address.
    WrongAddress,
    /// No key signs it so: forged, tampered with, signed with a retired key, or (a URL token)
    /// for another URL.
    Forged,
}

impl Refusal {
    /// The label in metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::NotYetValid => "not_yet_valid",
            Self::Expired => "expired",
            Self::WrongPath => "wrong_path",
            Self::WrongAddress => "wrong_address",
            Self::Forged => "forged",
        }
    }

    pub const ALL: [Self; 7] = [
        Self::Missing,
        Self::Malformed,
        Self::NotYetValid,
        Self::Expired,
        Self::WrongPath,
        Self::WrongAddress,
        Self::Forged,
    ];
}

/// What a request shows: its path (as sent, not decoded), its query string and `Cookie`
/// header, the client's address, and the time.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub cookie: Option<&'a str>,
    pub client: IpAddr,
    /// Unix seconds.
    pub now: u64,
}

/// A valid token, and what is needed to carry it on.
#[derive(Debug, Clone)]
pub struct Grant {
    inner: GrantInner,
}

#[derive(Debug, Clone)]
enum GrantInner {
    EdgeAuth(edge_auth::Token),
    SecureLink {
        expires: Option<u64>,
        client: IpAddr,
    },
}

impl Grant {
    /// Unix seconds after which the token is no longer valid, if it expires.
    pub fn expires(&self) -> Option<u64> {
        match &self.inner {
            GrantInner::EdgeAuth(t) => Some(t.end),
            GrantInner::SecureLink { expires, .. } => *expires,
        }
    }

    /// The query string (`NAME=VALUE`, encoded) to add to a URI naming `path` so that the
    /// request for it is valid for as long as this one's token: the token itself where it
    /// already covers `path`, else one minted with `profile`'s first key for `path`'s directory
    /// (EdgeAuth) or for `path` (secure link), with the same expiry, session and address.
    pub fn query_for(&self, profile: &Profile, path: &str) -> String {
        match (&self.inner, &profile.format) {
            (GrantInner::EdgeAuth(token), Format::EdgeAuth(signer)) => {
                let text = if token.covers(path) {
                    token.text.clone()
                } else {
                    signer.derived(token, &directory_acl(path))
                };
                wire::pair(&profile.param, &text)
            }
            (GrantInner::SecureLink { expires, client }, Format::SecureLink(signer)) => {
                signer.query(&profile.param, path, *client, *expires)
            }
            // A grant is only ever made by the profile carrying it on.
            _ => String::new(),
        }
    }
}

/// `/news/360p/*` for `/news/360p/seg1.ts`.
fn directory_acl(path: &str) -> String {
    match path.rfind('/') {
        Some(at) => format!("{}/*", &path[..at]),
        None => "/*".to_owned(),
    }
}

/// What to mint.
#[derive(Debug, Clone, Default)]
pub struct Mint<'a> {
    /// EdgeAuth: the ACL (paths with `*`, separated by `!`).
    pub acl: Option<&'a str>,
    /// EdgeAuth: a URL token's path instead of an ACL; secure link: the URI signed.
    pub url: Option<&'a str>,
    /// Unix seconds the token starts at.
    pub start: Option<u64>,
    /// Unix seconds the token expires at (secure link: none, never).
    pub end: Option<u64>,
    /// The client address the token is bound to.
    pub ip: Option<IpAddr>,
    /// EdgeAuth: a session id.
    pub id: Option<&'a str>,
    /// EdgeAuth: opaque data.
    pub data: Option<&'a str>,
}

/// A token could not be minted as asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MintError {
    #[error(
        "an EdgeAuth token needs an ACL (--acl '/news/*') or a URL (--url /news/index.m3u8), not both"
    )]
    AclOrUrl,
    #[error("an EdgeAuth token needs an expiry")]
    NoExpiry,
    #[error("the token would expire at {end}, not after its start {start}")]
    EndBeforeStart { start: u64, end: u64 },
    #[error("a secure link signs one URI: expected --url PATH")]
    NoUri,
    #[error("the expression signs $remote_addr: expected the client's address (--ip)")]
    NoAddress,
    #[error("{0:?} cannot be in a token field: '~' separates fields")]
    Delimiter(String),
}

impl Profile {
    /// The profile `config` describes, its keys read now.
    pub fn new(config: &TokenProfile) -> Result<Self, KeyError> {
        let keys = config
            .keys
            .iter()
            .enumerate()
            .map(|(index, secret)| {
                secret.resolve().map_err(|cause| KeyError::Read {
                    profile: config.name.clone(),
                    index,
                    cause,
                })
            })
            .collect::<Result<Vec<String>, KeyError>>()?;
        Self::with_keys(config, &keys)
    }

    /// The profile `config` describes with `keys` (as its key files or variables hold them)
    /// instead of its own.
    pub fn with_keys(config: &TokenProfile, texts: &[String]) -> Result<Self, KeyError> {
        let profile = config.name.clone();
        let mut keys = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            let text = text.trim();
            if text.is_empty() {
                return Err(KeyError::Empty { profile, index });
            }
            let key = match config.kind {
                TokenKind::EdgeAuth => hex::decode(text).map_err(|_| KeyError::NotHex {
                    profile: profile.clone(),
                    index,
                })?,
                TokenKind::SecureLink => text.as_bytes().to_vec(),
            };
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(KeyError::NoKey { profile });
        }
        let format = match config.kind {
            TokenKind::EdgeAuth => Format::EdgeAuth(edge_auth::Signer::new(config.algorithm, keys)),
            TokenKind::SecureLink => Format::SecureLink(secure_link::Signer::new(
                config.expression.as_deref().unwrap_or_default(),
                config.expires_param(),
                keys,
            )),
        };
        Ok(Self {
            name: profile,
            param: config.param().to_owned(),
            carry: config.carry,
            skew: config.clock_skew.get().as_secs(),
            format,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The query parameters a token of this profile takes (the token, and a secure link's
    /// expiry).
    pub fn params(&self) -> Vec<&str> {
        match &self.format {
            Format::EdgeAuth(_) => vec![self.param.as_str()],
            Format::SecureLink(signer) => vec![self.param.as_str(), signer.expires_param()],
        }
    }

    /// The token's format.
    pub fn kind(&self) -> TokenKind {
        match self.format {
            Format::EdgeAuth(_) => TokenKind::EdgeAuth,
            Format::SecureLink(_) => TokenKind::SecureLink,
        }
    }

    /// The query parameter and cookie carrying the token.
    pub fn param(&self) -> &str {
        &self.param
    }

    /// The HTTP status answering `refusal`: 403, but 410 for an expired secure link (as
    /// nginx answers, and middleware written for it expects).
    pub fn status(&self, refusal: Refusal) -> u16 {
        match (&self.format, refusal) {
            (Format::SecureLink(_), Refusal::Expired) => 410,
            _ => 403,
        }
    }

    /// How a playlist's token reaches the files it names.
    pub fn carry(&self) -> TokenCarry {
        self.carry
    }

    /// Whether `request` carries a valid token for its path.
    pub fn check(&self, request: &Request<'_>) -> Result<Grant, Refusal> {
        match &self.format {
            Format::EdgeAuth(signer) => {
                let text = wire::find(request.query, request.cookie, &self.param)
                    .ok_or(Refusal::Missing)?;
                let token = signer.check(&text, request, self.skew)?;
                Ok(Grant {
                    inner: GrantInner::EdgeAuth(token),
                })
            }
            Format::SecureLink(signer) => {
                let expires = signer.check(&self.param, request, self.skew)?;
                Ok(Grant {
                    inner: GrantInner::SecureLink {
                        expires,
                        client: request.client,
                    },
                })
            }
        }
    }

    /// A token as `mint` says, signed with the first key: the query parameters to add to a
    /// URL (`hdnts=...`, or `md5=...&expires=...`), and the bare token.
    pub fn mint(&self, mint: &Mint<'_>) -> Result<Minted, MintError> {
        match &self.format {
            Format::EdgeAuth(signer) => {
                let token = signer.mint(mint)?;
                Ok(Minted {
                    query: wire::pair(&self.param, &token),
                    token,
                })
            }
            Format::SecureLink(signer) => {
                let uri = mint.url.ok_or(MintError::NoUri)?;
                if signer.binds_address() && mint.ip.is_none() {
                    return Err(MintError::NoAddress);
                }
                let client = mint.ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
                let query = signer.query(&self.param, uri, client, mint.end);
                Ok(Minted {
                    token: signer.digest(uri, client, mint.end),
                    query,
                })
            }
        }
    }
}

/// A minted token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    /// The token as it goes in its parameter.
    pub token: String,
    /// The query parameters to add to a URL.
    pub query: String,
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
