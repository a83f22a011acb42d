#!/usr/bin/env bash
# Management plane, Weft's mgmtd beside GlusterFS 10.3's glusterd, in one run (issue: mgmt):
#   1. create -> writable: `volume create` + `volume start` + mount by name + write one 4 KiB
#      file with fsync, on an N-node pool (default 3), the brick on node (i mod N)+1, the
#      mount asking node 1; MB_RUNS times (default 10), a new volume each time, unmounted,
#      stopped and deleted afterwards (not timed). Median and p90, and each step's median.
#   2. MB_SETS (default 100) sequential `volume set VOL network.ping-timeout 42|43` CLI
#      invocations on a started one-brick volume, issued at node 1.
#   3. RSS (VmRSS from /proc/PID/status) of the idle pool with MB_VOLS (default 100) started
#      one-brick volumes (bricks round robin over the nodes), summed over Weft's mgmtd +
#      brickd, and over GlusterFS's glusterd + glusterfsd with cluster.brick-multiplex on
#      (one brick process per node, as Weft's). Also the pool before any volume, so the
#      per-volume cost shows.
# Weft's and GlusterFS's runs of 1 and 2 are interleaved (one Weft iteration, one GlusterFS
# iteration) so that load on this shared machine hits both alike.
#
# Weft: N `weft mgmtd` on 127.87.1.1..N (default port; brickd on port+1), started with
# setsid and pid files, workdirs under a mktemp -d; stopped by pid at the end with their
# brickd (WORKDIR/run/brickd.pid).
# GlusterFS: one glusterd per node is only possible with a network namespace per node
# (glusterd takes every local address as itself, and listens on 24007) and a mount
# namespace per node (its own /var/lib/glusterd, /run, /var/log/glusterfs, bind mounted from
# the workdir). Namespaces mb-g1..N hold 10.254.77.1..N on veth pairs into a bridge in
# namespace mb-gc (10.254.77.100), where the GlusterFS FUSE clients run (their mounts are in
# the ordinary mount namespace). The hooks and groups of /var/lib/glusterd are copied into
# each node's workdir (its volumes, peers and UUID are not). The system's glusterd, its
# state and any /mnt/anchor mounts are not touched. Everything in the namespaces is ended
# at exit and the namespaces deleted.
#
# Run as root: scripts/bench/mgmt-vs-glusterd.sh   (installs glusterfs-server if missing)
#   MB_NODES (3), MB_RUNS (10), MB_SETS (100), MB_VOLS (100), MB_IDLE (settle seconds
#   before reading RSS, 15), MB_SKIP_BUILD=1 to use target/release/weft as it is,
#   MB_KEEP=1 to keep the workdir (logs) at exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NODES=${MB_NODES:-3}
RUNS=${MB_RUNS:-10}
SETS=${MB_SETS:-100}
VOLS=${MB_VOLS:-100}
IDLE=${MB_IDLE:-15}
WEFT=$ROOT/target/release/weft
WNET=127.87.1 # Weft's nodes: $WNET.1..N
GNET=10.254.77 # GlusterFS's nodes (in their namespaces): $GNET.1..N; the client side .100
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
[ "$NODES" -ge 1 ] && [ "$NODES" -le 9 ] || { echo "MB_NODES 1..9" >&2; exit 1; }

D=$(mktemp -d /tmp/mb-mgmt.XXXXXX)
STARTED=0

now() { date +%s%N; }
ms() { echo $(((${2} - ${1}) / 1000000)); } # ms START END

# Ends one process by pid: TERM, up to 10 s, then KILL.
stop_pid() {
  local p=$1 _
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
  kill "$p" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
}

gluster_ns_down() { # ends what runs in our namespaces, deletes them
  local ns p
  for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^mb-g[0-9c]$/ {print $1}'); do
    for p in $(ip netns pids "$ns" 2>/dev/null); do stop_pid "$p"; done
    ip netns del "$ns" 2>/dev/null || true
  done
}

cleanup() {
  set +e
  local m i p
  # Our mounts only (everything under $D), deepest first.
  for m in $(awk -v d="$D/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
  for i in $(seq "$NODES"); do
    stop_pid "$(cat "$D/w$i.pid" 2>/dev/null)"
    stop_pid "$(cat "$D/w$i/run/brickd.pid" 2>/dev/null)"
  done
  gluster_ns_down
  if [ "${MB_KEEP:-0}" = 1 ]; then echo "kept $D" >&2; else rm -rf "$D"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v glusterd >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq glusterfs-server glusterfs-client >/dev/null
}
if [ "${MB_SKIP_BUILD:-0}" != 1 ]; then (cd "$ROOT" && cargo build --release -q -p weft-cli); fi
gluster_ns_down # leftovers of an interrupted run

# ---------------------------------------------------------------- Weft pool
export WEFT_MGMT=$WNET.1 WEFT_TOKEN_FILE=$D/w1/token
w() { "$WEFT" "$@" >>"$D/weft-cli.log" 2>&1 || { echo "weft $* failed:"; tail -5 "$D/weft-cli.log"; return 1; }; }
for i in $(seq "$NODES"); do
  mkdir -p "$D/w$i"
  setsid "$WEFT" mgmtd --listen "$WNET.$i" --workdir "$D/w$i" --pid-file "$D/w$i.pid" \
    </dev/null >"$D/w$i.out" 2>"$D/w$i.log" &
done
for i in $(seq "$NODES"); do
  for _ in $(seq 100); do grep -q listening "$D/w$i.out" 2>/dev/null && break; sleep 0.1; done
  grep -q listening "$D/w$i.out" || { echo "mgmtd $i did not start:"; cat "$D/w$i.log"; exit 1; }
done
for i in $(seq 2 "$NODES"); do w peer probe "$WNET.$i"; done

# ---------------------------------------------------------------- GlusterFS pool
GPIDS=()
ip netns add mb-gc
ip -n mb-gc link set lo up
ip -n mb-gc link add mbbr type bridge
ip -n mb-gc addr add "$GNET.100/24" dev mbbr
ip -n mb-gc link set mbbr up
for i in $(seq "$NODES"); do
  ip netns add "mb-g$i"
  ip link add "mbg$i-a" netns "mb-g$i" type veth peer name "mbg$i-b" netns mb-gc
  ip -n "mb-g$i" link set lo up
  ip -n "mb-g$i" addr add "$GNET.$i/24" dev "mbg$i-a"
  ip -n "mb-g$i" link set "mbg$i-a" up
  ip -n mb-gc link set "mbg$i-b" master mbbr up
  N=$D/g$i
  mkdir -p "$N/lib" "$N/run" "$N/log"
  cp -a /var/lib/glusterd/hooks /var/lib/glusterd/groups "$N/lib/" 2>/dev/null || true
  nsenter --net="/run/netns/mb-g$i" unshare -m --propagation private sh -c \
    "mount --bind $N/lib /var/lib/glusterd && mount --bind $N/log /var/log/glusterfs &&
     mount --bind $N/run /run && exec glusterd -p /run/glusterd.pid"
  for _ in $(seq 100); do [ -s "$N/run/glusterd.pid" ] && break; sleep 0.1; done
  GPIDS+=("$(cat "$N/run/glusterd.pid")")
done
# gluster ARGS at node 1 (its namespaces; the CLI talks to glusterd's unix socket)
g() {
  nsenter -t "${GPIDS[0]}" -m -n gluster --mode=script "$@" >>"$D/gluster-cli.log" 2>&1 ||
    { echo "gluster $* failed:"; tail -5 "$D/gluster-cli.log"; return 1; }
}
for _ in $(seq 100); do g pool list 2>/dev/null && break; sleep 0.2; done
for i in $(seq 2 "$NODES"); do g peer probe "$GNET.$i"; done
for _ in $(seq 100); do
  [ "$(nsenter -t "${GPIDS[0]}" -m -n gluster --mode=script pool list | grep -c Connected)" = "$NODES" ] && break
  sleep 0.2
done
g volume set all cluster.brick-multiplex on

# ---------------------------------------------------------------- 1. create -> writable
mkdir -p "$D/wb" "$D/gb" "$D/mnt"
SAMPLES=$D/samples.tsv # system run total_ms create start mount write teardown
: >"$SAMPLES"
host_of() { echo "$1.$(($2 % NODES + 1))"; } # NET i
for r in $(seq "$RUNS"); do
  v=mb-c$r m=$D/mnt/w$r
  mkdir -p "$m"
  t0=$(now)
  w volume create "$v" "$(host_of $WNET "$r"):$D/wb/$v"
  t1=$(now)
  w volume start "$v"
  t2=$(now)
  "$WEFT" mount --log-file "$D/wmount-$v.log" "$WNET.1:/$v" "$m" >>"$D/weft-cli.log"
  t3=$(now)
  dd if=/dev/zero of="$m/f" bs=4k count=1 conv=fsync status=none
  t4=$(now)
  umount "$m"
  w volume stop "$v"
  w volume delete "$v"
  t5=$(now)
  printf 'weft\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$(ms "$t0" "$t4")" "$(ms "$t0" "$t1")" \
    "$(ms "$t1" "$t2")" "$(ms "$t2" "$t3")" "$(ms "$t3" "$t4")" "$(ms "$t4" "$t5")" >>"$SAMPLES"

  m=$D/mnt/g$r
  mkdir -p "$m"
  t0=$(now)
  g volume create "$v" "$(host_of $GNET "$r"):$D/gb/$v" force
  t1=$(now)
  g volume start "$v"
  t2=$(now)
  nsenter --net=/run/netns/mb-gc mount -t glusterfs -o log-file="$D/gmount-$v.log" "$GNET.1:/$v" "$m"
  t3=$(now)
  dd if=/dev/zero of="$m/f" bs=4k count=1 conv=fsync status=none
  t4=$(now)
  umount "$m"
  g volume stop "$v"
  g volume delete "$v"
  t5=$(now)
  printf 'gluster\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$(ms "$t0" "$t4")" "$(ms "$t0" "$t1")" \
    "$(ms "$t1" "$t2")" "$(ms "$t2" "$t3")" "$(ms "$t3" "$t4")" "$(ms "$t4" "$t5")" >>"$SAMPLES"
  echo "create->writable run $r: $(tail -2 "$SAMPLES" | awk '{printf "%s %s ms  ", $1, $3}')" >&2
done

# ---------------------------------------------------------------- 2. volume set x SETS
w volume create mb-set "$WNET.1:$D/wb/mb-set"
w volume start mb-set
g volume create mb-set "$GNET.1:$D/gb/mb-set" force
g volume start mb-set
WSET=0 GSET=0
for k in $(seq "$SETS"); do
  val=$((42 + k % 2))
  t0=$(now)
  w volume set mb-set network.ping-timeout "$val"
  t1=$(now)
  g volume set mb-set network.ping-timeout "$val"
  t2=$(now)
  WSET=$((WSET + t1 - t0)) GSET=$((GSET + t2 - t1))
done
w volume stop mb-set
w volume delete mb-set
g volume stop mb-set
g volume delete mb-set
echo "volume set x $SETS: weft $((WSET / 1000000)) ms, gluster $((GSET / 1000000)) ms" >&2

# ---------------------------------------------------------------- 3. RSS with VOLS volumes
rss_kib() { # PIDS... -> summed VmRSS in KiB
  local p s=0 v
  for p in "$@"; do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    s=$((s + ${v:-0}))
  done
  echo "$s"
}
weft_pids() {
  local i p
  for i in $(seq "$NODES"); do
    cat "$D/w$i.pid"
    p=$(cat "$D/w$i/run/brickd.pid" 2>/dev/null || true)
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null && echo "$p"
  done
  return 0
}
gluster_pids() { # glusterd and glusterfsd in mb-g1..N
  local i p
  for i in $(seq "$NODES"); do
    for p in $(ip netns pids "mb-g$i"); do
      case $(cat "/proc/$p/comm" 2>/dev/null) in glusterd | glusterfsd) echo "$p" ;; esac
    done
  done
}
count_comm() { local n=0 p; for p in $(cat); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$1" ] && n=$((n + 1)); done; echo $n; }
sleep "$IDLE"
W0=$(rss_kib $(weft_pids)) G0=$(rss_kib $(gluster_pids))
W0P=$(weft_pids | wc -l) G0P=$(gluster_pids | wc -l)
t0=$(now)
for k in $(seq "$VOLS"); do
  v=mb-v$k
  w volume create "$v" "$(host_of $WNET "$k"):$D/wb/$v"
  w volume start "$v"
done
t1=$(now)
for k in $(seq "$VOLS"); do
  v=mb-v$k
  g volume create "$v" "$(host_of $GNET "$k"):$D/gb/$v" force
  g volume start "$v"
done
t2=$(now)
WMASS=$(ms "$t0" "$t1") GMASS=$(ms "$t1" "$t2")
echo "create+start x $VOLS: weft $WMASS ms, gluster $GMASS ms; idle ${IDLE}s" >&2
sleep "$IDLE"
W1=$(rss_kib $(weft_pids)) G1=$(rss_kib $(gluster_pids))
WBRICKD=$(weft_pids | count_comm weft) # includes mgmtd: both are `weft`
GFSD=$(gluster_pids | count_comm glusterfsd)
{
  echo "per process, weft (pid comm VmRSS kB; mgmtd pids: $(cat "$D"/w*.pid | tr '\n' ' '))"
  for p in $(weft_pids); do echo "$p $(cat /proc/$p/comm) $(rss_kib "$p")"; done
  echo "per process, gluster"
  for p in $(gluster_pids); do echo "$p $(cat /proc/$p/comm) $(rss_kib "$p")"; done
} | tee "$D/rss-detail.txt" >&2
# The 100-volume pools are not deleted volume by volume: both pools' whole state lives in
# $D and goes with it at exit.

# ---------------------------------------------------------------- table
python3 - "$SAMPLES" "$NODES" "$RUNS" "$SETS" "$VOLS" "$WSET" "$GSET" \
  "$W0" "$G0" "$W1" "$G1" "$W0P" "$G0P" "$WBRICKD" "$GFSD" "$WMASS" "$GMASS" <<'PY'
import sys, math
(f, nodes, runs, sets, vols, wset, gset, w0, g0, w1, g1, w0p, g0p, wprocs, gfsd,
 wmass, gmass) = sys.argv[1:]
nodes, sets, vols = int(nodes), int(sets), int(vols)
rows = [l.split("\t") for l in open(f) if l.strip()]
def col(sys_, i):
    return sorted(float(r[i]) for r in rows if r[0] == sys_)
def med(xs):
    n = len(xs); return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
def p90(xs):
    return xs[max(0, math.ceil(0.9 * len(xs)) - 1)]
def ratio(w, g):
    return f"{w / g:.2f}x" if g else "-"
mib = lambda k: int(k) / 1024
print()
print(f"Pools of {nodes} node(s) on one machine; Weft on 127.87.1.x, GlusterFS 10.3 in network namespaces.")
print()
print("| metric | weft | glusterfs | weft / glusterfs |")
print("|---|---|---|---|")
for name, i in [("create -> writable, median (ms)", 2)]:
    w, g = med(col("weft", i)), med(col("gluster", i))
    print(f"| {name}, {runs} runs | {w:.0f} | {g:.0f} | {ratio(w, g)} |")
w, g = p90(col("weft", 2)), p90(col("gluster", 2))
print(f"| create -> writable, p90 (ms) | {w:.0f} | {g:.0f} | {ratio(w, g)} |")
for name, i in [("create", 3), ("start", 4), ("mount", 5), ("write 4 KiB + fsync", 6),
                ("teardown (umount + stop + delete, not in the total)", 7)]:
    w, g = med(col("weft", i)), med(col("gluster", i))
    print(f"| &nbsp;&nbsp;{'' if i == 7 else 'of which '}{name}, median (ms) | {w:.0f} | {g:.0f} | {ratio(w, g)} |")
w, g = int(wset) / 1e6, int(gset) / 1e6
print(f"| {sets} x `volume set` (s) | {w / 1000:.2f} | {g / 1000:.2f} | {ratio(w, g)} |")
print(f"| &nbsp;&nbsp;per call (ms) | {w / sets:.1f} | {g / sets:.1f} | {ratio(w, g)} |")
print(f"| RSS, pool with no volume (MiB; {w0p} / {g0p} processes) | {mib(w0):.1f} | {mib(g0):.1f} | {ratio(int(w0), int(g0))} |")
print(f"| RSS, {vols} started volumes (MiB; {wprocs} / {int(gfsd) + nodes} processes) | {mib(w1):.1f} | {mib(g1):.1f} | {ratio(int(w1), int(g1))} |")
dw, dg = (int(w1) - int(w0)) / vols, (int(g1) - int(g0)) / vols
print(f"| RSS per added volume (KiB) | {dw:.0f} | {dg:.0f} | {ratio(dw, dg)} |")
print(f"| create + start {vols} volumes, sequential (s) | {int(wmass) / 1000:.1f} | {int(gmass) / 1000:.1f} | {ratio(int(wmass), int(gmass))} |")
aim = "met" if mib(w1) < 200 else "NOT met"
print()
print(f"Aim (issue): {vols} volumes under 200 MiB RSS for mgmtd + brickd together: {aim} ({mib(w1):.1f} MiB).")
PY
