//! Subscriber tokens: how viewers prove to origins and edges that they may play a channel. The
//! middleware signs a token for each subscriber; a channel with `token = "PROFILE"` answers
//! only requests carrying a valid one.

use serde::{Deserialize, Serialize};

use crate::types::{HumanDuration, Secret};

/// A kind of token, its keys and how it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenProfile {
    /// Unique name, referred to by channels' `token`.
    pub name: String,
    /// The token's format.
    #[serde(default)]
    pub kind: TokenKind,
    /// The keys, newest first: the first signs what the nodes mint (tokens carried to segments,
    /// healthd's probes, `streamnode token`), and a token signed by any one of them is valid,
    /// so a key is rotated by putting the new one first and dropping the old one once every
    /// token signed with it has expired. `edge-auth` keys are hexadecimal, as Akamai's.
    pub keys: Vec<Secret>,
    /// The query parameter (and cookie) carrying the token; `hdnts` for `edge-auth`, `md5`
    /// for `secure-link`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// `edge-auth`: the HMAC's hash.
    #[serde(default)]
    pub algorithm: TokenAlgorithm,
    /// How far the middleware's clock may be from ours: a token is valid from its start minus
    /// this until its expiry plus this.
    #[serde(default = "default_clock_skew")]
    pub clock_skew: HumanDuration,
    /// How a playlist request's token reaches the files the playlist names.
    #[serde(default)]
    pub carry: TokenCarry,
    /// `secure-link`: the text whose MD5 is the token, as nginx's `secure_link_md5`, with
    /// `$secure_link_expires`, `$uri`, `$remote_addr` and `$secret` (the key) in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    /// `secure-link`: the query parameter holding the expiry (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_param: Option<String>,
}

impl TokenProfile {
    /// The query parameter (and cookie) carrying the token.
    pub fn param(&self) -> &str {
        match (&self.param, self.kind) {
            (Some(p), _) => p,
            (None, TokenKind::EdgeAuth) => "hdnts",
            (None, TokenKind::SecureLink) => "md5",
        }
    }

    /// `secure-link`: the query parameter holding the expiry.
    pub fn expires_param(&self) -> &str {
        self.expires_param.as_deref().unwrap_or("expires")
    }
}

/// A token's format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenKind {
    /// Akamai's EdgeAuth (Auth Token 2.0): `st=START~exp=END~acl=/news/*~id=SESSION~hmac=HEX`,
    /// an HMAC of the fields before it; the ACL lists paths separated by `!`, `*` matching
    /// anything.
    #[default]
    EdgeAuth,
    /// nginx's `secure_link`: the MD5 of `expression` (base64url, unpadded) and an expiry.
    SecureLink,
}

/// An `edge-auth` token's HMAC hash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenAlgorithm {
    #[default]
    Sha256,
    Sha1,
    Md5,
}

/// How a token travels from a playlist to the files it names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenCarry {
    /// Written into every URI of the playlists served (players follow them as they are).
    #[default]
    Query,
    /// Set as a cookie for the channel's path (players that send cookies, same origin).
    Cookie,
}

/// Thirty seconds: middleware clocks are NTP-synchronised, players' requests not instant.
fn default_clock_skew() -> HumanDuration {
    HumanDuration::from_secs(30)
}
