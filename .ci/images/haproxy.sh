#!/usr/bin/env bash
# Test image itsup-test/haproxy:2.6: Debian's /usr/sbin/haproxy and its libraries in an empty
# rootfs (no registry is reachable). Rebuilt only when the host binary changed. Also tagged
# haproxy:2.6, the rendered default (`versions.haproxy`) of the edge in front of Traefik, so the
# Traefik stack runs as rendered.
set -euo pipefail
cd "$(dirname "$0")/../.."
source .ci/images/lib.bash
bin=/usr/sbin/haproxy
sum=$(cat "$bin" "$0" | sha256sum | cut -c1-16)
if [ "$(image_env itsup-test/haproxy:2.6 HAPROXY_SHA)" = "$sum" ]; then
  docker tag itsup-test/haproxy:2.6 haproxy:2.6
  exit 0
fi
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/tmp" "$rootfs/etc" "$rootfs/var/lib/haproxy" "$rootfs/run"
chmod 1777 "$rootfs/tmp"
copy_with_libs "$rootfs" "$bin"
# glibc looks up users and hosts through nsswitch; HAProxy resolves at start with libc.
for lib in /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libnss_dns.so.2 \
  /lib/x86_64-linux-gnu/libresolv.so.2; do
  [ -e "$lib" ] && { mkdir -p "$rootfs$(dirname "$lib")"; cp -L "$lib" "$rootfs$lib"; }
done
printf 'root:x:0:0:root:/root:/bin/false\nhaproxy:x:99:99::/var/lib/haproxy:/bin/false\nnobody:x:65534:65534::/:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nhaproxy:x:99:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
import_rootfs "$rootfs" itsup-test/haproxy:2.6 "ENV HAPROXY_SHA=$sum" \
  'CMD ["/usr/sbin/haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]'
docker tag itsup-test/haproxy:2.6 haproxy:2.6
