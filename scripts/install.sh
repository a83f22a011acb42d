#!/usr/bin/env bash
# Installs a built Weft on this machine: the weft binary to /usr/local/bin and the mount(8)
# helper to /sbin/mount.weft, so `mount -t weft HOST:/VOLUME DIR` and fstab lines work.
# Builds the release binary first unless --no-build. Run as root. PREFIX and SBIN change
# where they go (defaults /usr/local and /sbin).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${PREFIX:-/usr/local}
sbin=${SBIN:-/sbin}
if [ "${1:-}" != "--no-build" ]; then
  cargo build --release -p weft-cli
fi
[ -x target/release/weft ] || { echo "install: target/release/weft is missing (cargo build --release -p weft-cli)" >&2; exit 1; }
install -d "$prefix/bin" "$sbin"
install -m 0755 target/release/weft "$prefix/bin/weft"
install -m 0755 scripts/mount.weft "$sbin/mount.weft"
echo "installed $prefix/bin/weft and $sbin/mount.weft"
