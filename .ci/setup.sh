#!/usr/bin/env bash
# Installs what the test suite needs on a Debian machine (idempotent), then builds the local test
# images (no registry is reachable: every image a test uses is built here from local binaries).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in haproxy nginx-light wrk hyperfine procps chromium pebble redis-server dnsmasq-base busybox-static ca-certificates openssl curl zsh fish; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

for script in .ci/images/*.sh; do
  [ -e "$script" ] || continue
  echo "building test image: $script"
  bash "$script"
done
