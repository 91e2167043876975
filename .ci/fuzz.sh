#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for a short, bounded time from its seed corpus (nightly +
# cargo-fuzz; skipped with a note without a nightly toolchain). FUZZ_SECS per target (default
# 30); bench/fuzz.sh runs the long campaign. A crash fails the step; libFuzzer leaves the input
# under fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECS=${FUZZ_SECS:-30}
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz: no nightly toolchain, skipped"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
# The fuzz crate has its own target folder: its instrumented builds never mix with stable ones.
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target}
cargo +nightly fuzz build
for target in $(cargo +nightly fuzz list); do
  # A scratch corpus per run: the seeds in the repository stay as they are.
  work=$(mktemp -d)
  cp corpus/"$target"/seed-* "$work"/
  echo "fuzz: $target for ${SECS}s"
  status=0
  cargo +nightly fuzz run "$target" "$work" -- -max_total_time="$SECS" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 >"$work.log" 2>&1 || status=$?
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|^==[0-9]+==|^SUMMARY|panicked' "$work.log" || true
  if [ "$status" != 0 ]; then
    tail -40 "$work.log" >&2
    echo "fuzz: $target found a crash (see fuzz/artifacts/$target/)" >&2
    exit 1
  fi
  rm -rf "$work" "$work.log"
done
