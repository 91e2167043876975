#!/usr/bin/env bash
# CI's fuzz step (called by .ci/run after the tests): every fuzz target of fuzz/ for a short,
# bounded time (FUZZ_SECS per target, default 20) from its seed corpus. Needs a nightly
# toolchain (skipped with the reason when there is none) and cargo-fuzz (installed from
# crates.io when missing). A crash fails the step; libFuzzer leaves the input under
# fuzz/artifacts/<target>/. bench/fuzz.sh runs the long campaign.
#
# The build is what costs: FUZZ_BUILD (default `--dev -s none`) is an unoptimised build without
# a sanitizer, of the library without its `full` feature (fuzz/Cargo.toml: no CLI, deploy
# engine or agent server, so no Docker API, gRPC or TLS crypto crates). Cold, that is about 4 min
# of CPU; the release build with AddressSanitizer and every dependency took 30 min of wall
# clock on two cores (bench/README.md, "Fuzzing").
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECS=${FUZZ_SECS:-20}
read -r -a BUILD <<<"${FUZZ_BUILD:---dev -s none}"
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz: skipped: no nightly toolchain (cargo fuzz needs one; the product builds on stable)"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  started=$SECONDS
  if ! cargo install --locked cargo-fuzz; then
    echo "fuzz: skipped: cargo-fuzz is not installed and could not be installed from crates.io"
    exit 0
  fi
  echo "fuzz: installed cargo-fuzz in $((SECONDS - started)) s"
fi
# The fuzz crate has its own target folder: its instrumented builds never mix with stable ones.
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target}
started=$SECONDS
cargo +nightly fuzz build "${BUILD[@]}"
echo "fuzz: built the targets (${BUILD[*]}) in $((SECONDS - started)) s"
for target in $(cargo +nightly fuzz list); do
  # A scratch corpus per run: the seeds in the repository stay as they are.
  work=$(mktemp -d)
  cp corpus/"$target"/seed-* "$work"/
  status=0
  cargo +nightly fuzz run "${BUILD[@]}" "$target" "$work" -- -max_total_time="$SECS" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$work.log" 2>&1 || status=$?
  execs=$(awk '/stat::number_of_executed_units/ { print $NF }' "$work.log")
  echo "fuzz: $target: ${SECS} s, ${execs:-?} inputs"
  if [ "$status" != 0 ]; then
    grep -E '^==[0-9]+==|^SUMMARY|panicked' "$work.log" >&2 || true
    tail -40 "$work.log" >&2
    echo "fuzz: $target found a crash (see fuzz/artifacts/$target/)" >&2
    exit 1
  fi
  rm -rf "$work" "$work.log"
done
