#!/usr/bin/env bash
# Benchmark of the generator: validate, render and diff of 1000 generated projects, peak RSS,
# and `itsup --version`. Needs hyperfine (apt-get install hyperfine). Prints a markdown table.
# Usage: bench/render.sh [N]   (default 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
cargo build --release -q
bin=$PWD/target/release/itsup
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bash bench/gen-projects.sh "$n" "$work/root"
root=$work/root
"$bin" --root "$root" render -q   # first render, so diff compares against a full tree

hyperfine -N --warmup 3 --runs 30 --export-markdown "$work/hf.md" \
  -n "validate ($n projects)" "$bin --root $root validate -q" \
  -n "diff, nothing changed ($n projects)" "$bin --root $root diff" \
  -n "render into an empty dir ($n projects)" --prepare "rm -rf $work/out" "$bin --root $root render -q --out $work/out" \
  -n "itsup --version" "$bin --version" >/dev/null
cat "$work/hf.md"

rss() { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1; }
echo
echo "| peak RSS | KiB |"
echo "|---|---|"
echo "| validate ($n projects) | $(rss "$bin" --root "$root" validate -q) |"
echo "| diff ($n projects) | $(rss "$bin" --root "$root" diff) |"
rm -rf "$work/out"
echo "| render ($n projects) | $(rss "$bin" --root "$root" render -q --out "$work/out") |"
