#!/usr/bin/env bash
# STAND-IN test image tagged tecnativa/docker-socket-proxy:0.3.0, the image the rendered Traefik
# stack names (no registry is reachable). Like the original it is HAProxy in front of
# /var/run/docker.sock, listening on :2375, allowing only the API sections whose environment flag
# is 1 (CONTAINERS, NETWORKS, NODES, SERVICES, TASKS, EVENTS, PING, VERSION, ... with the
# original's defaults; NODES, SERVICES and TASKS for Traefik's swarm provider) and only
# GET/HEAD unless POST=1. Built from Debian's /usr/sbin/haproxy in an empty rootfs; tests run the
# rendered proxy/docker-compose.yml unchanged against it. Rebuilt only when this script or the
# host binary changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
source .ci/images/lib.bash
tag=tecnativa/docker-socket-proxy:0.3.0
bin=/usr/sbin/haproxy
sum=$(cat "$bin" "$0" | sha256sum | cut -c1-16)
[ "$(image_env "$tag" ITSUP_STANDIN_SHA)" = "$sum" ] && exit 0
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/tmp" "$rootfs/etc" "$rootfs/run" "$rootfs/usr/local/etc/haproxy"
chmod 1777 "$rootfs/tmp"
copy_with_libs "$rootfs" "$bin"
printf 'root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534::/:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
cat >"$rootfs/usr/local/etc/haproxy/haproxy.cfg" <<'CFG'
# Stand-in for tecnativa/docker-socket-proxy (same rules, same environment flags).
global
    log stdout format raw daemon warning
    maxconn 4000
defaults
    mode http
    log global
    timeout connect 10s
    timeout client 10m
    timeout server 10m
    # The events stream stays open.
    timeout tunnel 1h
backend dockerbackend
    server dockersocket /var/run/docker.sock
frontend dockerfrontend
    bind :2375
    http-request deny unless METH_GET || { env(POST) -m bool }
    http-request allow if { path,url_dec -m reg -i ^(/v[\d\.]+)?/_ping } { env(PING) -m bool }
    http-request allow if { path,url_dec -m reg -i ^(/v[\d\.]+)?/containers } { env(CONTAINERS) -m bool }
    http-request allow if { path,url_dec -m reg -i ^(/v[\d\.]+)?/events } { env(EVENTS) -m bool }
    http-request allow if { path,url_dec -m reg -i ^(/v[\d\.]+)?/info } { env(INFO) -m bool }
    http-request allow if { path,url_dec -m reg -i ^(/v[\d\.]+)?/networks } { env(NETWORKS) -m bool }
    http-request allow if { path,url_dec -m reg -i ^(/v[\d\.]+)?/nodes } { env(NODES) -m bool }
    http-request allow if { path,url_dec -m reg -i ^(/v[\d\.]+)?/services } { env(SERVICES) -m bool }
    http-request allow if { path,url_dec -m reg -i ^(/v[\d\.]+)?/tasks } { env(TASKS) -m bool }
    http-request allow if { path,url_dec -m reg -i ^(/v[\d\.]+)?/version } { env(VERSION) -m bool }
    http-request deny
    default_backend dockerbackend
CFG
import_rootfs "$rootfs" "$tag" "ENV ITSUP_STANDIN_SHA=$sum" \
  "ENV CONTAINERS=0" "ENV EVENTS=1" "ENV INFO=0" "ENV NETWORKS=0" "ENV NODES=0" "ENV PING=1" "ENV POST=0" \
  "ENV SERVICES=0" "ENV TASKS=0" "ENV VERSION=1" "EXPOSE 2375" \
  'CMD ["/usr/sbin/haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]'
echo "built $tag (stand-in)"
