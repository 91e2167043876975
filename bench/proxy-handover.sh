#!/usr/bin/env bash
# Why engine traefik is restarted and engine haproxy handed over when the proxy itself changes
# (docs/deploy.md, "The proxy"). Two proxies of each kind share one port on the host while
# wrk sends fresh connections (`Connection: close`) through it; the second one starts halfway:
#   traefik: two processes on the same port with `reusePort` (the design the issue suggested):
#            the new one takes its share of connections before its providers have loaded the
#            routes and answers 404 (traefik/traefik#7347);
#   haproxy: the new process takes the listening sockets over from the old one (`-x`), the old
#            one soft-stops (SIGUSR1): same sockets, no request fails.
# Prints the non-2xx and socket errors of each run. Usage: bench/proxy-handover.sh [runs]
# Needs /usr/local/bin/traefik-3.6 and traefik-3.7 (.ci/images/traefik.sh), haproxy, wrk.
set -euo pipefail
runs=${1:-3}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port) backend=$(free_port) ping=$(free_port)
python3 -m http.server "$backend" --bind 127.0.0.1 --directory "$work" >/dev/null 2>&1 &
pids+=($!)
mkdir -p "$work/dynamic"
cat >"$work/traefik.yml" <<CFG
entryPoints:
  web: {address: "127.0.0.1:$port", reusePort: true}
  ping: {address: "127.0.0.1:$ping", reusePort: true}
ping: {entryPoint: ping}
providers:
  providersThrottleDuration: 0s
  file: {directory: $work/dynamic}
log: {level: ERROR}
CFG
cat >"$work/dynamic/routes.yml" <<CFG
http:
  routers:
    r: {entryPoints: [web], rule: "Host(\`x.test\`)", service: s}
  services:
    s: {loadBalancer: {servers: [{url: "http://127.0.0.1:$backend"}]}}
CFG
cat >"$work/haproxy.cfg" <<CFG
global
    master-worker
    stats socket $work/admin.sock mode 600 level admin expose-fd listeners
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend f
    bind 127.0.0.1:$port
    default_backend b
backend b
    server s 127.0.0.1:$backend
CFG
load() { wrk -t1 -c4 -d6s -H 'Host: x.test' -H 'Connection: close' "http://127.0.0.1:$port/" \
  | awk '/requests in/ {r=$1} /Non-2xx/ {n=$NF} /Socket errors/ {e=$0} END {printf "%s requests, %d non-2xx %s\n", r, n, e}'; }
for i in $(seq "$runs"); do
  traefik-3.6 --configFile="$work/traefik.yml" >/dev/null 2>&1 & old=$!; sleep 2
  load >"$work/out" & l=$!
  sleep 2; traefik-3.7 --configFile="$work/traefik.yml" >/dev/null 2>&1 & new=$!
  sleep 2; kill -TERM "$old"; wait "$l"
  echo "traefik reusePort run $i: $(cat "$work/out")"
  kill -TERM "$new"; wait "$old" "$new" 2>/dev/null || true

  rm -f "$work/admin.sock"
  haproxy -W -db -f "$work/haproxy.cfg" -x "$work/admin.sock" >/dev/null 2>&1 & old=$!; sleep 1
  load >"$work/out" & l=$!
  sleep 2; haproxy -W -db -f "$work/haproxy.cfg" -x "$work/admin.sock" >/dev/null 2>&1 & new=$!
  sleep 1; kill -USR1 "$old"; wait "$l"
  echo "haproxy -x hand-over run $i: $(cat "$work/out")"
  kill -USR1 "$new"; wait "$old" "$new" 2>/dev/null || true
done
