#!/usr/bin/env bash
# dist/release.sh [OUTDIR]: builds the release binary, strips it and writes
#   OUTDIR/itsup-<version>-<target>.tar.gz   (binary, README.md, LICENSE, completions, man page,
#                                             systemd unit examples)
#   OUTDIR/SHA256SUMS
# OUTDIR defaults to dist/out. Overrides (tests use the debug binary to stay fast):
#   ITSUP_BIN=path     package this binary instead of building one
#   PROFILE=name       cargo profile to build (default release)
#   TARGET=triple      target triple to build for and name the archive after (default: host)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-dist/out}")
profile=${PROFILE:-release}
target=${TARGET:-$(rustc -vV | sed -n 's/^host: //p')}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)

if [[ -n "${ITSUP_BIN:-}" ]]; then
  bin=$ITSUP_BIN
else
  cargo build --locked --profile "$profile" --target "$target"
  dir=$profile
  [[ $profile == dev ]] && dir=debug
  bin=${CARGO_TARGET_DIR:-target}/$target/$dir/itsup
fi

name=itsup-$version-$target
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg=$stage/$name
mkdir -p "$pkg/completions" "$pkg/man" "$pkg/systemd"
cp "$bin" "$pkg/itsup"
strip "$pkg/itsup"
cp README.md LICENSE "$pkg/"
cp dist/systemd/*.service "$pkg/systemd/"
"$pkg/itsup" completions bash >"$pkg/completions/itsup.bash"
"$pkg/itsup" completions zsh >"$pkg/completions/_itsup"
"$pkg/itsup" completions fish >"$pkg/completions/itsup.fish"
"$pkg/itsup" man >"$pkg/man/itsup.1"

mkdir -p "$out"
tar -C "$stage" --owner=0 --group=0 --sort=name -czf "$out/$name.tar.gz" "$name"
(cd "$out" && sha256sum -- *.tar.gz >SHA256SUMS)
echo "$out/$name.tar.gz"
