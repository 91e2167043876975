#!/usr/bin/env bash
# The long fuzz campaign: every target of fuzz/ for SECS seconds (default 600), growing its
# corpus under fuzz/corpus/<target>/ (only the seed-* files are in git). Prints per target the
# executions, executions/s, corpus size and whether it crashed (the input is then under
# fuzz/artifacts/<target>/; turn it into a regression test beside the code). Needs nightly and
# cargo-fuzz (`cargo install --locked cargo-fuzz`). CI's short run is .ci/fuzz.sh.
# Usage: bench/fuzz.sh [seconds per target] [target…]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECS=${1:-600}
shift || true
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target}
cargo +nightly fuzz build
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
printf '%-16s %12s %10s %8s %s\n' target executions "exec/s" corpus result
for t in "${targets[@]}"; do
  log=$(mktemp)
  status=0
  cargo +nightly fuzz run "$t" -- -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs=$(awk -F: '/stat::number_of_executed_units/ { gsub(/ /, "", $2); print $2 }' "$log")
  rate=$(awk -F: '/stat::average_exec_per_sec/ { gsub(/ /, "", $2); print $2 }' "$log")
  corpus=$(find "corpus/$t" -type f | wc -l)
  result=ok
  [ "$status" = 0 ] || result="CRASH (exit $status, see fuzz/artifacts/$t/; log $log)"
  printf '%-16s %12s %10s %8s %s\n' "$t" "${execs:-?}" "${rate:-?}" "$corpus" "$result"
  [ "$status" = 0 ] && rm -f "$log"
done
