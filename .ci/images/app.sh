#!/usr/bin/env bash
# Test image itsup-test/app:v1 and :v2: the tiny HTTP app of examples/testapp.rs (reports its
# version, has a healthcheck command). v2 differs only by APP_VERSION, so it has its own image ID.
# `touch` is there for the Traefik drain contract (`touch /tmp/drain` by exec).
# Rebuilt only when the binary changed (its hash is kept in the image's environment).
set -euo pipefail
cd "$(dirname "$0")/../.."
source .ci/images/lib.bash
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --quiet --example testapp
bin="$CARGO_TARGET_DIR/debug/examples/testapp"
sum=$(cat "$bin" "$0" | sha256sum | cut -c1-16)
if [ "$(image_env itsup-test/app:v1 TESTAPP_SHA)" = "$sum" ] \
  && [ "$(image_env itsup-test/app:v2 TESTAPP_SHA)" = "$sum" ]; then
  exit 0
fi
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/tmp" "$rootfs/usr/local/bin"
chmod 1777 "$rootfs/tmp"
cp "$bin" "$rootfs/usr/local/bin/testapp"
copy_with_libs "$rootfs" "$bin" /usr/bin/touch
rm -f "$rootfs$bin"
for v in v1 v2; do
  import_rootfs "$rootfs" "itsup-test/app:$v" \
    "ENV APP_VERSION=$v" "ENV TESTAPP_SHA=$sum" "EXPOSE 8080" \
    'CMD ["/usr/local/bin/testapp"]'
done
