#!/usr/bin/env bash
# Builds the Debian package of the control plane, target/debian/anycast-iptv_VERSION_ARCH.deb:
# every daemon (release build), its systemd units, the deployment file in /etc, the docs and the
# operators' files (ops/). The package's contents are described in dist/Cargo.toml
# ([package.metadata.deb]); its maintainer scripts are ops/debian/.
#
# Install it with `dpkg -i`; `cargo test -p lab --test package` (as root) installs it, starts its
# daemons as the units run them, and purges it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
  echo "==> installing cargo-deb"
  cargo install cargo-deb --locked --version '^3'
fi

echo "==> building the daemons (release)"
cargo build --release --locked -p geodns -p healthd -p bgp-speaker -p streamnode

echo "==> packaging"
# Debug symbols go to their own package (anycast-iptv-dbgsym), as Debian ships them.
cargo deb --locked --no-build --dbgsym -p anycast-iptv --output target/debian/
