#!/usr/bin/env bash
# Stand-in for tecnativa/docker-socket-proxy:0.3.0 (the Docker API filter of the rendered Traefik
# stack; no registry is reachable): the same design as the real image, HAProxy on :2375 in front
# of /var/run/docker.sock allowing GET only, and only on the API sections whose environment flag
# is 1 (CONTAINERS, NETWORKS, EVENTS, PING, VERSION, as the rendered stack sets them). Built from
# Debian's haproxy like itsup-test/haproxy; tagged like the rendered image so tests run the
# rendered proxy stack unchanged. Rebuilt only when the host binary or this script changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
source .ci/images/lib.bash
tag=tecnativa/docker-socket-proxy:0.3.0
bin=/usr/sbin/haproxy
sum=$(cat "$bin" "$0" | sha256sum | cut -c1-16)
[ "$(image_env "$tag" SOCKET_PROXY_STANDIN_SHA)" = "$sum" ] && exit 0
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/tmp" "$rootfs/etc" "$rootfs/usr/local/etc/haproxy" "$rootfs/run" "$rootfs/var/run"
chmod 1777 "$rootfs/tmp"
copy_with_libs "$rootfs" "$bin"
printf 'root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534::/:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
cat >"$rootfs/usr/local/etc/haproxy/haproxy.cfg" <<'CFG'
global
    log stdout format raw daemon
    maxconn 4000

defaults
    mode http
    log global
    option httplog
    option dontlognull
    timeout connect 10s
    timeout client 10m
    timeout server 10m
    # The events stream stays open for as long as Traefik runs.
    timeout tunnel 0

frontend dockerfrontend
    bind :2375
    http-request deny unless METH_GET
    http-request allow if { path,url_dec -m reg -i ^(/v[\d\.]+)?/containers } { env(CONTAINERS) -m str 1 }
    http-request allow if { path,url_dec -m reg -i ^(/v[\d\.]+)?/networks } { env(NETWORKS) -m str 1 }
    http-request allow if { path,url_dec -m reg -i ^(/v[\d\.]+)?/events } { env(EVENTS) -m str 1 }
    http-request allow if { path,url_dec -m reg -i ^(/v[\d\.]+)?/_ping } { env(PING) -m str 1 }
    http-request allow if { path,url_dec -m reg -i ^(/v[\d\.]+)?/version } { env(VERSION) -m str 1 }
    http-request deny
    default_backend dockerbackend

backend dockerbackend
    server dockersocket /var/run/docker.sock
CFG
import_rootfs "$rootfs" "$tag" "ENV SOCKET_PROXY_STANDIN_SHA=$sum" "EXPOSE 2375" \
  'CMD ["/usr/sbin/haproxy", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]'
echo "built $tag (stand-in)"
