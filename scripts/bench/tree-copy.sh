#!/usr/bin/env bash
# Copying a tree in and removing it again over one brick on loopback: `cp -a SRC` into a
# fresh directory of the mount, then `rm -rf` of the copy, each timed; the entry-behind
# statedump after each. Gives the "Trees" figures of docs/BENCHMARKS.md (2026-12-04).
# Run as root (for cp -a's owners). Leaves nothing mounted and no process behind.
#   ENTRY_BEHIND (on|off, default on: performance/entry-behind's enable),
#   SRC (default /usr/share/doc), BENCH_DIR (default /srv/weft-tree-copy),
#   BENCH_PORT (default 24795), WEFT=PATH (a built binary; no build)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
D=${BENCH_DIR:-/srv/weft-tree-copy}
PORT=${BENCH_PORT:-24795}
SRC=${SRC:-/usr/share/doc}
WEFT=${WEFT:-}
cleanup() {
  umount "$D/mnt" 2>/dev/null || umount -l "$D/mnt" 2>/dev/null || true
  if [ -f "$D/brickd.pid" ]; then kill "$(cat "$D/brickd.pid")" 2>/dev/null || true; fi
}
trap cleanup EXIT
if [ -z "$WEFT" ]; then
  (cd "$ROOT" && cargo build --release -q -p weft-cli)
  WEFT=$ROOT/target/release/weft
fi
cleanup
rm -rf "$D"
mkdir -p "$D/brick" "$D/mnt"
cat >"$D/server.vol" <<VOL
volume t-posix
    type storage/posix
    option directory $D/brick
end-volume
volume t-locks
    type features/locks
    subvolumes t-posix
end-volume
volume t
    type features/upcall
    option cache-invalidation on
    subvolumes t-locks
end-volume
volume t-server
    type protocol/server
    option auth.allow 127.0.0.1
    subvolumes t
end-volume
VOL
cat >"$D/client.vol" <<VOL
volume t-client
    type protocol/client
    option remote-host 127.0.0.1
    option remote-port $PORT
    option remote-subvolume t
    option cache-invalidation on
end-volume
volume t-entry-behind
    type performance/entry-behind
    option enable ${ENTRY_BEHIND:-on}
    subvolumes t-client
end-volume
volume t-wb
    type performance/write-behind
    subvolumes t-entry-behind
end-volume
volume t-read-ahead
    type performance/read-ahead
    subvolumes t-wb
end-volume
volume t-quick-read
    type performance/quick-read
    option cache-timeout 60
    subvolumes t-read-ahead
end-volume
volume t-md-cache
    type performance/md-cache
    option cache-invalidation on
    option md-cache-timeout 60
    subvolumes t-quick-read
end-volume
VOL
setsid "$WEFT" brickd --listen "127.0.0.1:$PORT" --volfile "$D/server.vol" \
  --control "$D/brickd.sock" --pid-file "$D/brickd.pid" \
  </dev/null >"$D/brickd.out" 2>"$D/brickd.log" &
for _ in $(seq 100); do grep -q "listening on" "$D/brickd.out" 2>/dev/null && break; sleep 0.1; done
grep -q "listening on" "$D/brickd.out" || { echo "brickd did not start:"; cat "$D/brickd.log"; exit 1; }
"$WEFT" mount --volfile "$D/client.vol" --log-file "$D/mount.log" "$D/mnt" >/dev/null
dump() { "$WEFT" statedump "$D/mnt" | sed -n '/^\[t-entry-behind\]/,/^\[/p' |
  grep -E '^(leased_dirs|creates|mkdirs|symlinks|unlinks|rmdirs|through|failures) ' | tr '\n' ' '; echo; }
mkdir "$D/mnt/t"
echo "entry-behind ${ENTRY_BEHIND:-on}, $(find "$SRC" | wc -l) entries from $SRC"
s=$(date +%s.%N); cp -a "$SRC" "$D/mnt/t/"; e=$(date +%s.%N)
echo "cp -a: $(python3 -c "print(round($e - $s, 2))") s"; dump
s=$(date +%s.%N); rm -rf "$D/mnt/t/$(basename "$SRC")"; e=$(date +%s.%N)
echo "rm -rf: $(python3 -c "print(round($e - $s, 2))") s"; dump
