#!/usr/bin/env bash
# Runs every test of the workspace: formatting, lints, unit, interop and end-to-end tests.
#
# Interop tests start real peers (BIRD, FRR, GoBGP, ExaBGP, gdnsd, dig/kdig, dnsperf, ffmpeg).
# Run as root, this script installs the Debian packages they need. Run as another user, it
# prints the command to install them and goes on: tests whose programs are missing skip with a
# printed reason, unless REQUIRE_PEERS=1 (as in CI), where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use.
PACKAGES=(
  bird2 frr gobgpd exabgp gdnsd dnsperf ffmpeg bind9-dnsutils knot-dnsutils iproute2 nginx-light
  unbound curl openssl nftables prometheus systemd chromium dpkg-dev adduser
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "==> installing test dependencies: ${missing[*]}"
    # Keep package scripts from starting the daemons we install: tests start their own.
    policy=/usr/sbin/policy-rc.d
    had_policy=0
    [[ -e $policy ]] && had_policy=1
    if ((!had_policy)); then
      printf '#!/bin/sh\nexit 101\n' >"$policy"
      chmod +x "$policy"
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
    ((had_policy)) || rm -f "$policy"
  else
    echo "==> missing test dependencies: ${missing[*]}"
    echo "    install them with: sudo apt-get install --no-install-recommends ${missing[*]}"
    if [[ ${REQUIRE_PEERS:-0} != 0 ]]; then
      echo "error: REQUIRE_PEERS is set and packages are missing; run this script as root" >&2
      exit 1
    fi
    echo "    tests that need them will be skipped"
  fi
fi

# hls.js, the browser player of the content steering test, from the npm registry (Node.js and
# npm come with the machine; Debian's `npm` package otherwise).
HLSJS_VERSION=1.7.4
hlsjs=target/npm/node_modules/hls.js
if [[ $(node -p "require('./$hlsjs/package.json').version" 2>/dev/null) != "$HLSJS_VERSION" ]]; then
  if ! command -v npm >/dev/null && [[ $(id -u) -eq 0 ]]; then
    echo "==> installing npm"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm
  fi
  echo "==> installing hls.js $HLSJS_VERSION from the npm registry"
  mkdir -p target/npm
  npm install --prefix target/npm --no-save --no-audit --no-fund "hls.js@$HLSJS_VERSION" >/dev/null
fi

# akamai-edgeauth, Akamai's reference for EdgeAuth tokens, from PyPI: the token tests check
# that its tokens validate in our nodes and that ours are the same as its.
EDGEAUTH_VERSION=0.3.2
pydir=target/python
if ! PYTHONPATH=$pydir python3 -c "import akamai.edgeauth" 2>/dev/null; then
  if ! python3 -m pip --version >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
    echo "==> installing pip"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip
  fi
  echo "==> installing akamai-edgeauth $EDGEAUTH_VERSION from PyPI"
  # --target installs beside the system's packages, never into them.
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$pydir" \
    "akamai-edgeauth==$EDGEAUTH_VERSION"
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The package `lab --test package` installs (a release build of the daemons).
./scripts/package.sh
echo "==> cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked 2>&1 | tee "$log" || status=$?
# One closing line summing up every test binary of the workspace.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1); if ($i ~ /^ignored/) s += $(i-1) } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
