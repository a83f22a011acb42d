#!/usr/bin/env bash
# The main job: build Weft, start a one-node pool under ./.weft (management daemon and brick
# process), create and start volume `demo` there and mount it by name at ./mnt.
# Stop it with: ./target/release/weft demo stop
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release -p weft-cli
exec ./target/release/weft demo start
