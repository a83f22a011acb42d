#!/usr/bin/env bash
# Weft's one-brick in-process mount beside bindfs (another FUSE pass-through of a local
# directory) and plain ext4, in one run: builds release, mounts a client volfile of
# storage/posix < performance/quick-read < performance/md-cache < debug/io-stats (the
# mount is the brick's only client, so its caches are coherent with every change, and the
# kernel timeouts follow md-cache's 60 s; BENCH_CACHES=off leaves quick-read and md-cache
# out), mounts bindfs over another directory, runs ../shared/bench/fsbench.sh on the three
# and prints the table (ratios to bindfs).
# Run as root from anywhere. Leaves nothing mounted and no process behind.
#   BENCH_DIR (default /srv/weft-bench-local), BENCH_OUT (default $BENCH_DIR/results.jsonl),
#   BENCH_CACHES (on|off, default on)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
D=${BENCH_DIR:-/srv/weft-bench-local}
OUT=${BENCH_OUT:-$D/results.jsonl}
CACHES=${BENCH_CACHES:-on}
WEFT=$ROOT/target/release/weft
command -v bindfs >/dev/null || { echo "bindfs is not installed (apt-get install bindfs)" >&2; exit 2; }

cleanup() {
  for m in "$D/mnt" "$D/bmnt"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
}
trap cleanup EXIT

(cd "$ROOT" && cargo build --release -q -p weft-cli)
cleanup
rm -rf "$D"
mkdir -p "$D/brick" "$D/mnt" "$D/bsrc" "$D/bmnt" "$D/plain"
TOP=b-posix
{
  cat <<VOL
volume b-posix
    type storage/posix
    option directory $D/brick
end-volume
VOL
  if [ "$CACHES" = on ]; then
    TOP=b-md-cache
    cat <<VOL

volume b-quick-read
    type performance/quick-read
    option cache-timeout 60
    subvolumes b-posix
end-volume

volume b-md-cache
    type performance/md-cache
    option cache-invalidation on
    option md-cache-timeout 60
    subvolumes b-quick-read
end-volume
VOL
  fi
  cat <<VOL

volume b
    type debug/io-stats
    subvolumes $TOP
end-volume
VOL
} >"$D/v.vol"
"$WEFT" mount --volfile "$D/v.vol" --log-file "$D/mount.log" "$D/mnt"
bindfs "$D/bsrc" "$D/bmnt"
rm -f "$OUT"
FSBENCH_OUT=$OUT "$SHARED/fsbench.sh" "$D/bmnt" bindfs
if [ "$CACHES" = on ]; then LABEL=weft-1brick; else LABEL=weft-1brick-nocache; fi
FSBENCH_OUT=$OUT "$SHARED/fsbench.sh" "$D/mnt" "$LABEL"
FSBENCH_OUT=$OUT "$SHARED/fsbench.sh" "$D/plain" plain-ext4
python3 "$SHARED/table.py" "$OUT" bindfs
