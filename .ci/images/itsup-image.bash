#!/usr/bin/env bash
# itsup-image.bash BINARY TAG: an image holding one itsup binary as /usr/local/bin/itsup (for
# `itsup agent` beside HAProxy and for engine itsup). Tests build it from the binary under test;
# named .bash so that setup.sh does not run it. Like the other images: no base image, no registry.
set -euo pipefail
bin=$1
tag=$2
cd "$(dirname "$0")/../.."
source .ci/images/lib.bash
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/tmp" "$rootfs/usr/local/bin"
chmod 1777 "$rootfs/tmp"
copy_with_libs "$rootfs" "$bin"
mv "$rootfs$bin" "$rootfs/usr/local/bin/itsup"
strip "$rootfs/usr/local/bin/itsup" 2>/dev/null || true
import_rootfs "$rootfs" "$tag" \
  "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  'CMD ["itsup", "--help"]'
