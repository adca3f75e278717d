//! ffmpeg as a live encoder: a moving test pattern with a tone, H.264 and AAC in MPEG-TS over
//! UDP, paced in real time (`-re`), the way an encoder feeds a stream node.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use crate::process::Daemon;

/// Starts ffmpeg sending a `size` (`WxH`) picture at 25 frames per second to `to` for a minute,
/// in H.264 `profile` with a key frame every `gop` frames; its output goes to `log`.
pub fn live_encoder(size: &str, profile: &str, gop: u32, to: SocketAddr, log: &Path) -> Daemon {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=25"),
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "60", "-map", "0:v", "-map", "1:a"])
        // `veryfast`, not `ultrafast`: the latter turns off what High profile needs and x264
        // then signals Constrained Baseline whatever the profile asked.
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            profile,
        ])
        .args([
            "-pix_fmt",
            "yuv420p",
            "-g",
            &gop.to_string(),
            "-sc_threshold",
            "0",
        ])
        .args(["-c:a", "aac", "-f", "mpegts"])
        .arg(format!("udp://{to}?pkt_size=1316"));
    Daemon::spawn("ffmpeg", cmd, log).expect("ffmpeg")
}

/// The picture sizes ffprobe finds behind `url` (every rendition of a master playlist), as
/// `W,H` lines, with ffprobe's error output after them for failure messages.
pub fn probe_sizes(url: &str) -> (String, String) {
    let mut probe = Command::new("ffprobe");
    probe
        .args(["-v", "error", "-show_entries", "stream=width,height"])
        .args(["-of", "csv=p=0"])
        .arg(url);
    let out = crate::process::run(probe, std::time::Duration::from_secs(30)).expect("ffprobe");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
