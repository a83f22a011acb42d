# Sourced by the bench scripts that make their volume through `weft mgmtd`: one node whose
# state lives in $D, listening on $H, run by $WEFT (all three set by the caller).
#   mgmtd_node_start: starts mgmtd under setsid with a pid file, waits until it listens,
#     and exports WEFT_MGMT and WEFT_TOKEN_FILE for the `weft volume ...` commands.
#   mgmtd_node_stop: unmounts $D/mnt and stops mgmtd and its brick process by pid (for
#     `trap mgmtd_node_stop EXIT`).
# shellcheck shell=bash

mgmtd_node_stop() {
  umount "$D/mnt" 2>/dev/null || umount -l "$D/mnt" 2>/dev/null || true
  for p in "$D/mgmtd.pid" "$D/work/run/brickd.pid"; do
    if [ -f "$p" ]; then kill "$(cat "$p")" 2>/dev/null || true; fi
  done
  sleep 0.5
}

mgmtd_node_start() {
  setsid "$WEFT" mgmtd --listen "$H" --workdir "$D/work" --pid-file "$D/mgmtd.pid" \
    </dev/null >"$D/mgmtd.out" 2>"$D/mgmtd.log" &
  for _ in $(seq 100); do grep -q "listening on" "$D/mgmtd.out" 2>/dev/null && break; sleep 0.1; done
  grep -q "listening on" "$D/mgmtd.out" || { echo "mgmtd did not start:"; cat "$D/mgmtd.log"; exit 1; }
  export WEFT_MGMT=$H WEFT_TOKEN_FILE=$D/work/token
}
