#!/usr/bin/env bash
# Fuzzes every decoder a peer or an operator feeds for a fixed time each (default 20 s;
# FUZZ_SECONDS to change): the wire frame decoder, every wire message decoder, and the
# volfile parser. Installs cargo-fuzz when missing. cargo-fuzz needs nightly flags;
# RUSTC_BOOTSTRAP lets the machine's one stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
secs="${FUZZ_SECONDS:-20}"
run() {
  local crate=$1 target=$2
  echo "fuzz: $crate $target for ${secs}s"
  (cd "crates/$crate" && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$secs")
}
run wire frame_decoder
run wire msg_decoder
run core volfile_parser
