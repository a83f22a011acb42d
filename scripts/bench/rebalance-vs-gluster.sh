#!/usr/bin/env bash
# Growing a distributed volume and walking a large tree, Weft beside GlusterFS 10.3 in one
# run, both made the way an admin makes them (Weft: one `weft mgmtd` on $BENCH_HOST, bricks
# under $BENCH_DIR; GlusterFS: glusterd on this host, bricks under $BENCH_DIR/gluster):
#  1. a 3-brick distributed volume; 10,000 files of 4 KiB in 20 directories;
#     add a 4th brick; `rebalance start`; time until status says completed; files moved
#     (the rebalance's own count, and a count of data files on the new brick);
#  2. a tree of 50,000 empty files (50 directories x 1,000) on the same 4-brick volume:
#     `find | wc -l` and `ls -lR`, each twice (kernel caches dropped before the first).
# Prints one line per measurement and writes them to $BENCH_OUT (JSON lines).
# Run as root. Stops what it started (Weft by pid, the GlusterFS volume deleted).
#   BENCH_DIR (default /srv/weft-bench-rebal), BENCH_HOST (default 127.89.0.1),
#   BENCH_OUT (default $BENCH_DIR/results.jsonl), BENCH_SKIP_BUILD=1,
#   BENCH_FILES (default 10000), BENCH_TREE (default 50000)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
D=${BENCH_DIR:-/srv/weft-bench-rebal}
H=${BENCH_HOST:-127.89.0.1}
OUT=${BENCH_OUT:-$D/results.jsonl}
FILES=${BENCH_FILES:-10000}
TREE=${BENCH_TREE:-50000}
WEFT=$ROOT/target/release/weft
GH=$(hostname)
GV=weftbench-rb

cleanup() {
  umount "$D/mnt" 2>/dev/null || umount -l "$D/mnt" 2>/dev/null || true
  umount "$D/gmnt" 2>/dev/null || umount -l "$D/gmnt" 2>/dev/null || true
  for p in "$D/mgmtd.pid" "$D/work/run/brickd.pid"; do
    if [ -f "$p" ]; then kill "$(cat "$p")" 2>/dev/null || true; fi
  done
  if command -v gluster >/dev/null && pgrep -x glusterd >/dev/null; then
    gluster --mode=script volume stop "$GV" force >/dev/null 2>&1 || true
    gluster --mode=script volume delete "$GV" >/dev/null 2>&1 || true
  fi
  sleep 0.5
}
trap cleanup EXIT

now() { date +%s.%N; }
record() { # SYSTEM WHAT VALUE UNIT
  echo "$1 $2: $3 $4"
  printf '{"system":"%s","what":"%s","value":%s,"unit":"%s"}\n' "$1" "$2" "$3" "$4" >>"$OUT"
}
make_files() { # DIR: $FILES files of 4 KiB in 20 directories
  python3 - "$1" "$FILES" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
data = b"x" * 4096
for d in range(20):
    os.makedirs(f"{root}/d{d:02}", exist_ok=True)
for i in range(n):
    with open(f"{root}/d{i % 20:02}/f{i}", "wb") as f:
        f.write(data)
EOF
}
make_tree() { # DIR: $TREE empty files, 1,000 per directory
  python3 - "$1" "$TREE" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = f"{root}/t{i // 1000:03}"
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    os.close(os.open(f"{d}/e{i}", os.O_CREAT | os.O_WRONLY, 0o644))
EOF
}
count_data() { # BRICK: regular files that hold data (not DHT link files: mode 01000 / ---------T)
  find "$1" -path "$1/.weft" -prune -o -path "$1/.glusterfs" -prune -o -type f ! -perm 1000 -print | wc -l
}
walks() { # SYSTEM MOUNTPOINT
  local t0 t1 n
  sync; echo 3 >/proc/sys/vm/drop_caches
  for run in 1 2; do
    t0=$(now); n=$(find "$2/tree" | wc -l); t1=$(now)
    record "$1" "find $TREE files (run $run, $n entries)" "$(echo "$t1 - $t0" | bc)" s
  done
  sync; echo 3 >/proc/sys/vm/drop_caches
  for run in 1 2; do
    t0=$(now); ls -lR "$2/tree" >/dev/null; t1=$(now)
    record "$1" "ls -lR $TREE files (run $run)" "$(echo "$t1 - $t0" | bc)" s
  done
}

[ "${BENCH_SKIP_BUILD:-0}" = 1 ] || (cd "$ROOT" && cargo build --release -q -p weft-cli)
command -v bc >/dev/null || { apt-get update -qq; apt-get install -y -qq bc >/dev/null; }
cleanup
rm -rf "$D"
mkdir -p "$D/mnt" "$D/gmnt" "$D/gluster"
rm -f "$OUT"

# ---- Weft ----
setsid "$WEFT" mgmtd --listen "$H" --workdir "$D/work" --pid-file "$D/mgmtd.pid" \
  </dev/null >"$D/mgmtd.out" 2>"$D/mgmtd.log" &
for _ in $(seq 100); do grep -q "listening on" "$D/mgmtd.out" 2>/dev/null && break; sleep 0.1; done
grep -q "listening on" "$D/mgmtd.out" || { echo "mgmtd did not start:"; cat "$D/mgmtd.log"; exit 1; }
export WEFT_MGMT=$H WEFT_TOKEN_FILE=$D/work/token
"$WEFT" volume create rb "$H:$D/b1" "$H:$D/b2" "$H:$D/b3" >/dev/null
"$WEFT" volume start rb >/dev/null
"$WEFT" mount "$H:/rb" "$D/mnt" --log-file "$D/mount.log"
make_files "$D/mnt/files"
"$WEFT" volume add-brick rb "$H:$D/b4" >/dev/null
sleep 2 # the mount switches to the 4-brick graph
t0=$(now)
"$WEFT" volume rebalance rb start >/dev/null
while :; do
  st=$("$WEFT" volume rebalance rb status --json)
  echo "$st" | grep -q '"state": *"\(running\|not started\)"' || break
  sleep 0.2
done
t1=$(now)
"$WEFT" volume rebalance rb status
moved=$("$WEFT" volume rebalance rb status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"]["moved"])')
record weft "rebalance 3->4 bricks, $FILES files" "$(echo "$t1 - $t0" | bc)" s
record weft "files moved (rebalance's count)" "$moved" files
record weft "data files on the new brick" "$(count_data "$D/b4")" files
make_tree "$D/mnt/tree"
walks weft "$D/mnt"
umount "$D/mnt"
kill "$(cat "$D/mgmtd.pid")" "$(cat "$D/work/run/brickd.pid")" 2>/dev/null || true

# ---- GlusterFS ----
command -v glusterd >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq glusterfs-server glusterfs-client >/dev/null; }
if ! pgrep -x glusterd >/dev/null; then
  glusterd -p /run/glusterd.pid
  for _ in $(seq 50); do gluster --mode=script pool list >/dev/null 2>&1 && break; sleep 0.2; done
fi
gluster --mode=script volume create "$GV" "$GH:$D/gluster/b1" "$GH:$D/gluster/b2" "$GH:$D/gluster/b3" force >/dev/null
gluster --mode=script volume start "$GV" >/dev/null
mount -t glusterfs "$GH:/$GV" "$D/gmnt"
make_files "$D/gmnt/files"
gluster --mode=script volume add-brick "$GV" "$GH:$D/gluster/b4" force >/dev/null
sleep 2
t0=$(now)
gluster --mode=script volume rebalance "$GV" start >/dev/null
while :; do
  st=$(gluster --mode=script volume rebalance "$GV" status 2>&1 || true)
  echo "$st" | grep -Eq "completed|failed" && break
  sleep 0.2
done
t1=$(now)
gluster --mode=script volume rebalance "$GV" status
gmoved=$(gluster --mode=script volume rebalance "$GV" status | awk '/localhost|'"$GH"'/ {print $2; exit}')
record glusterfs "rebalance 3->4 bricks, $FILES files" "$(echo "$t1 - $t0" | bc)" s
record glusterfs "files moved (rebalance's count)" "${gmoved:-0}" files
record glusterfs "data files on the new brick" "$(count_data "$D/gluster/b4")" files
make_tree "$D/gmnt/tree"
walks glusterfs "$D/gmnt"
