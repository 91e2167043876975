#!/usr/bin/env bash
# How the proxy itself is updated (docs/deploy.md, "The proxy"), measured: wrk sends fresh
# connections (`Connection: close`, 1 thread, 4 connections, 6 s) through one port while the
# proxy behind it is replaced 2 s in. Four ways:
#   traefik restart:   engine traefik before the edge: Traefik 3.6 stopped, 3.7 started on the
#                      same port (stop-first);
#   traefik reusePort: two Traefiks on the port with `reusePort` (the issue's first suggestion):
#                      the new one takes its share of connections before its providers have
#                      loaded the routes and answers 404 (traefik/traefik#7347);
#   edge blue/green:   engine traefik now: HAProxy (tcp, send-proxy-v2) owns the port; Traefik
#                      3.7 starts on its own port beside 3.6, is enabled at the edge (admin
#                      socket) once its API lists the router, 3.6 is drained and stopped;
#   haproxy -x:        engine haproxy: the new process takes the listening sockets over from
#                      the old one (`-x`), the old one soft-stops (SIGUSR1).
# Prints requests, non-2xx and socket errors per run. Usage: bench/proxy-handover.sh [runs]
# Needs /usr/local/bin/traefik-3.6 and traefik-3.7 (.ci/images/traefik.sh), haproxy, wrk, python3.
set -euo pipefail
runs=${1:-3}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
port=$(free_port) backend=$(free_port) ping=$(free_port)
blue=$(free_port) green=$(free_port) blue_api=$(free_port) green_api=$(free_port)
python3 -m http.server "$backend" --bind 127.0.0.1 --directory "$work" >/dev/null 2>&1 &
pids+=($!)
mkdir -p "$work/dynamic"
cat >"$work/dynamic/routes.yml" <<CFG
http:
  routers:
    r: {entryPoints: [web], rule: "Host(\`x.test\`)", service: s}
  services:
    s: {loadBalancer: {servers: [{url: "http://127.0.0.1:$backend"}]}}
CFG
# traefik_cfg FILE WEB_PORT API_PORT [extra entrypoint keys]: a static config on the file provider.
traefik_cfg() {
  cat >"$1" <<CFG
entryPoints:
  web: {address: "127.0.0.1:$2"$4}
  traefik: {address: "127.0.0.1:$3"$4}
api: {insecure: true}
ping: {entryPoint: traefik}
providers:
  providersThrottleDuration: 0s
  file: {directory: $work/dynamic}
log: {level: ERROR}
CFG
}
traefik_cfg "$work/shared.yml" "$port" "$ping" ", reusePort: true"
traefik_cfg "$work/blue.yml" "$blue" "$blue_api" ", proxyProtocol: {trustedIPs: [127.0.0.1/32]}"
traefik_cfg "$work/green.yml" "$green" "$green_api" ", proxyProtocol: {trustedIPs: [127.0.0.1/32]}"
cat >"$work/haproxy.cfg" <<CFG
global
    master-worker
    stats socket $work/admin.sock mode 600 level admin expose-fd listeners
defaults
    mode http
    option idle-close-on-response
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend f
    bind 127.0.0.1:$port
    default_backend b
backend b
    server s 127.0.0.1:$backend
CFG
cat >"$work/edge.cfg" <<CFG
global
    stats socket $work/edge.sock mode 600 level admin
defaults
    mode tcp
    timeout connect 1s
    timeout client 1h
    timeout server 1h
frontend web
    bind 127.0.0.1:$port
    default_backend traefik-web
backend traefik-web
    balance leastconn
    server blue 127.0.0.1:$blue send-proxy-v2 check
    server green 127.0.0.1:$green send-proxy-v2 check disabled
CFG
load() { wrk -t1 -c4 -d6s -H 'Host: x.test' -H 'Connection: close' "http://127.0.0.1:$port/" \
  | awk '/requests in/ {r=$1} /Non-2xx/ {n=$NF} /Socket errors/ {e=$0} END {printf "%s requests, %d non-2xx %s\n", r, n, e}'; }
edge() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall((sys.argv[2]+"\n").encode()); print(s.makefile().read(), end="")' "$work/edge.sock" "$1"; }
scur() { edge "show stat traefik-web 4 -1" | awk -F, -v s="$1" '$2==s {print $5}'; }
status() { edge "show stat traefik-web 4 -1" | awk -F, -v s="$1" '$2==s {print $18}'; }
loaded() { curl -sf "http://127.0.0.1:$1/api/rawdata" | grep -q '"r@file"'; }
for i in $(seq "$runs"); do
  traefik-3.6 --configFile="$work/shared.yml" >/dev/null 2>&1 & old=$!; wait_port "$port"; sleep 1
  load >"$work/out" & l=$!
  sleep 2; kill -TERM "$old"; wait "$old" 2>/dev/null || true
  traefik-3.7 --configFile="$work/shared.yml" >/dev/null 2>&1 & new=$!; wait "$l"
  echo "traefik restart run $i: $(cat "$work/out")"
  kill -TERM "$new"; wait "$new" 2>/dev/null || true

  traefik-3.6 --configFile="$work/shared.yml" >/dev/null 2>&1 & old=$!; sleep 2
  load >"$work/out" & l=$!
  sleep 2; traefik-3.7 --configFile="$work/shared.yml" >/dev/null 2>&1 & new=$!
  sleep 2; kill -TERM "$old"; wait "$l"
  echo "traefik reusePort run $i: $(cat "$work/out")"
  kill -TERM "$new"; wait "$old" "$new" 2>/dev/null || true

  haproxy -db -f "$work/edge.cfg" >/dev/null 2>&1 & e=$!
  traefik-3.6 --configFile="$work/blue.yml" >/dev/null 2>&1 & old=$!
  until loaded "$blue_api" && [ "$(status blue)" = UP ]; do sleep 0.05; done
  load >"$work/out" & l=$!
  sleep 2; traefik-3.7 --configFile="$work/green.yml" >/dev/null 2>&1 & new=$!
  until loaded "$green_api"; do sleep 0.05; done
  # As apply does: admit green, wait for the edge's check to see it UP, then drain blue.
  edge "set server traefik-web/green state ready" >/dev/null
  until [ "$(status green)" = UP ]; do sleep 0.05; done
  edge "set server traefik-web/blue state drain" >/dev/null
  for _ in $(seq 100); do [ "$(scur blue)" = 0 ] && break; sleep 0.05; done
  kill -TERM "$old"; wait "$l"
  echo "edge blue/green run $i: $(cat "$work/out")"
  kill -TERM "$new" "$e"; wait "$old" "$new" "$e" 2>/dev/null || true

  rm -f "$work/admin.sock"
  haproxy -W -db -f "$work/haproxy.cfg" -x "$work/admin.sock" >/dev/null 2>&1 & old=$!; sleep 1
  load >"$work/out" & l=$!
  sleep 2; haproxy -W -db -f "$work/haproxy.cfg" -x "$work/admin.sock" >/dev/null 2>&1 & new=$!
  sleep 1; kill -USR1 "$old"; wait "$l"
  echo "haproxy -x hand-over run $i: $(cat "$work/out")"
  kill -USR1 "$new"; wait "$old" "$new" 2>/dev/null || true
done
