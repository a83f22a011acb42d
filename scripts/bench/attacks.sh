#!/usr/bin/env bash
# Runs the attacks of crates/cli/tests/attacks.rs (issue 12) against a release
# `weft brickd`, one at a time, and prints a table: per attack, brickd's peak RSS (VmHWM)
# and a second, well-behaved client's stat latency idle and during the attack.
#
#   scripts/bench/attacks.sh            # as root (bricks keep trusted.* xattrs)
#   ATTACKS_LOG=/tmp/attacks.log scripts/bench/attacks.sh   # keep the test output there
#   scripts/bench/attacks.sh --from-log /tmp/attacks.log    # the table of an earlier run
#
# The tests' own bounds apply (they fail if brickd goes over them); see the "Limits"
# section of docs/ARCHITECTURE.md. Figures go to docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "${1:-}" = "--from-log" ]; then
    log=$2
else
    log=${ATTACKS_LOG:-$(mktemp /tmp/weft-attacks.XXXXXX)}
    echo "weft attacks: building and running the release test binary (log: $log)" >&2
    # One test thread: each attack has the machine to itself, so the latency is the attack's.
    cargo test --release -p weft-cli --test attacks -- --nocapture --test-threads=1 >"$log" 2>&1 || {
        echo "weft attacks: the tests failed; see $log" >&2
        grep -E 'attack-report:|panicked|FAILED' "$log" >&2 || true
        exit 1
    }
fi

echo "| attack | brickd peak RSS | stat p50 / p90 idle | stat p50 / p90 / p99 / max during the attack |"
echo "|---|---|---|---|"
# The harness may print "test NAME ... " before a report on the same line.
grep -o 'attack-report:.*' "$log" | sed 's/^attack-report: //' | awk '
function field(name,   i, v) {
    for (i = 1; i <= NF; i++) if (index($i, name "=") == 1) { v = substr($i, length(name) + 2); gsub(/\]/, "", v); return v }
    return "-"
}
{
    name = $1; sub(/:$/, "", name)
    # idle[...] comes first, attacked[...] second: split the line there.
    line = $0
    i = index(line, "attacked[")
    idle = substr(line, 1, i - 1); busy = substr(line, i)
    n = split(idle, a, " "); ip50 = ip90 = "-"
    for (k = 1; k <= n; k++) { if (a[k] ~ /^p50=/) ip50 = substr(a[k], 5); if (a[k] ~ /^p90=/) ip90 = substr(a[k], 5) }
    n = split(busy, b, " "); bp50 = bp90 = bp99 = bmax = "-"
    for (k = 1; k <= n; k++) {
        v = b[k]; gsub(/\]/, "", v)
        if (v ~ /^p50=/) bp50 = substr(v, 5); if (v ~ /^p90=/) bp90 = substr(v, 5)
        if (v ~ /^p99=/) bp99 = substr(v, 5); if (v ~ /^max=/) bmax = substr(v, 5)
    }
    if (i == 0) { ip50 = ip90 = bp50 = bp90 = bp99 = bmax = "-" }
    printf "| %s | %s | %s / %s | %s / %s / %s / %s |\n", name, field("peak_rss"), ip50, ip90, bp50, bp90, bp99, bmax
}'
echo
grep -oE '[0-9,]+ pings written.*|ping flood .*|[0-9]+ connections held.*' "$log" || true
