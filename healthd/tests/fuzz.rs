//! Generated and mutated playlists and status documents through what healthd reads from a
//! stream node, on stable Rust, bounded (see `testkit::fuzz`): the media and master playlist
//! parsers, the freeze check and the segment check that use what they return, and the status
//! document. Crashes are kept in `tests/fuzz-regressions/hls/`.

use healthd::probe::hls::parse_playlist;
use std::path::Path;

fn regressions() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions/hls")
}

fn seeds() -> Vec<Vec<u8>> {
    [
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:41\n#EXT-X-PROGRAM-DATE-TIME:2026-12-01T12:00:00.000Z\n#EXTINF:2.000,\nseg41.ts\n#EXTINF:2.000,\nseg42.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:1.960,\nseg43.ts\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\nhttp://cdn.example/a/b.ts\n#EXT-X-ENDLIST\n",
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:BANDWIDTH=900000,AVERAGE-BANDWIDTH=700000,RESOLUTION=640x360,FRAME-RATE=25.000,CODECS=\"avc1.64001e,mp4a.40.2\"\n360p/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=320x180\n/sports/180p/index.m3u8\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

#[test]
fn playlists_from_a_node_never_panic_the_probe() {
    testkit::fuzz::run(
        "hls-playlist",
        &regressions(),
        &seeds(),
        healthd::fuzzing::playlist,
    );
}

#[test]
fn status_documents_from_a_node_never_panic() {
    let seeds: Vec<Vec<u8>> = [
        r#"{"node":"ams-1","egress_bps":250000000,"draining":false,"channels":[{"name":"news","live":true,"media_sequence":41,"newest_segment_age":0.4,"active_feed":"primary"}]}"#,
        r#"{"egress_bps":1,"draining":true}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    testkit::fuzz::run(
        "status-document",
        &regressions(),
        &seeds,
        healthd::fuzzing::status_document,
    );
}

#[test]
fn timer_arithmetic_refuses_absurd_durations() {
    for bad in ["-1", "NaN", "inf", "1e400", "1e300", "99999"] {
        let text = format!("#EXTM3U\n#EXT-X-TARGETDURATION:{bad}\n#EXTINF:{bad},\na.ts\n");
        assert_eq!(parse_playlist(&text), None, "{bad}");
    }
    let overflow = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:18446744073709551615\n#EXTINF:2,\na.ts\n#EXTINF:2,\nb.ts\n";
    assert_eq!(parse_playlist(overflow), None);
}
