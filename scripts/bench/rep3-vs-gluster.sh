#!/usr/bin/env bash
# A replica 3 volume, Weft beside GlusterFS 10.3's rep3 anchor, in one run, both
# made the way an admin makes them: Weft through `weft mgmtd` (one node on 127.88.0.3, its
# brick process on port+1, `volume create rv3 replica 3 H:/b1 H:/b2 H:/b3 force`: three bricks of one set on one node, start, mount by name),
# GlusterFS through ../shared/bench/gluster-anchor-setup.sh (ANCHOR_VOLS=rep3). Runs
# ../shared/bench/fsbench.sh on both and prints the table (ratios to GlusterFS).
# Run as root. Leaves nothing of Weft behind (mount, mgmtd and brickd stopped by pid at
# exit); the GlusterFS anchor stays mounted (gluster-anchor-teardown.sh removes it).
#   BENCH_DIR (default /srv/weft-bench-rep3), BENCH_HOST (default 127.88.0.3),
#   BENCH_OUT (default $BENCH_DIR/results.jsonl), BENCH_SKIP_BUILD=1 to use the built binary
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
D=${BENCH_DIR:-/srv/weft-bench-rep3}
H=${BENCH_HOST:-127.88.0.3}
OUT=${BENCH_OUT:-$D/results.jsonl}
WEFT=$ROOT/target/release/weft

# shellcheck source=scripts/bench/mgmtd-node.sh
. "$ROOT/scripts/bench/mgmtd-node.sh"
trap mgmtd_node_stop EXIT

[ "${BENCH_SKIP_BUILD:-0}" = 1 ] || (cd "$ROOT" && cargo build --release -q -p weft-cli)
mgmtd_node_stop
rm -rf "$D"
mkdir -p "$D/mnt"
mgmtd_node_start
"$WEFT" volume create rv3 replica 3 "$H:$D/b1" "$H:$D/b2" "$H:$D/b3" force
"$WEFT" volume start rv3
"$WEFT" mount "$H:/rv3" "$D/mnt" --log-file "$D/mount.log"

ANCHOR_VOLS=rep3 "$SHARED/gluster-anchor-setup.sh"
rm -f "$OUT"
FSBENCH_OUT=$OUT "$SHARED/fsbench.sh" /mnt/anchor/rep3 gluster-rep3
FSBENCH_OUT=$OUT "$SHARED/fsbench.sh" "$D/mnt" weft-rep3
python3 "$SHARED/table.py" "$OUT" gluster-rep3
