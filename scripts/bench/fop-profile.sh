#!/usr/bin/env bash
# Where the time of small-file work goes: one brick over loopback with debug/io-stats
# above the client caches (e-top), under them (e-low), and in the brick graph above and
# below features/locks (e, e-bottom). Creates FILES files of 4 KiB, drops the page cache,
# reads them back, and prints the rates and every io-stats table (FOP counts and latency)
# of the mount (`weft statedump`) and of the brick (`weft brickd statedump`).
# Gives the "where the time goes" figures of docs/BENCHMARKS.md (2026-12-03).
# Run as root. Leaves nothing mounted and no process behind. TREE=1 adds the ls -lR runs;
# REREAD=1 times open+close and open+read+close of the files again (page cache kept);
# FIO=1 runs 10 s of fio 4 KiB random writes (psync, as fsbench) and prints the IOPS.
# Each phase also prints the CPU time and context switches per operation of brickd and
# of the mount (from /proc; what went behind is counted one second after the phase).
#   BENCH_DIR (default /srv/weft-fop-profile), BENCH_PORT (default 24790), FILES (2000),
#   META=1 (rename, delete, mkdir phases), SEQ=1 (1 GiB write and read, cold random reads;
#   SEQ_FSYNC=0: the write without fsync at its end, so the disk's flush does not set it),
#   WEFT=PATH (a built binary; no build), MOUNT_ARGS (extra `weft mount` arguments),
#   READ_AHEAD=off (performance/read-ahead passes reads down), RA_PAGES (its page-count, 8),
#   ENTRY_BEHIND=off (performance/entry-behind asks for no lease: every change waits),
#   LS=1 (an `ls -l` of the files, caches dropped, between the create and read phases;
#   LS_STRACE=1 also counts brickd's system calls during it, with strace -c; LS_PERF=1
#   prints where brickd's and the mount's CPU went during it, with perf record -g),
#   CREATE_PERF=1 (the same perf report for the create phase)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
D=${BENCH_DIR:-/srv/weft-fop-profile}
PORT=${BENCH_PORT:-24790}
FILES=${FILES:-2000}
# WEFT=PATH runs that binary (no build): A/B runs of two builds, copied aside.
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
volume e-posix
    type storage/posix
    option directory $D/brick
end-volume
volume e-bottom
    type debug/io-stats
    subvolumes e-posix
end-volume
volume e-locks
    type features/locks
    subvolumes e-bottom
end-volume
volume e-up
    type features/upcall
    option cache-invalidation on
    subvolumes e-locks
end-volume
volume e
    type debug/io-stats
    subvolumes e-up
end-volume
volume e-server
    type protocol/server
    option auth.allow 127.0.0.1
    subvolumes e
end-volume
VOL
cat >"$D/client.vol" <<VOL
volume e-client
    type protocol/client
    option remote-host 127.0.0.1
    option remote-port $PORT
    option remote-subvolume e
    option cache-invalidation on
end-volume
volume e-low
    type debug/io-stats
    subvolumes e-client
end-volume
volume e-entry-behind
    type performance/entry-behind
    option enable ${ENTRY_BEHIND:-on}
    subvolumes e-low
end-volume
volume e-wb
    type performance/write-behind
    subvolumes e-entry-behind
end-volume
volume e-read-ahead
    type performance/read-ahead
    option enable ${READ_AHEAD:-on}
    option page-count ${RA_PAGES:-8}
    subvolumes e-wb
end-volume
volume e-quick-read
    type performance/quick-read
    option cache-timeout 60
    subvolumes e-read-ahead
end-volume
volume e-md-cache
    type performance/md-cache
    option cache-invalidation on
    option md-cache-timeout 60
    subvolumes e-quick-read
end-volume
volume e-top
    type debug/io-stats
    subvolumes e-md-cache
end-volume
VOL
setsid "$WEFT" brickd --listen "127.0.0.1:$PORT" --volfile "$D/server.vol" \
  --control "$D/brickd.sock" --pid-file "$D/brickd.pid" \
  </dev/null >"$D/brickd.out" 2>"$D/brickd.log" &
for _ in $(seq 100); do grep -q "listening on" "$D/brickd.out" 2>/dev/null && break; sleep 0.1; done
grep -q "listening on" "$D/brickd.out" || { echo "brickd did not start:"; cat "$D/brickd.log"; exit 1; }
# shellcheck disable=SC2086 # MOUNT_ARGS: extra `weft mount` arguments, split on spaces
"$WEFT" mount ${MOUNT_ARGS:-} --volfile "$D/client.vol" --log-file "$D/mount.log" "$D/mnt"
phase() { # create|read
  python3 - "$D/mnt/s" "$FILES" "$1" <<'PY'
import os, sys, time
d, n, phase = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = os.urandom(4096)
names = ["f%06d" % i for i in range(n)]
t = time.perf_counter()
if phase == "create":
    os.makedirs(d, exist_ok=True)
    for nm in names:
        fd = os.open(os.path.join(d, nm), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
        os.write(fd, data); os.close(fd)
else:
    for nm in names:
        with open(os.path.join(d, nm), "rb") as f: f.read()
print("%s: %d files/s" % (phase, n / (time.perf_counter() - t)))
PY
}
# CPU time (µs) and context switches (all threads) of brickd and of the mount so far:
# "cpu_us cs" per process, to report per-operation costs of a phase.
MOUNT_PID=$(pgrep -f -- "--volfile $D/client.vol" | head -1)
usage() { # PID -> "cpu_us ctx_switches"
  local cs=0 t
  for t in /proc/"$1"/task/*/status; do
    cs=$((cs + $(awk '/ctxt_switches/ {s += $2} END {print s}' "$t")))
  done
  echo "$(( $(awk '{print $14 + $15}' /proc/"$1"/stat) * 1000000 / $(getconf CLK_TCK) )) $cs"
}
costs() { # OPS LABEL BRICK_BEFORE MOUNT_BEFORE: per-operation CPU and switches since then
  local b m
  b=$(usage "$(cat "$D/brickd.pid")"); m=$(usage "$MOUNT_PID")
  python3 - "$1" "$2" "$3" "$b" "$4" "$m" <<'PY'
import sys
n, what = int(sys.argv[1]), sys.argv[2]
(b0, bc0), (b1, bc1) = map(int, sys.argv[3].split()), map(int, sys.argv[4].split())
(m0, mc0), (m1, mc1) = map(int, sys.argv[5].split()), map(int, sys.argv[6].split())
print("%s per op: brick %.0f us CPU, %.1f switches; mount %.0f us CPU, %.1f switches"
      % (what, (b1 - b0) / n, (bc1 - bc0) / n, (m1 - m0) / n, (mc1 - mc0) / n))
PY
}
# perf_start PHASE / perf_report PHASE WHAT: perf record -g of brickd and of the mount
# during a phase, then the top of each report (children).
perf_start() {
  command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)"; exit 2; }
  perf record -q -g -o "$D/perf-$1-brick.data" -p "$(cat "$D/brickd.pid")" 2>/dev/null &
  PERF_B=$!
  perf record -q -g -o "$D/perf-$1-mount.data" -p "$MOUNT_PID" 2>/dev/null &
  PERF_M=$!
  sleep 1
}
perf_report() {
  kill -INT "$PERF_B" "$PERF_M"; wait "$PERF_B" "$PERF_M" 2>/dev/null || true
  local w
  for w in brick mount; do
    echo "== $w's CPU during $2 (perf report, children, top 40)"
    perf report -i "$D/perf-$1-$w.data" --children --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -40 || true
  done
}
if [ "${CREATE_PERF:-0}" = 1 ]; then perf_start create; fi
B0=$(usage "$(cat "$D/brickd.pid")"); M0=$(usage "$MOUNT_PID")
phase create
sleep 1 # what went behind reaches the brick
costs "$FILES" create "$B0" "$M0"
if [ "${CREATE_PERF:-0}" = 1 ]; then perf_report create "the creates"; fi
echo "== after create: mount"; "$WEFT" statedump "$D/mnt" | grep -E '^\[e-(top|low)\]|^[a-z]+ +[0-9]+ '
"$WEFT" statedump "$D/mnt" | sed -n '/^\[e-entry-behind\]/,/^\[/p' | grep -E '^(leased_dirs|behind|creates|creates_with_content|mkdirs|leases|waits|failures)'
echo "== after create: brick"; "$WEFT" brickd statedump --control "$D/brickd.sock" | grep -E '^\[e(-bottom)?\]|^[a-z]+ +[0-9]+ '
sync; echo 3 >/proc/sys/vm/drop_caches
if [ "${LS:-0}" = 1 ]; then # LS=1: an `ls -l` of the files (as fsbench's), caches dropped
  # LS_STRACE=1: brickd's system calls during the listing (strace -c, all threads).
  if [ "${LS_STRACE:-0}" = 1 ]; then
    command -v strace >/dev/null || { echo "LS_STRACE=1 needs strace (apt-get install strace)"; exit 2; }
    strace -c -f -p "$(cat "$D/brickd.pid")" -o "$D/strace-ls.txt" 2>/dev/null &
    STRACE_PID=$!
    sleep 1
  fi
  # LS_PERF=1: where brickd's and the mount's CPU goes during the listing (perf record).
  if [ "${LS_PERF:-0}" = 1 ]; then perf_start ls; fi
  LB=$(usage "$(cat "$D/brickd.pid")"); LM=$(usage "$MOUNT_PID")
  python3 - "$D/mnt/s" <<'PY'
import os, sys, time
t = time.perf_counter()
with os.scandir(sys.argv[1]) as it:
    for e in it: e.stat(follow_symlinks=False)
print("ls -l: %.3f s" % (time.perf_counter() - t))
PY
  costs "$FILES" "ls -l entry" "$LB" "$LM"
  if [ "${LS_PERF:-0}" = 1 ]; then perf_report ls "the listing"; fi
  if [ -n "${STRACE_PID:-}" ]; then
    kill -INT "$STRACE_PID"; wait "$STRACE_PID" 2>/dev/null || true
    echo "== brickd's system calls during the listing"; head -20 "$D/strace-ls.txt"
  fi
  echo "== after ls -l (cumulative): requests from the kernel"
  "$WEFT" statedump "$D/mnt" | sed -n '/^\[e-top\]/,/^\[/p' | grep -E '^[a-z]+ +[0-9]+ '
  sync; echo 3 >/proc/sys/vm/drop_caches
fi
phase read
echo "== after read (cumulative): mount"; "$WEFT" statedump "$D/mnt" | grep -E '^\[e-(top|low)\]|^[a-z]+ +[0-9]+ '
echo "== after read (cumulative): brick"; "$WEFT" brickd statedump --control "$D/brickd.sock" | grep -E '^\[e(-bottom)?\]|^[a-z]+ +[0-9]+ '
# TREE=1: also the listing figures of BENCHMARKS "2026-12-03, later": 10 directories of
# 1,000 empty files, kernel caches dropped, `ls -lR` three times (first, second, third).
if [ "${TREE:-0}" = 1 ]; then
  python3 - "$D/mnt/t" <<'PY'
import os, sys
for d in range(10):
    p = os.path.join(sys.argv[1], "d%02d" % d); os.makedirs(p, exist_ok=True)
    for i in range(1000):
        open(os.path.join(p, "f%04d" % i), "w").close()
PY
  sync; echo 3 >/proc/sys/vm/drop_caches
  for run in first second third; do
    s=$(date +%s.%N); ls -lR "$D/mnt/t" >/dev/null; e=$(date +%s.%N)
    echo "ls -lR $run: $(python3 -c "print(round($e - $s, 3))") s"
  done
fi
if [ "${REREAD:-0}" = 1 ]; then
  python3 - "$D/mnt/s" "$FILES" <<'PY'
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
names = [os.path.join(d, "f%06d" % i) for i in range(n)]
for what in ("open+close", "open+read+close"):
    t = time.perf_counter()
    for p in names:
        fd = os.open(p, os.O_RDONLY)
        if what != "open+close":
            os.read(fd, 4097)
        os.close(fd)
    print("%s: %.1f us per file" % (what, (time.perf_counter() - t) / n * 1e6))
PY
fi
# META=1: rename, delete and mkdir as fsbench does them (5000 renames and unlinks of the
# files made above, 20 x 100 directories), with each phase's rate and the io-stats after.
if [ "${META:-0}" = 1 ]; then
  for what in rename delete mkdir; do
    B0=$(usage "$(cat "$D/brickd.pid")"); M0=$(usage "$MOUNT_PID")
    python3 - "$D/mnt" "$FILES" "$what" <<'PY'
import os, sys, time
root, n, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
d = os.path.join(root, "s")
names = ["f%06d" % i for i in range(n)]
t = time.perf_counter()
if what == "rename":
    for nm in names: os.rename(os.path.join(d, nm), os.path.join(d, "r" + nm))
elif what == "delete":
    for nm in names: os.unlink(os.path.join(d, "r" + nm))
else:
    n = 2020
    for i in range(20):
        p = os.path.join(root, "tree", "d%02d" % i); os.makedirs(p)
        for j in range(100): os.mkdir(os.path.join(p, "s%03d" % j))
print("%s: %d per s" % (what, n / (time.perf_counter() - t)))
PY
    sleep 1 # what went behind reaches the brick
    costs "$([ "$what" = mkdir ] && echo 2020 || echo "$FILES")" "$what" "$B0" "$M0"
    echo "== after $what (cumulative): mount"; "$WEFT" statedump "$D/mnt" | grep -E '^\[e-(top|low)\]|^[a-z]+ +[0-9]+ '
    echo "== after $what (cumulative): brick"; "$WEFT" brickd statedump --control "$D/brickd.sock" | grep -E '^\[e(-bottom)?\]|^[a-z]+ +[0-9]+ '
  done
fi
# SEQ=1: fsbench's sequential rows on this setup: 1 GiB written in 1 MiB writes, caches
# dropped, read back in 1 MiB reads (MiB/s); then 4 KiB random reads of a cold 256 MiB
# file for 8 s (IOPS); and the kernel's read-ahead window of the mount.
if [ "${SEQ:-0}" = 1 ]; then
  echo "read-ahead: $(cat "/sys/class/bdi/$(mountpoint -d "$D/mnt")/read_ahead_kb") KiB"
  # The disk's reads during the read phase: how many, and their mean size.
  DEV=$(lsblk -no PKNAME,KNAME "$(findmnt -no SOURCE --target "$D")" 2>/dev/null | awk 'NR==1{print ($1 != "" ? $1 : $2)}')
  disk_reads() { awk -v d="$DEV" '$3 == d {print $4, $6}' /proc/diskstats; }
  for rw in write read; do
    [ "$rw" = read ] && { sync; echo 3 >/proc/sys/vm/drop_caches; read -r R0 S0 < <(disk_reads)
      B0=$(usage "$(cat "$D/brickd.pid")"); M0=$(usage "$MOUNT_PID")
      if [ "${SEQ_PERF:-0}" = 1 ]; then perf_start seqread; fi; }
    fio --name=s --filename="$D/mnt/seq" --rw=$rw --bs=1M --size=1g --ioengine=psync \
        --end_fsync=$([ $rw = write ] && echo "${SEQ_FSYNC:-1}" || echo 0) --output-format=json 2>/dev/null |
      python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; s=j["read"] if j["read"]["io_bytes"] else j["write"]; print("seq '$rw': %.0f MiB/s" % (s["bw_bytes"]/1048576))'
  done
  read -r R1 S1 < <(disk_reads)
  costs 1024 "seq read of 1 MiB" "$B0" "$M0"
  if [ "${SEQ_PERF:-0}" = 1 ]; then perf_report seqread "the sequential read"; fi
  echo "disk reads during the read: $((R1 - R0)), $(( (S1 - S0) / 2 / ((R1 - R0) > 0 ? R1 - R0 : 1) )) KiB each"
  rm -f "$D/mnt/seq"
  "$WEFT" statedump "$D/mnt" | sed -n '/^\[e-read-ahead\]/,/^\[/p' | grep -E '^(hits|misses|pages_|evictions)'
  "$WEFT" statedump "$D/mnt" | sed -n '/^\[e-low\]/,/^\[/p' | grep -E '^readv '
  "$WEFT" brickd statedump --control "$D/brickd.sock" | grep -E '^\[e(-bottom)?\]|^readv '
  fio --name=r --filename="$D/mnt/rr" --rw=randwrite --bs=4k --size=256m --ioengine=psync \
      --time_based --runtime=3 --fsync_on_close=1 --output-format=json >/dev/null 2>&1
  sync; echo 3 >/proc/sys/vm/drop_caches
  fio --name=r --filename="$D/mnt/rr" --rw=randread --bs=4k --size=256m --ioengine=psync \
      --time_based --runtime=8 --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print("randread 4k cold: %d IOPS" % j["read"]["iops"])'
  "$WEFT" statedump "$D/mnt" | sed -n '/^\[e-read-ahead\]/,/^\[/p' | grep -E '^(hits|misses|pages_|evictions)' | tr '\n' ' '; echo
  rm -f "$D/mnt/rr"
fi
if [ "${FIO:-0}" = 1 ]; then
  B0=$(usage "$(cat "$D/brickd.pid")"); M0=$(usage "$MOUNT_PID")
  n=$(fio --name=r --filename="$D/mnt/fio.rand" --rw=randwrite --bs=4k --size=256m \
      --ioengine=psync --time_based --runtime=10 --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print("%d %d" % (j["write"]["iops"], j["write"]["total_ios"]))')
  echo "randwrite 4k: ${n% *} IOPS"
  costs "${n#* }" "randwrite 4k" "$B0" "$M0"
fi
