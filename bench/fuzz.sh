#!/usr/bin/env bash
# The long fuzz campaign: every target of fuzz/ for SECS seconds (default 600), growing its
# corpus under fuzz/corpus/<target>/ (only the seed-* files are in git). Prints per target the
# executions, executions/s, corpus size and whether it crashed (the input is then under
# fuzz/artifacts/<target>/; turn it into a regression test beside the code). Needs nightly and
# cargo-fuzz (`cargo install --locked cargo-fuzz`). CI's short run is .ci/fuzz.sh.
# FUZZ_BUILD: cargo-fuzz's build flags, default an optimised build with debug assertions and
# without a sanitizer, 16 codegen units (cargo-fuzz's default of one unit and AddressSanitizer
# took 30 min cold on two cores; itsup's own code has no `unsafe` to sanitize beyond a few libc
# calls). `FUZZ_BUILD=-O` gives cargo-fuzz's defaults back.
# Usage: bench/fuzz.sh [seconds per target] [target…]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECS=${1:-600}
shift || true
read -r -a BUILD <<<"${FUZZ_BUILD:--O -s none --codegen-units 16}"
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target}
cargo +nightly fuzz build "${BUILD[@]}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
printf '%-16s %12s %10s %8s %8s %s\n' target executions "exec/s" coverage corpus result
for t in "${targets[@]}"; do
  log=$(mktemp)
  status=0
  cargo +nightly fuzz run "${BUILD[@]}" "$t" -- -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs=$(awk '/stat::number_of_executed_units/ { print $NF }' "$log")
  rate=$(awk '/stat::average_exec_per_sec/ { print $NF }' "$log")
  # libFuzzer's last status line: `cov:` counts the code edges (sancov PCs) reached so far.
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  corpus=$(find "corpus/$t" -type f | wc -l)
  result=ok
  [ "$status" = 0 ] || result="CRASH (exit $status, see fuzz/artifacts/$t/; log $log)"
  printf '%-16s %12s %10s %8s %8s %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$corpus" \
    "$result"
  [ "$status" = 0 ] && rm -f "$log"
done
