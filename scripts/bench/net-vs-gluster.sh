#!/usr/bin/env bash
# Weft over the network, one brick, beside GlusterFS 10.3's one-brick volume (dist1), in one
# run: builds release, starts `weft brickd` on 127.0.0.1 (storage/posix < features/locks <
# features/upcall < protocol/server) under setsid with a pid file, mounts a client volfile
# of protocol/client < entry-behind < write-behind < read-ahead < quick-read (open-behind) <
# md-cache (the graph
# `weft volume create` generates; GlusterFS's client graph has write-behind and md-cache
# too; BENCH_CACHES=off leaves out upcall and md-cache, as before issue 11), mounts the
# GlusterFS anchor with ../shared/bench/gluster-anchor-setup.sh, runs
# ../shared/bench/fsbench.sh on both and prints the table (ratios to GlusterFS).
# Run as root from anywhere. Leaves nothing behind: brickd and the mount are stopped at
# exit (the GlusterFS anchor stays mounted; gluster-anchor-teardown.sh removes it).
#   BENCH_DIR (default /srv/weft-bench-net), BENCH_PORT (default 24650),
#   BENCH_OUT (default $BENCH_DIR/results.jsonl), BENCH_CACHES (on|off, default on),
#   BENCH_LABEL (default weft-net, or weft-net-nocache with BENCH_CACHES=off),
#   BENCH_READ_AHEAD (on|off, default on: performance/read-ahead's enable),
#   BENCH_ENTRY_BEHIND (on|off, default BENCH_CACHES: performance/entry-behind's enable),
#   BENCH_ANCHOR (default 1; 0 skips the GlusterFS run, to add a Weft row to BENCH_OUT),
#   BENCH_TREE (default 1): then also a tree of 50,000 empty files (50 directories of
#   1,000) on each mount, `find | wc -l` and `ls -lR > /dev/null` timed with the kernel's
#   caches dropped first, then again at once (the second run), printed as a table
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
D=${BENCH_DIR:-/srv/weft-bench-net}
PORT=${BENCH_PORT:-24650}
OUT=${BENCH_OUT:-$D/results.jsonl}
CACHES=${BENCH_CACHES:-on}
ANCHOR=${BENCH_ANCHOR:-1}
if [ "$CACHES" = on ]; then LABEL=${BENCH_LABEL:-weft-net}; else LABEL=${BENCH_LABEL:-weft-net-nocache}; fi
WEFT=$ROOT/target/release/weft

cleanup() {
  umount "$D/mnt" 2>/dev/null || umount -l "$D/mnt" 2>/dev/null || true
  if [ -f "$D/brickd.pid" ]; then kill "$(cat "$D/brickd.pid")" 2>/dev/null || true; fi
}
trap cleanup EXIT

(cd "$ROOT" && cargo build --release -q -p weft-cli)
cleanup
rm -rf "$D"
mkdir -p "$D/brick" "$D/mnt"
cat >"$D/server.vol" <<VOL
volume bench-posix
    type storage/posix
    option directory $D/brick
end-volume

volume bench-locks
    type features/locks
    subvolumes bench-posix
end-volume

volume bench
    type features/upcall
    option cache-invalidation $CACHES
    subvolumes bench-locks
end-volume

volume bench-server
    type protocol/server
    option auth.allow 127.0.0.1
    subvolumes bench
end-volume
VOL
cat >"$D/client.vol" <<VOL
volume bench-client
    type protocol/client
    option remote-host 127.0.0.1
    option remote-port $PORT
    option remote-subvolume bench
    option cache-invalidation $CACHES
end-volume

volume bench-entry-behind
    type performance/entry-behind
    option enable ${BENCH_ENTRY_BEHIND:-$CACHES}
    subvolumes bench-client
end-volume

volume bench-wb
    type performance/write-behind
    subvolumes bench-entry-behind
end-volume

volume bench-read-ahead
    type performance/read-ahead
    option enable ${BENCH_READ_AHEAD:-on}
    subvolumes bench-wb
end-volume
VOL
if [ "$CACHES" = on ]; then
  cat >>"$D/client.vol" <<VOL

volume bench-quick-read
    type performance/quick-read
    option cache-timeout 60
    subvolumes bench-read-ahead
end-volume

volume bench-md-cache
    type performance/md-cache
    option cache-invalidation on
    option md-cache-timeout 60
    subvolumes bench-quick-read
end-volume
VOL
fi
setsid "$WEFT" brickd --listen "127.0.0.1:$PORT" --volfile "$D/server.vol" \
  --control "$D/brickd.sock" --pid-file "$D/brickd.pid" \
  </dev/null >"$D/brickd.out" 2>"$D/brickd.log" &
for _ in $(seq 100); do grep -q "listening on" "$D/brickd.out" 2>/dev/null && break; sleep 0.1; done
grep -q "listening on" "$D/brickd.out" || { echo "brickd did not start:"; cat "$D/brickd.log"; exit 1; }
"$WEFT" mount --volfile "$D/client.vol" --log-file "$D/mount.log" "$D/mnt"

if [ "$ANCHOR" = 1 ]; then
  ANCHOR_VOLS=dist1 "$SHARED/gluster-anchor-setup.sh"
  rm -f "$OUT"
  FSBENCH_OUT=$OUT "$SHARED/fsbench.sh" /mnt/anchor/dist1 gluster-dist1
fi
FSBENCH_OUT=$OUT "$SHARED/fsbench.sh" "$D/mnt" "$LABEL"
python3 "$SHARED/table.py" "$OUT" gluster-dist1

if [ "${BENCH_TREE:-1}" = 1 ]; then
  walk() { # MOUNT LABEL: make the tree, then time find and ls -lR, cold then warm
    local t="$1/.tree.$$"
    python3 - "$t" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(50):
    p = os.path.join(root, "d%02d" % d); os.makedirs(p)
    for f in range(1000):
        os.close(os.open(os.path.join(p, "f%04d" % f), os.O_CREAT | os.O_WRONLY, 0o644))
PY
    local row="$2"
    for cmd in "find $t | wc -l" "ls -lR $t > /dev/null"; do
      sync; echo 3 >/proc/sys/vm/drop_caches
      for run in first second; do
        local s e
        s=$(date +%s.%N); bash -c "$cmd" >/dev/null; e=$(date +%s.%N)
        row="$row | $(python3 -c "print('%.2f s' % ($e - $s))")"
      done
    done
    rm -rf "$t"
    echo "$row |"
  }
  echo
  echo "| 50,000 files | find, first | find, second | ls -lR, first | ls -lR, second |"
  echo "|---|---|---|---|---|"
  if [ "$ANCHOR" = 1 ]; then walk /mnt/anchor/dist1 "| gluster-dist1"; fi
  walk "$D/mnt" "| $LABEL"
fi
