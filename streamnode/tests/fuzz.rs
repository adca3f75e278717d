//! Generated and mutated MPEG-TS through everything an ingest feed reaches, on stable Rust,
//! bounded (see `testkit::fuzz`): packet parsing, the program tables, segmenting at key frames,
//! the playlist, and the media probe (H.264 SPS, ADTS) the master playlist is described from.
//! Seeds are pieces of the bundled clip; crashes are kept in `tests/fuzz-regressions/ts/`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use streamnode::channel::Channel;
use streamnode::ts::PACKET;
use streamnode::ts::looper::Looper;
use streamnode::ts::media::{Elementary, probe, stream_type};

/// The first `packets` packets of the clip, then pieces of it from further on.
fn seeds() -> Vec<Vec<u8>> {
    let mut looper = Looper::test_channel().expect("bundled clip");
    let stream: Vec<u8> = (0..looper.packets_per_pass().min(2400))
        .flat_map(|_| looper.next_packet())
        .collect();
    let piece = |from: usize, packets: usize| {
        let start = (from * PACKET).min(stream.len());
        let end = ((from + packets) * PACKET).min(stream.len());
        stream[start..end].to_vec()
    };
    vec![
        piece(0, 1200),
        piece(0, 60),
        piece(600, 600),
        piece(1200, 1200),
    ]
}

fn regressions() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions/ts")
}

#[test]
fn ingested_transport_streams_never_panic_and_keep_playlists_sane() {
    testkit::fuzz::run_n(
        "ts-ingest",
        &regressions(),
        &seeds(),
        1500,
        streamnode::fuzzing::ingest,
    );
}

#[test]
fn the_media_probe_takes_any_segment_and_stream_types() {
    let types = [
        stream_type::H264,
        stream_type::H265,
        stream_type::AAC_ADTS,
        stream_type::MPEG1_AUDIO,
        0x00,
        0xFF,
    ];
    let mut rng = testkit::fuzz::Rng::new(13818);
    testkit::fuzz::run_n("ts-probe", &regressions(), &seeds(), 2000, |segment| {
        let pick = |rng: &mut testkit::fuzz::Rng| Elementary {
            pid: [0x100, 0x101, 0x1FFF, 0][rng.below(4)],
            stream_type: types[rng.below(types.len())],
        };
        let video = rng.chance(4).then(|| pick(&mut rng)).or(Some(Elementary {
            pid: 0x100,
            stream_type: stream_type::H264,
        }));
        let audio = rng.chance(2).then(|| pick(&mut rng));
        let info = probe(segment, video, audio);
        if let Some((w, h)) = info.resolution {
            assert!(w > 0 && h > 0, "{w}x{h}");
        }
    });
}

#[test]
fn clips_that_are_not_transport_streams_are_refused() {
    testkit::fuzz::run_n("ts-clip", &regressions(), &seeds()[1..2], 2000, |clip| {
        let _ = Looper::new(clip).map(|mut l| {
            for _ in 0..l.packets_per_pass() * 2 {
                let _ = l.next_packet();
            }
        });
    });
}

#[test]
fn the_seeds_reach_the_segmenter() {
    let seed = &seeds()[0];
    let mut channel = Channel::new("seed", Duration::from_secs(1), 4);
    channel.set_clock(SystemTime::now());
    for packet in seed.chunks_exact(PACKET) {
        channel.push(packet.try_into().unwrap());
    }
    assert!(channel.window().count() >= 1, "a segment cut from the seed");
    assert!(channel.playlist().is_some());
}

#[test]
fn client_data_from_players_never_panics() {
    let seeds: Vec<Vec<u8>> = [
        r#"bl=21300,br=3200,bs,cid="faec5fc2",d=4004,mtp=48100,ot=v,sf=h,sid="6e2fb550",st=v,su,tb=6000"#,
        "bl%3D300%2Cbr%3D800%2Csid%3D%22s%201%22",
        "bl=1200,mtp=25400\nbr=3200,d=4004,ot=v\nbs\ncid=\"news\",sid=\"a\\\"b\",v=1",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    testkit::fuzz::run_n(
        "cmcd",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions/cmcd"),
        &seeds,
        3000,
        streamnode::fuzzing::cmcd,
    );
}

/// A real hand-over as a running node sends it: two channels mid-stream, their bytes, where
/// their feeders stopped.
fn handover_seeds() -> Vec<Vec<u8>> {
    let mut looper = Looper::test_channel().expect("bundled clip");
    let mut channel = Channel::new("news", Duration::from_secs(2), 4);
    channel.set_clock(SystemTime::now());
    for _ in 0..looper.packets_per_pass() + 321 {
        channel.push(&looper.next_packet());
    }
    let mut payload = Vec::new();
    let saved = vec![channel.save(&mut payload), channel.save(&mut payload)];
    let state = serde_json::json!({
        "epoch": SystemTime::now(),
        "draining": false,
        "channels": saved,
        "feeders": {},
        "served": 12345,
        "requests": [1, 2, 3],
    });
    let handover = daemon::handover::Handover {
        sockets: Vec::new(),
        state,
        payload,
    };
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let sending = std::thread::spawn(move || {
        daemon::handover::send(&a, &handover, &[]).unwrap();
    });
    let mut wire = Vec::new();
    std::io::Read::read_to_end(&mut (&b), &mut wire).unwrap();
    sending.join().unwrap();
    // Whole, cut short, and the description alone.
    let description = 4 + u32::from_be_bytes([wire[0], wire[1], wire[2], wire[3]]) as usize;
    vec![
        wire.clone(),
        wire[..wire.len() / 2].to_vec(),
        wire[..description].to_vec(),
    ]
}

#[test]
fn hand_overs_from_elsewhere_are_refused_or_restored_never_a_panic() {
    testkit::fuzz::run_n(
        "handover",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions/handover"),
        &handover_seeds(),
        600,
        streamnode::fuzzing::handover,
    );
}
