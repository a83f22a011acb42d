#!/usr/bin/env bash
# Heal time after a brick outage, Weft beside GlusterFS 10.3, in one run: a replica 3
# volume, one brick down while FILES files of SIZE_MB MiB each are written (1,000 x 1 MiB =
# 1 GiB by default), then the brick back; the time from bringing it back until heal info
# shows nothing pending, and the copies compared.
# - Weft: a pool of three `weft mgmtd` nodes on 127.88.1.{1,2,3} (one brick each, so one
#   brick process can be killed), `volume create hv replica 3`, mounted by name. Outage:
#   node 3's mgmtd and brick process SIGKILLed; back: its mgmtd started again (it starts
#   the brick process; every node's self-heal daemon heals from its bricks' index).
# - GlusterFS: ../shared/bench/gluster-anchor-setup.sh (ANCHOR_VOLS=rep3, three bricks on
#   this host, one glusterfsd each). Outage: the third brick's glusterfsd SIGKILLed; back:
#   `gluster volume start rep3 force` (its self-heal daemon heals).
# Prints one line per system and appends JSON lines to BENCH_OUT. Run as root. Leaves
# nothing of Weft behind; the GlusterFS anchor stays mounted (gluster-anchor-teardown.sh).
#   FILES (default 1000), SIZE_MB (default 1), BENCH_DIR (default /srv/weft-bench-heal),
#   BENCH_OUT (default $BENCH_DIR/heal.jsonl), BENCH_SKIP_BUILD=1, SKIP_GLUSTER=1
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
D=${BENCH_DIR:-/srv/weft-bench-heal}
OUT=${BENCH_OUT:-$D/heal.jsonl}
FILES=${FILES:-1000}
SIZE_MB=${SIZE_MB:-1}
WEFT=$ROOT/target/release/weft
HOSTS=(127.88.1.1 127.88.1.2 127.88.1.3)

cleanup() {
  umount "$D/mnt" 2>/dev/null || umount -l "$D/mnt" 2>/dev/null || true
  for n in 1 2 3; do
    for p in "$D/n$n/mgmtd.pid" "$D/n$n/work/run/brickd.pid"; do
      if [ -f "$p" ]; then kill -9 "$(cat "$p")" 2>/dev/null || true; fi
    done
  done
  sleep 0.5
}
trap cleanup EXIT

now() { date +%s.%N; }
# The most a heal may take before the run gives up on it.
HEAL_MAX=${HEAL_MAX:-1800}

# Fails the run when heal has taken longer than HEAL_MAX seconds since $1.
give_up_after() {
  if python3 -c "import sys; sys.exit(0 if $(now) - $1 > $HEAL_MAX else 1)"; then
    echo "$2: heal did not finish within $HEAL_MAX s" >&2
    exit 1
  fi
}

# Writes the files into directory $1 (FILES x SIZE_MB MiB, random bytes).
write_files() {
  mkdir -p "$1"
  head -c $((SIZE_MB * 1048576)) /dev/urandom >"$D/blob"
  for i in $(seq "$FILES"); do
    # Each file differs: its number at the front.
    { printf '%08d' "$i"; tail -c +9 "$D/blob"; } >"$1/f$i"
  done
}

# Compares the files of directory $1 with those of directory $2 (md5 of every file).
same_files() {
  local a b
  a=$(cd "$1" && find . -type f -name 'f*' -print0 | sort -z | xargs -0 md5sum | md5sum)
  b=$(cd "$2" && find . -type f -name 'f*' -print0 | sort -z | xargs -0 md5sum | md5sum)
  [ "$a" = "$b" ]
}

report() { # system seconds same
  echo "$1: healed $FILES files x ${SIZE_MB} MiB in $2 s (copies identical: $3)"
  printf '{"system":"%s","files":%s,"size_mb":%s,"heal_seconds":%s,"identical":%s,"date":"%s"}\n' \
    "$1" "$FILES" "$SIZE_MB" "$2" "$3" "$(date -u +%F)" >>"$OUT"
}

start_node() { # n
  local n=$1 h=${HOSTS[$(($1 - 1))]}
  : >"$D/n$n/mgmtd.out"
  setsid "$WEFT" mgmtd --listen "$h" --workdir "$D/n$n/work" --pid-file "$D/n$n/mgmtd.pid" \
    </dev/null >>"$D/n$n/mgmtd.out" 2>>"$D/n$n/mgmtd.log" &
  disown
  for _ in $(seq 100); do grep -q "listening on" "$D/n$n/mgmtd.out" 2>/dev/null && break; sleep 0.1; done
  grep -q "listening on" "$D/n$n/mgmtd.out" || { echo "mgmtd $n did not start:"; cat "$D/n$n/mgmtd.log"; exit 1; }
}

weft_pending() { # total pending over the bricks, or -1 while a brick is not connected
  "$WEFT" volume heal hv info summary --json | python3 -c '
import json, sys
b = json.load(sys.stdin)["bricks"]
print(-1 if any(x["status"] != "Connected" for x in b) else sum(x["pending"] for x in b))'
}

[ "${BENCH_SKIP_BUILD:-0}" = 1 ] || (cd "$ROOT" && cargo build --release -q -p weft-cli)
cleanup
rm -rf "$D"
mkdir -p "$D/mnt" "$D/n1" "$D/n2" "$D/n3"
mkdir -p "$(dirname "$OUT")"

# Weft.
for n in 1 2 3; do start_node $n; done
export WEFT_MGMT=${HOSTS[0]} WEFT_TOKEN_FILE=$D/n1/work/token
"$WEFT" peer probe "${HOSTS[1]}" >/dev/null
"$WEFT" peer probe "${HOSTS[2]}" >/dev/null
"$WEFT" volume create hv replica 3 "${HOSTS[0]}:$D/b1" "${HOSTS[1]}:$D/b2" "${HOSTS[2]}:$D/b3" >/dev/null
"$WEFT" volume start hv >/dev/null
"$WEFT" mount "${HOSTS[0]}:/hv" "$D/mnt" --log-file "$D/mount.log"
kill -9 "$(cat "$D/n3/mgmtd.pid")" "$(cat "$D/n3/work/run/brickd.pid")"
sleep 1
write_files "$D/mnt/heal"
t0=$(now)
start_node 3
while :; do
  p=$(weft_pending || echo -1)
  [ "$p" = 0 ] && break
  give_up_after "$t0" weft
  sleep 0.5
done
t1=$(now)
secs=$(python3 -c "print(round($t1 - $t0, 1))")
same=false
same_files "$D/b1/heal" "$D/b3/heal" && same=true
report weft "$secs" "$same"
cleanup

[ "${SKIP_GLUSTER:-0}" = 1 ] && exit 0
# GlusterFS.
ANCHOR_VOLS=rep3 "$SHARED/gluster-anchor-setup.sh"
BR=${ANCHOR_BRICKS:-/srv/anchor}
G=${ANCHOR_MNT:-/mnt/anchor}/rep3
rm -rf "$G/heal"
gluster --mode=script volume set rep3 cluster.self-heal-daemon on >/dev/null
pid=$(gluster volume status rep3 | awk -v b="$BR/rep3-b3" '$0 ~ b {print $NF}')
kill -9 "$pid"
sleep 1
write_files "$G/heal"
t0=$(now)
gluster --mode=script volume start rep3 force >/dev/null
while :; do
  n=$(gluster volume heal rep3 info summary 2>/dev/null |
    awk -F: '/Total Number of entries:/ {s += $2} /Transport endpoint|not connected/ {s = -1e9} END {print s + 0}')
  [ "$n" = 0 ] && break
  give_up_after "$t0" glusterfs
  sleep 0.5
done
t1=$(now)
secs=$(python3 -c "print(round($t1 - $t0, 1))")
same=false
same_files "$BR/rep3-b1/heal" "$BR/rep3-b3/heal" && same=true
report glusterfs "$secs" "$same"
rm -rf "$G/heal"
