//! Generated and mutated tokens and playlists through the token decoders, on stable Rust,
//! bounded (see `testkit::fuzz`): EdgeAuth tokens and secure links in queries and cookies,
//! and playlists through the carrying rewrite. Nothing panics; a granted token carried to a
//! segment is granted there; a rewritten playlist keeps every line.

use testkit::fuzz;
use tokens::Request;
use tokens::fuzzing::{self, NOW, client, profiles, valid_query};

fn regressions(target: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target)
}

#[test]
fn queries_and_cookies_never_panic_and_granted_tokens_carry_on() {
    let mut seeds: Vec<Vec<u8>> = profiles()
        .iter()
        .map(|p| valid_query(p).into_bytes())
        .collect();
    seeds.push(format!("a=1&{}&CMCD=bl%3D100", valid_query(&profiles()[0])).into_bytes());
    seeds.push(b"hdnts=exp=1~acl=/*~hmac=00".to_vec());
    seeds.push(b"md5=AAAAAAAAAAAAAAAAAAAAAA&expires=1".to_vec());
    fuzz::run(
        "token_request",
        &regressions("request"),
        &seeds,
        fuzzing::request,
    );
    // The seeds are valid as minted.
    for p in profiles() {
        let query = valid_query(p);
        let request = Request {
            path: "/news/index.m3u8",
            query: Some(&query),
            cookie: None,
            client: client(),
            now: NOW,
        };
        assert!(p.check(&request).is_ok(), "{query}");
    }
}

#[test]
fn playlists_through_the_carrying_rewrite_keep_their_lines() {
    let seeds = vec![
        b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg1.ts\n#EXTINF:2.0,\nseg2.ts\n".to_vec(),
        b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n360p/index.m3u8\n#EXT-X-MEDIA:TYPE=AUDIO,URI=\"a.m3u8\"\n#EXT-X-MAP:URI=\"init.mp4\",BYTERANGE=\"1@0\"\n".to_vec(),
        b"#EXTM3U\r\n#EXT-X-STREAM-INF:BANDWIDTH=1\r\nhttp://h:1/x/../y/index.m3u8?a=b\r\n".to_vec(),
    ];
    fuzz::run(
        "token_playlist",
        &regressions("playlist"),
        &seeds,
        fuzzing::playlist,
    );
}
