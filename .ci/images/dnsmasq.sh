#!/usr/bin/env bash
# Test image itsup-test/dnsmasq:debian, for the DNS honeypot (`dns.image` in the tests' itsup.yml):
# Debian's dnsmasq-base (/usr/sbin/dnsmasq) and the libraries `ldd` lists in an empty rootfs (no
# registry is reachable). Rebuilt only when the host binary changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
source .ci/images/lib.bash
bin=/usr/sbin/dnsmasq
tag=itsup-test/dnsmasq:debian
sum=$(cat "$bin" "$0" | sha256sum | cut -c1-16)
[ "$(image_env "$tag" DNSMASQ_SHA)" = "$sum" ] && exit 0
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/tmp" "$rootfs/etc" "$rootfs/var/run" "$rootfs/var/lib/misc"
chmod 1777 "$rootfs/tmp"
copy_with_libs "$rootfs" "$bin"
# dnsmasq drops root for `nobody` (group `dip` in Debian's build) after binding port 53.
for lib in /lib/x86_64-linux-gnu/libnss_files.so.2; do
  [ -e "$lib" ] && { mkdir -p "$rootfs$(dirname "$lib")"; cp -L "$lib" "$rootfs$lib"; }
done
printf 'root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534::/:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\ndip:x:30:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
import_rootfs "$rootfs" "$tag" "ENV DNSMASQ_SHA=$sum" \
  "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  'ENTRYPOINT ["dnsmasq"]' 'CMD ["--keep-in-foreground", "--log-facility=-", "--log-queries"]'
