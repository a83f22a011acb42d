#!/usr/bin/env bash
# How long an application holding 100 fcntl locks on 100 files takes to work again after
# its brick server is SIGKILLed and restarted (issue 15, "Measure"): builds release and runs
# the ignored test `lock_resume_bench` of crates/cli/tests/lock_reconnect.rs, which per run
# starts a release `weft brickd` (posix < locks < protocol/server) and a `weft mount` of it,
# has a python3 process open 100 files and take an exclusive lock on each, SIGKILLs brickd,
# starts it again on the same port, and times from the moment the new brickd listens until
# a write under each of the 100 locks has succeeded (the process retries while writes fail
# with ENOTCONN). It also reports what the mount's protocol/client itself spent reopening
# the 100 files and taking the 100 locks again (its log line), so the rest is the wait for
# its next reconnect attempt (backoff 100 ms doubling to 3 s after a failed one).
#
#   scripts/bench/lock-resume.sh                 # as root (FUSE, trusted.* xattrs); 5 runs
#   LOCK_RESUME_RUNS=10 scripts/bench/lock-resume.sh
#   LOCK_RESUME_LOG=/tmp/lr.log scripts/bench/lock-resume.sh   # keep the test output there
#
# Figures go to docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
log=${LOCK_RESUME_LOG:-$(mktemp /tmp/weft-lock-resume.XXXXXX)}
echo "weft lock-resume: building and running the release test binary (log: $log)" >&2
LOCK_RESUME_RUNS=${LOCK_RESUME_RUNS:-5} cargo test --release -p weft-cli --test lock_reconnect \
    -- --ignored --nocapture --test-threads=1 lock_resume_bench >"$log" 2>&1 || {
    echo "weft lock-resume: the run failed; see $log" >&2
    grep -E 'lock-resume-report:|panicked|FAILED' "$log" >&2 || true
    exit 1
}

echo "| run | locks | a write under every lock again after | of which protocol/client reopening and relocking |"
echo "|---|---|---|---|"
reports=$(grep -o 'lock-resume-report:.*' "$log" | sed 's/^lock-resume-report: //')
field() { tr ' ' '\n' | sed -n "s/^$1=//p"; }
while read -r line; do
    [ -n "$line" ] || continue
    echo "| $(field run <<<"$line") | $(field locks <<<"$line") | $(field resumed_ms <<<"$line") ms | $(field client_restore_ms <<<"$line") ms |"
done <<<"$reports"
sorted=$(field resumed_ms <<<"$reports" | sort -n)
n=$(wc -l <<<"$sorted")
echo
echo "median $(sed -n "$(( (n + 1) / 2 ))p" <<<"$sorted") ms, min $(head -1 <<<"$sorted") ms, max $(tail -1 <<<"$sorted") ms over $n runs"
