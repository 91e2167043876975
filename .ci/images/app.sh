#!/usr/bin/env bash
# Test images itsup-test/app:v1 and :v2: the tiny HTTP app of examples/testapp.rs (reports its
# version, has a healthcheck command). v2 differs only by APP_VERSION, so it has its own image ID.
# `touch` is there for the Traefik drain contract (`touch /tmp/drain` by exec).
# itsup-test/app:example (and :example-broken, failing every request) stand in for the bundled
# example's images (tests tag them under the example's names): the same binary serves every
# port the example's services use and gRPC health on 50051, and is installed as `/api`,
# `wget`, `pg_isready` and `sh` for the example's healthchecks (see examples/testapp.rs).
# Rebuilt only when the binary changed (its hash is kept in the image's environment).
set -euo pipefail
cd "$(dirname "$0")/../.."
source .ci/images/lib.bash
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --quiet --example testapp
bin="$CARGO_TARGET_DIR/debug/examples/testapp"
sum=$(cat "$bin" "$0" | sha256sum | cut -c1-16)
fresh=1
for tag in v1 v2 example example-broken; do
  [ "$(image_env "itsup-test/app:$tag" TESTAPP_SHA)" = "$sum" ] || fresh=0
done
[ "$fresh" = 1 ] && exit 0
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/tmp" "$rootfs/usr/local/bin"
chmod 1777 "$rootfs/tmp"
cp "$bin" "$rootfs/usr/local/bin/testapp"
copy_with_libs "$rootfs" "$bin" /usr/bin/touch
rm -f "$rootfs$bin"
mkdir -p "$rootfs/bin" "$rootfs/usr/bin"
for name in /api /usr/bin/wget /usr/bin/pg_isready /bin/sh; do
  ln "$rootfs/usr/local/bin/testapp" "$rootfs$name"
done
path="ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
for v in v1 v2; do
  import_rootfs "$rootfs" "itsup-test/app:$v" \
    "$path" "ENV APP_VERSION=$v" "ENV TESTAPP_SHA=$sum" "EXPOSE 8080" \
    'CMD ["/usr/local/bin/testapp"]'
done
# The example's ports: web 80, shop-api 8080, db 5432, mqtt 8883 (TCP only), greeter 50051.
example=("$path" "ENV PORTS=80,8080,5432,8883" "ENV GRPC_PORT=50051" "ENV TESTAPP_SHA=$sum")
import_rootfs "$rootfs" itsup-test/app:example "${example[@]}" 'CMD ["/usr/local/bin/testapp"]'
import_rootfs "$rootfs" itsup-test/app:example-broken "${example[@]}" "ENV APP_BROKEN=1" \
  'CMD ["/usr/local/bin/testapp"]'
