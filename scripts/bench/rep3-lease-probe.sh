#!/usr/bin/env bash
# What the client caches do on a replica 3 volume made by mgmtd (one node on 127.88.0.9,
# `volume create rv3 replica 3 H:/b1 H:/b2 H:/b3 force`, mounted by name): creates FILES
# files of 4 KiB in a new directory, then stats each, and prints the rates and the
# mount's entry-behind and md-cache counters (leases granted and recalled, creates made
# behind, stat hits and misses), its request latencies and the CPU the mount and the
# brick process spent per create. Gives the "rep3: why the entry
# rows stay near 1x" figures of docs/BENCHMARKS.md (2026-12-04, late night).
# Run as root. Leaves nothing behind (mount, mgmtd and brickd stopped by pid at exit).
#   BENCH_DIR (default /srv/weft-rep3-probe), BENCH_HOST (default 127.88.0.9),
#   FILES (default 500), SHD (on|off, default on: cluster.self-heal-daemon),
#   WEFT=PATH (a built binary; default the release build, built if missing),
#   PERF=1 (where the mount's and brickd's CPU went, by perf record -g),
#   MKDIRS=1 (directories instead of files: "create" is then mkdir)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
D=${BENCH_DIR:-/srv/weft-rep3-probe}
H=${BENCH_HOST:-127.88.0.9}
FILES=${FILES:-500}
WEFT=${WEFT:-$ROOT/target/release/weft}
# shellcheck source=scripts/bench/mgmtd-node.sh
. "$ROOT/scripts/bench/mgmtd-node.sh"
trap mgmtd_node_stop EXIT
[ -x "$WEFT" ] || (cd "$ROOT" && cargo build --release -q -p weft-cli)
mgmtd_node_stop
rm -rf "$D"
mkdir -p "$D/mnt"
mgmtd_node_start
"$WEFT" volume create rv3 replica 3 "$H:$D/b1" "$H:$D/b2" "$H:$D/b3" force
"$WEFT" volume set rv3 cluster.self-heal-daemon "${SHD:-on}"
"$WEFT" volume start rv3
"$WEFT" mount "$H:/rv3" "$D/mnt" --log-file "$D/mount.log" | tee "$D/mount.out"
mkdir "$D/mnt/s"
MOUNT_PID=$(sed -n 's/.*(pid \([0-9]*\).*/\1/p' "$D/mount.out")
# PERF=1: where brickd's and the mount's CPU goes during the creates (perf record -g).
if [ "${PERF:-0}" = 1 ]; then
  command -v perf >/dev/null || { echo "PERF=1 needs perf (apt-get install linux-perf)"; exit 2; }
  perf record -q -g -o "$D/perf-brick.data" -p "$(cat "$D/work/run/brickd.pid")" 2>/dev/null &
  PERF_B=$!
  perf record -q -g -o "$D/perf-mount.data" -p "$MOUNT_PID" 2>/dev/null &
  PERF_M=$!
  sleep 1
fi
python3 - "$D/mnt/s" "$FILES" "$MOUNT_PID" "$(cat "$D/work/run/brickd.pid")" "${MKDIRS:-0}" <<'PY'
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
pids = {"mount": sys.argv[3], "brickd": sys.argv[4]}
mkdirs = sys.argv[5] == "1"
def cpu():
    # utime + stime of each process, in seconds
    out = {}
    for k, p in pids.items():
        f = open("/proc/%s/stat" % p).read().rsplit(")", 1)[1].split()
        out[k] = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return out
data = os.urandom(4096)
c0 = cpu()
t = time.perf_counter()
for i in range(n):
    if mkdirs:
        os.mkdir(os.path.join(d, "f%06d" % i))
        continue
    fd = os.open(os.path.join(d, "f%06d" % i), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
    os.write(fd, data); os.close(fd)
wall = time.perf_counter() - t
time.sleep(0.5)  # what is still behind when the last close returns
c1 = cpu()
print("create: %.0f files/s" % (n / wall))
print("create CPU per file: " + ", ".join(
    "%s %.0f us" % (k, (c1[k] - c0[k]) * 1e6 / n) for k in pids))
t = time.perf_counter()
for i in range(n): os.stat(os.path.join(d, "f%06d" % i))
print("stat: %.0f files/s" % (n / (time.perf_counter() - t)))
PY
if [ -n "${PERF_B:-}" ]; then
  kill -INT "$PERF_B" "$PERF_M"; wait "$PERF_B" "$PERF_M" 2>/dev/null || true
  for w in brick mount; do
    echo "== $w's CPU during the creates and stats (perf report, children, top 40)"
    perf report -i "$D/perf-$w.data" --children --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -40 || true
  done
fi
"$WEFT" statedump "$D/mnt" >"$D/statedump.txt"
"$WEFT" brickd statedump --control "$D/work/run/brickd.sock" >"$D/brick-statedump.txt" || true
echo "== the mount's requests"
sed -n '/^\[rv3\]/,/^\[/p' "$D/statedump.txt" | grep -E '^[a-z]+ +[0-9]+ |^fop'
echo "== entry-behind"
sed -n '/^\[rv3-entry-behind\]/,/^\[/p' "$D/statedump.txt" | grep -E '^(leased_dirs|leases|recalls|creates|through|waits|failures) '
echo "== the bricks' requests (all three, from brickd's statedump)"
awk '/^fop +calls/ {t=1; next} t && /^[a-z]+ +[0-9]+ / {c[$1]+=$2} /^$/ {t=0} END {for (f in c) printf "%-12s %d\n", f, c[f]}' "$D/brick-statedump.txt" | sort -k2 -nr
echo "== md-cache"
sed -n '/^\[rv3-md-cache\]/,/^\[/p' "$D/statedump.txt" | grep -E '^(stat|lookup)_(hits|misses)|^invalidations'
