#!/usr/bin/env bash
# The main job: build Weft, create a one-brick demo volume under ./.weft and mount it at
# ./mnt. Stop it with: ./target/release/weft demo stop
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release -p weft-cli
exec ./target/release/weft demo start
