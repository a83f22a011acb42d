#!/usr/bin/env bash
# A 3-brick distributed volume, Weft beside GlusterFS 10.3's dist3 anchor, in one run, both
# made the way an admin makes them: Weft through `weft mgmtd` (one node on 127.88.0.1, its
# brick process on port+1, `volume create dv3 H:/b1 H:/b2 H:/b3`, start, mount by name),
# GlusterFS through ../shared/bench/gluster-anchor-setup.sh (ANCHOR_VOLS=dist3). Runs
# ../shared/bench/fsbench.sh on both and prints the table (ratios to GlusterFS).
# Run as root. Leaves nothing of Weft behind (mount, mgmtd and brickd stopped by pid at
# exit); the GlusterFS anchor stays mounted (gluster-anchor-teardown.sh removes it).
#   BENCH_DIR (default /srv/weft-bench-dist), BENCH_HOST (default 127.88.0.1),
#   BENCH_OUT (default $BENCH_DIR/results.jsonl), BENCH_SKIP_BUILD=1 to use the built binary
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
D=${BENCH_DIR:-/srv/weft-bench-dist}
H=${BENCH_HOST:-127.88.0.1}
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
"$WEFT" volume create dv3 "$H:$D/b1" "$H:$D/b2" "$H:$D/b3"
"$WEFT" volume start dv3
"$WEFT" mount "$H:/dv3" "$D/mnt" --log-file "$D/mount.log"

ANCHOR_VOLS=dist3 "$SHARED/gluster-anchor-setup.sh"
rm -f "$OUT"
FSBENCH_OUT=$OUT "$SHARED/fsbench.sh" /mnt/anchor/dist3 gluster-dist3
FSBENCH_OUT=$OUT "$SHARED/fsbench.sh" "$D/mnt" weft-dist3
python3 "$SHARED/table.py" "$OUT" gluster-dist3
