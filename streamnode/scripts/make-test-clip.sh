#!/usr/bin/env bash
# Makes the bundled test clip (assets/test-clip.ts): 4 s of a moving test pattern with a tone,
# H.264 with a key frame every 2 s (so segments can be cut at 2 s), AAC audio, in MPEG-TS.
# The node loops it as the built-in live channel; the demo and the tests need no ffmpeg.
set -euo pipefail
cd "$(dirname "$0")/.."
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=640x360:rate=25" \
  -f lavfi -i "sine=frequency=880:sample_rate=48000" \
  -t 4 -map 0:v -map 1:a \
  -c:v libx264 -preset veryfast -profile:v main -pix_fmt yuv420p -b:v 300k \
  -g 50 -keyint_min 50 -sc_threshold 0 \
  -c:a aac -b:a 64k \
  -mpegts_flags resend_headers -muxdelay 0 \
  -f mpegts assets/test-clip.ts
ls -l assets/test-clip.ts
