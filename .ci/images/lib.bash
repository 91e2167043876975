# Shared helpers of the image scripts (sourced; named .bash so setup.sh does not run it).
# Builds rootfs folders from host binaries plus the libraries `ldd` lists: no base image can be pulled.

# copy_with_libs ROOTFS BINARY...: copies each binary and every library it links.
copy_with_libs() {
  local rootfs=$1; shift
  local bin lib
  for bin in "$@"; do
    mkdir -p "$rootfs$(dirname "$bin")"
    cp -L "$bin" "$rootfs$bin"
    for lib in $(ldd "$bin" | grep -oE '/[^ ]+' | sort -u); do
      mkdir -p "$rootfs$(dirname "$lib")"
      cp -L "$lib" "$rootfs$lib"
    done
  done
}

# import_rootfs ROOTFS TAG CHANGES...: docker import of a rootfs folder.
import_rootfs() {
  local rootfs=$1 tag=$2; shift 2
  local args=()
  local c
  for c in "$@"; do args+=(--change "$c"); done
  tar -C "$rootfs" -c . | docker import "${args[@]}" - "$tag" >/dev/null
}

# image_env TAG NAME: value of an ENV entry of a local image (empty when absent).
image_env() {
  docker image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$1" 2>/dev/null \
    | sed -n "s/^$2=//p"
}
