//! Fuzz targets: what a client sends, through the token checks and the carrying rewrite. Run
//! bounded in CI (`tests/fuzz.rs`) and coverage-guided by `cargo fuzz` (`fuzz/`).

use std::net::IpAddr;
use std::sync::OnceLock;

use config::HumanDuration;
use config::token::{TokenKind, TokenProfile};

use crate::{Mint, Profile, Request};

/// The time the targets check at.
pub const NOW: u64 = 1_800_000_000;

/// An EdgeAuth and a secure-link profile with fixed keys.
pub fn profiles() -> &'static [Profile; 2] {
    static PROFILES: OnceLock<[Profile; 2]> = OnceLock::new();
    PROFILES.get_or_init(|| {
        [TokenKind::EdgeAuth, TokenKind::SecureLink].map(|kind| {
            let config = TokenProfile {
                name: "fuzz".into(),
                kind,
                keys: Vec::new(),
                param: None,
                algorithm: Default::default(),
                clock_skew: HumanDuration::from_secs(30),
                carry: Default::default(),
                expression: (kind == TokenKind::SecureLink)
                    .then(|| "$secure_link_expires$uri$remote_addr $secret".to_owned()),
                expires_param: None,
            };
            match Profile::with_keys(&config, &["a1b2c3d4e5f6".to_owned()]) {
                Ok(p) => p,
                Err(e) => panic!("fixed keys: {e}"),
            }
        })
    })
}

/// The client the targets' requests come from.
pub fn client() -> IpAddr {
    IpAddr::from([192, 0, 2, 7])
}

/// A valid token of `profile` for `/news/index.m3u8`, as query parameters: a seed.
pub fn valid_query(profile: &Profile) -> String {
    let edge_auth = profile.kind() == TokenKind::EdgeAuth;
    profile
        .mint(&Mint {
            acl: edge_auth.then_some("/news/*"),
            url: (!edge_auth).then_some("/news/index.m3u8"),
            start: Some(NOW - 10),
            end: Some(NOW + 60),
            ip: Some(client()),
            id: edge_auth.then_some("s1"),
            ..Mint::default()
        })
        .map(|m| m.query)
        .unwrap_or_default()
}

/// `data` as a query string and as a cookie, through both profiles' checks; a granted token,
/// carried to a segment, is granted there too.
pub fn request(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for profile in profiles() {
        for (query, cookie) in [(Some(&*text), None), (None, Some(&*text))] {
            let request = Request {
                path: "/news/index.m3u8",
                query,
                cookie,
                client: client(),
                now: NOW,
            };
            if let Ok(grant) = profile.check(&request) {
                let carried = grant.query_for(profile, "/news/seg1.ts");
                let next = Request {
                    path: "/news/seg1.ts",
                    query: Some(&carried),
                    ..request
                };
                assert!(
                    profile.check(&next).is_ok(),
                    "{text:?} granted, but carried as {carried:?} refused"
                );
            }
        }
    }
}

/// `data` as a playlist through the carrying rewrite: every line stays a line.
pub fn playlist(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for path in ["/news/index.m3u8", "", "/", "index.m3u8"] {
        let out = crate::carry::playlist(&text, path, |p| format!("t={p}"));
        assert_eq!(
            out.split_inclusive('\n').count(),
            text.split_inclusive('\n').count(),
            "{text:?}"
        );
    }
}
