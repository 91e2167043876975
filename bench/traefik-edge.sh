#!/usr/bin/env bash
# The cost of the edge in front of Traefik (engine traefik, docs/deploy.md "The proxy"): one
# Traefik 3.6 with two entrypoints routed alike to the same 1-worker nginx backend (tiny `ok`
# body): `direct`, which wrk hits itself, and `edge`, behind HAProxy 2.6 in tcp mode sending a
# PROXY v2 header (as proxy/edge/edge.cfg does; the entrypoint trusts it). wrk -t1 -c50
# --latency, keep-alive, alternating direct/edge runs; prints each run (req/s, p99, CPU time of
# Traefik + the edge per request) and the medians and edge/direct ratios. Usage: bench/traefik-edge.sh [rounds, default 5] [duration, default 5s]
# Needs /usr/local/bin/traefik-3.6 (.ci/images/traefik.sh), haproxy, nginx, wrk, python3.
set -euo pipefail
rounds=${1:-5} duration=${2:-5s}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 did not open" >&2; exit 1; }
backend=$(free_port) direct=$(free_port) behind=$(free_port) edge=$(free_port) api=$(free_port)
cat >"$work/nginx.conf" <<CFG
worker_processes 1;
daemon off;
user root;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/body;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$backend; location / { default_type text/plain; return 200 'ok'; } }
}
CFG
nginx -c "$work/nginx.conf" & pids+=($!)
mkdir -p "$work/dynamic"
cat >"$work/dynamic/routes.yml" <<CFG
http:
  routers:
    r: {entryPoints: [direct, edge], rule: "Host(\`x.test\`)", service: s}
  services:
    s: {loadBalancer: {servers: [{url: "http://127.0.0.1:$backend"}]}}
CFG
cat >"$work/traefik.yml" <<CFG
entryPoints:
  direct: {address: "127.0.0.1:$direct"}
  edge: {address: "127.0.0.1:$behind", proxyProtocol: {trustedIPs: [127.0.0.1/32]}}
  traefik: {address: "127.0.0.1:$api"}
ping: {entryPoint: traefik}
providers:
  file: {directory: $work/dynamic}
log: {level: ERROR}
CFG
traefik-3.6 --configFile="$work/traefik.yml" >/dev/null 2>&1 & traefik_pid=$!; pids+=($traefik_pid)
cat >"$work/edge.cfg" <<CFG
global
    nbthread 1
    maxconn 8000
defaults
    mode tcp
    timeout connect 1s
    timeout client 1h
    timeout server 1h
frontend web
    bind 127.0.0.1:$edge
    default_backend traefik-web
backend traefik-web
    server t 127.0.0.1:$behind send-proxy-v2
CFG
haproxy -db -f "$work/edge.cfg" >/dev/null 2>&1 & edge_pid=$!; pids+=($edge_pid)
for p in "$backend" "$direct" "$behind" "$edge"; do wait_port "$p"; done
until curl -sf -H 'Host: x.test' "http://127.0.0.1:$edge/" >/dev/null; do sleep 0.1; done
# CPU time (user + system, clock ticks) of the proxies: Traefik and the edge.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu() { echo $(( $(ticks "$traefik_pid") + $(ticks "$edge_pid") )); }
hz=$(getconf CLK_TCK)
# run PORT: "req/s p99_ms cpu_us_per_request" (the CPU of Traefik and the edge together, which
# depends much less on the host's other load than req/s)
run() {
  local before after
  before=$(cpu)
  wrk -t1 -c50 -d"$duration" --latency -H 'Host: x.test' "http://127.0.0.1:$1/" >"$work/wrk"
  after=$(cpu)
  awk -v t=$((after - before)) -v hz="$hz" '
    /requests in/ {n=$1}
    /Requests\/sec/ {r=$2}
    / 99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; p=v}
    END {printf "%d %.2f %.1f\n", r, p, t * 1000000 / hz / n}' "$work/wrk"
}
: >"$work/runs"
for i in $(seq "$rounds"); do
  read -r dr dp dc < <(run "$direct")
  read -r er ep ec < <(run "$edge")
  echo "round $i: direct $dr req/s p99 $dp ms ${dc} us CPU/req | edge+traefik $er req/s p99 $ep ms ${ec} us CPU/req"
  echo "$dr $dp $er $ep $dc $ec" >>"$work/runs"
done
python3 - "$work/runs" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
col = lambda i: statistics.median(r[i] for r in rows)
thr = statistics.median(r[2] / r[0] for r in rows)
lat = statistics.median(r[3] / r[1] for r in rows)
print(f"median direct {col(0):.0f} req/s p99 {col(1):.2f} ms; edge+traefik {col(2):.0f} req/s p99 {col(3):.2f} ms")
cpu = statistics.median(r[5] / r[4] for r in rows)
print(f"median CPU per request (Traefik + edge): direct {col(4):.1f} us, edge+traefik {col(5):.1f} us")
print(f"median ratio edge/direct: throughput {thr:.2f}x, p99 {lat:.2f}x, CPU per request {cpu:.2f}x")
PY
