#!/usr/bin/env bash
# Benchmarks TCP forwarding of `itsup proxy` (--threads 1, a `tcp:` port with one catch-all
# route) against HAProxy `mode tcp` (nbthread 1), both in front of the same 1-worker nginx, in
# one run on this machine. wrk speaks HTTP through both, so the proxies only move bytes:
#   1. throughput: wrk -t1 -c8 fetching a 4 MiB file over keep-alive connections (bytes/s);
#   2. connections/s: wrk -t1 -c50 with `Connection: close`, one request per new connection
#      through the proxy (each is accept + connect to nginx + two copies + two closes).
# Rounds alternate which proxy goes first; the medians of the per-round ratios are reported.
# Usage: bench/tcp.sh [duration per run, default 5s]   (env ITSUP_BIN to skip the release
#        build, BENCH_ROUNDS=N alternating pairs per measure, default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-5s}
ROUNDS=${BENCH_ROUNDS:-5}
source bench/lib.bash
need_tools wrk haproxy nginx python3

BACKEND=$(free_port); HAPROXY=$(free_port); ITSUP=$(free_port); ADMIN=$(free_port); WEB=$(free_port)

mkdir -p "$WORK/backend/www"
head -c $((4 * 1024 * 1024)) /dev/zero >"$WORK/backend/www/big"
nginx_conf backend "sendfile on;
  server {
    listen 127.0.0.1:$BACKEND;
    root $WORK/backend/www;
    location = / { default_type text/plain; return 200 'ok'; }
  }"
# maxconn 5000 (and the same cap on itsup): HAProxy asks for 2 x maxconn descriptors and refuses
# to start when the hard limit (20000 on these machines) is lower; the bench opens at most 50.
cat >"$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 5000
defaults
  mode tcp
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:$HAPROXY
  default_backend be
backend be
  server s1 127.0.0.1:$BACKEND
CONF
cat >"$WORK/proxy.yml" <<CONF
listeners: [{address: "127.0.0.1:$WEB"}]
admin: {address: "127.0.0.1:$ADMIN"}
clusters: {}
tcp:
  - address: "127.0.0.1:$ITSUP"
    max_connections: 5000
    routes: [{name: be, servers: ["127.0.0.1:$BACKEND"]}]
CONF

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nginx -c "$WORK/backend/nginx.conf" -p "$WORK/backend" & PIDS+=($!)
haproxy -f "$WORK/haproxy.cfg" -db >/dev/null 2>&1 & PIDS+=($!)
ITSUP_LOG=warn "$BIN" proxy --config "$WORK/proxy.yml" --threads 1 2>"$WORK/itsup.log" & PIDS+=($!)
for p in $BACKEND $HAPROXY $ITSUP; do wait_port "$p"; done

to_mb() { # wrk transfer like 1.23GB / 850.00MB / 10KB, per second -> MB/s
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /GB$/) n*=1024; else if (v ~ /KB$/) n/=1024; else if (v ~ /B$/ && v !~ /MB$/) n/=1048576; printf "%.1f", n }'
}
declare -A VALUE
run() { # label port path conns field [extra wrk args...]
  local label=$1 port=$2 path=$3 conns=$4 field=$5; shift 5
  local out; out=$(wrk -t1 -c"$conns" -d"$DURATION" "$@" "http://127.0.0.1:$port$path")
  if echo "$out" | grep -q "Non-2xx\|Socket errors"; then echo "$out" | grep "Non-2xx\|Socket errors" >&2; fi
  if [ "$field" = transfer ]; then
    VALUE[$label]=$(to_mb "$(echo "$out" | awk '/Transfer\/sec/ { print $2 }')")
  else
    VALUE[$label]=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
  fi
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
median() { sort -n | awk '{ a[NR] = $1 } END { printf "%.2f", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

measure() { # title unit path conns field [extra wrk args...]
  local title=$1 unit=$2 path=$3 conns=$4 field=$5; shift 5
  wrk -t1 -c"$conns" -d1s "$@" "http://127.0.0.1:$ITSUP$path" >/dev/null 2>&1 # warm-up
  wrk -t1 -c"$conns" -d1s "$@" "http://127.0.0.1:$HAPROXY$path" >/dev/null 2>&1
  local ratios=() i order name
  echo "$title (wrk -t1 -c$conns -d$DURATION, $ROUNDS alternating pairs)"
  for ((i = 1; i <= ROUNDS; i++)); do
    if ((i % 2)); then order=(itsup haproxy); else order=(haproxy itsup); fi
    for name in "${order[@]}"; do
      if [ "$name" = itsup ]; then run itsup "$ITSUP" "$path" "$conns" "$field" "$@"
      else run haproxy "$HAPROXY" "$path" "$conns" "$field" "$@"; fi
    done
    ratios+=("$(ratio "${VALUE[itsup]}" "${VALUE[haproxy]}")")
    printf '  round %d: itsup %10s %s   haproxy %10s %s   ratio %sx\n' \
      "$i" "${VALUE[itsup]}" "$unit" "${VALUE[haproxy]}" "$unit" "${ratios[-1]}"
  done
  echo "  median itsup / haproxy: $(printf '%s\n' "${ratios[@]}" | median)x (target >= 1.00)"
}

echo "TCP forwarding, one catch-all route, on $(nproc) cores of $(uname -n)"
measure "throughput, 4 MiB responses over keep-alive" "MB/s" /big 8 transfer
measure "new connections (Connection: close, tiny body)" "conn/s" / 50 requests -H "Connection: close"
