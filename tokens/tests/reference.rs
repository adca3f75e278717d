//! Our EdgeAuth tokens against Akamai's reference implementation (`akamai-edgeauth` from
//! PyPI): for every kind of token, the reference's validates here and ours is the same string.

use config::token::{TokenAlgorithm, TokenProfile};
use config::types::Secret;
use testkit::edgeauth::Ask;
use tokens::{Mint, Profile, Refusal, Request};

const KEY: &str = "5e2f1c0a9b8d7e6f00112233445566778899aabbccddeeff";
const NOW: u64 = 1_800_000_000;

fn profile(algorithm: TokenAlgorithm, key: &str) -> Profile {
    let config = TokenProfile {
        name: "subscribers".into(),
        kind: Default::default(),
        keys: vec![Secret::from_env("TOKEN_KEY")],
        param: None,
        algorithm,
        clock_skew: config::HumanDuration::from_secs(0),
        carry: Default::default(),
        expression: None,
        expires_param: None,
    };
    Profile::with_keys(&config, &[key.to_owned()]).unwrap()
}

fn request<'a>(path: &'a str, query: &'a str, client: &str) -> Request<'a> {
    Request {
        path,
        query: Some(query),
        cookie: None,
        client: client.parse().unwrap(),
        now: NOW,
    }
}

#[test]
fn tokens_of_the_reference_validate_here_and_ours_are_the_same() {
    let Some(reference) =
        testkit::edgeauth::require("tokens_of_the_reference_validate_here_and_ours_are_the_same")
    else {
        return;
    };
    let cases: [(TokenAlgorithm, &str, Ask<'_>, &str); 6] = [
        (
            TokenAlgorithm::Sha256,
            "sha256",
            Ask {
                acl: Some("/news/*"),
                end: NOW + 300,
                ..Ask::default()
            },
            "/news/seg12.ts",
        ),
        (
            TokenAlgorithm::Sha256,
            "sha256",
            Ask {
                acl: Some("/news/*!/sports/*"),
                start: Some(NOW - 60),
                end: NOW + 300,
                session_id: Some("session-42"),
                payload: Some("plan=gold"),
                ..Ask::default()
            },
            "/sports/360p/index.m3u8",
        ),
        (
            TokenAlgorithm::Sha256,
            "sha256",
            Ask {
                acl: Some("/*"),
                end: NOW + 300,
                ip: Some("192.0.2.7"),
                ..Ask::default()
            },
            "/news/index.m3u8",
        ),
        (
            TokenAlgorithm::Sha256,
            "sha256",
            Ask {
                url: Some("/news/index.m3u8"),
                end: NOW + 300,
                ..Ask::default()
            },
            "/news/index.m3u8",
        ),
        (
            TokenAlgorithm::Sha1,
            "sha1",
            Ask {
                acl: Some("/news/*"),
                end: NOW + 300,
                ..Ask::default()
            },
            "/news/index.m3u8",
        ),
        (
            TokenAlgorithm::Md5,
            "md5",
            Ask {
                acl: Some("/news/*"),
                end: NOW + 300,
                ..Ask::default()
            },
            "/news/index.m3u8",
        ),
    ];
    for (algorithm, name, ask, path) in cases {
        let ask = Ask {
            key: KEY,
            algorithm: name,
            ..ask
        };
        let theirs = reference.mint(&ask);
        let p = profile(algorithm, KEY);
        let query = format!("hdnts={theirs}");
        let granted = p.check(&request(path, &query, "192.0.2.7"));
        assert!(
            granted.is_ok(),
            "{ask:?}: the reference's {theirs} refused: {granted:?}"
        );
        let ours = p
            .mint(&Mint {
                acl: ask.acl,
                url: ask.url,
                start: ask.start,
                end: Some(ask.end),
                ip: ask.ip.map(|a| a.parse().unwrap()),
                id: ask.session_id,
                data: ask.payload,
            })
            .unwrap();
        assert_eq!(ours.token, theirs, "{ask:?}");
        // One bit off, or another key: refused.
        let tampered = theirs.replacen(&(NOW + 300).to_string(), &(NOW + 301).to_string(), 1);
        let query = format!("hdnts={tampered}");
        assert_eq!(
            p.check(&request(path, &query, "192.0.2.7")).err(),
            Some(Refusal::Forged),
            "{ask:?}"
        );
        let other = profile(algorithm, "00112233");
        let query = format!("hdnts={theirs}");
        assert_eq!(
            other.check(&request(path, &query, "192.0.2.7")).err(),
            Some(Refusal::Forged)
        );
    }
}
