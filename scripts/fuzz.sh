#!/usr/bin/env bash
# Fuzzes the wire frame decoder for a fixed time (default 30 s; FUZZ_SECONDS to change).
# Installs cargo-fuzz when missing. cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the
# machine's one stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")/../crates/wire"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
RUSTC_BOOTSTRAP=1 cargo fuzz run frame_decoder -- -max_total_time="${FUZZ_SECONDS:-30}"
