#!/usr/bin/env bash
# Builds itsup-watch-test/testsrv: the `watch_testsrv` example (HTTP reply / TLS echo server,
# health probe) with the shared libraries it links, imported as an image without a registry.
# Idempotent: the image is rebuilt only when the binary changed.
set -euo pipefail
cd "$(dirname "$0")/../.."

image=itsup-watch-test/testsrv:latest
target=${CARGO_TARGET_DIR:-target}
cargo build --quiet --example watch_testsrv
bin="$target/debug/examples/watch_testsrv"
sum=$(sha256sum "$bin" | cut -c1-16)

health=itsup-watch-test/testsrv-health:latest
label() { docker image inspect -f '{{index .Config.Labels "org.itsup.watch-test.sum"}}' "$1" 2>/dev/null || true; }
if [ "$(label "$image")" = "$sum" ] && [ "$(label "$health")" = "$sum" ]; then
  echo "$image and $health are up to date"
  exit 0
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/tmp" "$root/etc"
chmod 1777 "$root/tmp"
cp "$bin" "$root/srv"
strip "$root/srv" 2>/dev/null || true
# The dynamic loader and every library ldd lists, at the same paths as on this machine.
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
tar -C "$root" -c . | docker import \
  --change 'ENTRYPOINT ["/srv"]' \
  --change 'CMD ["http", "8080"]' \
  --change 'EXPOSE 8080' \
  --change "LABEL org.itsup.watch-test.sum=$sum" \
  - "$image" >/dev/null
# The same image with a Docker health check (exec form: there is no shell); `docker import`
# cannot set HEALTHCHECK, a one-line build on the local base can (nothing is pulled).
printf 'FROM %s\nHEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD ["/srv", "health"]\n' "$image" \
  | docker build -q -t "$health" - >/dev/null
echo "built $image and $health ($sum)"
