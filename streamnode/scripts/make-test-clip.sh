#!/usr/bin/env bash
# Makes the bundled test clips: 4 s of a moving test pattern with a tone, H.264 with a key frame
# every 2 s (so segments can be cut at 2 s), AAC audio, in MPEG-TS, at two sizes:
#   assets/test-clip.ts       640x360, ~300 kbit/s  (clip = "360p", the default)
#   assets/test-clip-180p.ts  320x180, ~120 kbit/s  (clip = "180p", a second rendition)
# Both have the same frame rate, GOP and duration, so a channel that plays both as renditions
# gets segments cut at the same instants. The node loops them as built-in live channels; the
# demo and the tests need no ffmpeg.
# Usage: make-test-clip.sh [360p|180p]   (both when no argument)
set -euo pipefail
cd "$(dirname "$0")/.."
make() { # OUTPUT SIZE VIDEO-BITRATE
  ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i "testsrc2=size=$2:rate=25" \
    -f lavfi -i "sine=frequency=880:sample_rate=48000" \
    -t 4 -map 0:v -map 1:a \
    -c:v libx264 -preset veryfast -profile:v main -pix_fmt yuv420p -b:v "$3" \
    -g 50 -keyint_min 50 -sc_threshold 0 \
    -c:a aac -b:a 64k \
    -mpegts_flags resend_headers -muxdelay 0 \
    -f mpegts "$1"
  ls -l "$1"
}
case "${1:-all}" in
  360p) make assets/test-clip.ts 640x360 300k ;;
  180p) make assets/test-clip-180p.ts 320x180 120k ;;
  all) make assets/test-clip.ts 640x360 300k; make assets/test-clip-180p.ts 320x180 120k ;;
  *) echo "usage: $0 [360p|180p]" >&2; exit 2 ;;
esac
