#!/usr/bin/env bash
# Every test: formatting, lints, then unit and integration tests (real FUSE mounts; run as
# root). Tests clean up their own mounts and processes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
if command -v cargo-nextest >/dev/null; then
  cargo nextest run --workspace --no-fail-fast
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast
fi
bash scripts/fuzz.sh
