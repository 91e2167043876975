#!/usr/bin/env bash
# Benchmarks the TLS edge of `itsup proxy` (--threads 1) against HAProxy (nbthread 1), both
# terminating TLS with the same ECDSA P-256 certificate in front of the same nginx backend, in
# one run on this machine:
#   1. keep-alive TLS: wrk -t1 -c50 over HTTPS (HTTP/1.1), requests/s and p99;
#   2. new handshakes: the same with `Connection: close`, so every request is a full TLS
#      handshake (wrk does not resume sessions), handshakes/s and p99;
#   3. RSS of each proxy holding 1000 idle TLS connections (each has served one request).
# Rounds alternate which proxy goes first; the medians of the per-round ratios are reported.
# Usage: bench/tls.sh [duration per run, default 5s]   (env ITSUP_BIN to skip the release
#        build, BENCH_ROUNDS=N alternating pairs per measure, default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-5s}
ROUNDS=${BENCH_ROUNDS:-5}
CONNS=50
source bench/lib.bash
need_tools wrk haproxy nginx openssl python3

BACKEND=$(free_port); HAPROXY=$(free_port); ITSUP=$(free_port); ADMIN=$(free_port)

# One ECDSA P-256 certificate for both proxies.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=bench.test -addext subjectAltName=DNS:bench.test \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/haproxy.pem"

nginx_conf backend "server { listen 127.0.0.1:$BACKEND; location / { default_type text/plain; return 200 'ok'; } }"
cat >"$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:$HAPROXY ssl crt $WORK/haproxy.pem alpn h2,http/1.1
  default_backend be
backend be
  server s1 127.0.0.1:$BACKEND
CONF
cat >"$WORK/proxy.yml" <<CONF
listeners:
  - address: "127.0.0.1:$ITSUP"
    tls: {certificates: [{cert: "$WORK/cert.pem", key: "$WORK/key.pem"}]}
admin: {address: "127.0.0.1:$ADMIN"}
routes: [{cluster: be}]
clusters:
  be:
    servers: [{address: "127.0.0.1:$BACKEND"}]
CONF

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nginx -c "$WORK/backend/nginx.conf" -p "$WORK/backend" & PIDS+=($!)
haproxy -f "$WORK/haproxy.cfg" -db >/dev/null 2>&1 & HAPROXY_PID=$!; PIDS+=($HAPROXY_PID)
ITSUP_LOG=warn "$BIN" proxy --config "$WORK/proxy.yml" --threads 1 2>"$WORK/itsup.log" & ITSUP_PID=$!; PIDS+=($ITSUP_PID)
for p in $BACKEND $HAPROXY $ITSUP; do wait_port "$p"; done

to_ms() { # wrk latency like 1.23ms / 850.00us / 1.01s
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'
}
declare -A RPS P99
run() { # label port [extra wrk args...]
  local label=$1 port=$2; shift 2
  local out; out=$(wrk -t1 -c$CONNS -d"$DURATION" --latency "$@" "https://127.0.0.1:$port/")
  if echo "$out" | grep -q "Non-2xx"; then echo "$out" >&2; fi
  RPS[$label]=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
  P99[$label]=$(to_ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
median() { sort -n | awk '{ a[NR] = $1 } END { printf "%.2f", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

measure() { # title, extra wrk args...
  local title=$1; shift
  wrk -t1 -c$CONNS -d1s "$@" "https://127.0.0.1:$ITSUP/" >/dev/null 2>&1 # warm-up
  wrk -t1 -c$CONNS -d1s "$@" "https://127.0.0.1:$HAPROXY/" >/dev/null 2>&1
  local rates=() p99s=() i order name
  echo "$title (wrk -t1 -c$CONNS -d$DURATION, $ROUNDS alternating pairs)"
  for ((i = 1; i <= ROUNDS; i++)); do
    if ((i % 2)); then order=(itsup haproxy); else order=(haproxy itsup); fi
    for name in "${order[@]}"; do
      if [ "$name" = itsup ]; then run itsup "$ITSUP" "$@"; else run haproxy "$HAPROXY" "$@"; fi
    done
    rates+=("$(ratio "${RPS[itsup]}" "${RPS[haproxy]}")")
    p99s+=("$(ratio "${P99[itsup]}" "${P99[haproxy]}")")
    printf '  round %d: itsup %10s/s p99 %8s ms   haproxy %10s/s p99 %8s ms   ratio %sx, p99 %sx\n' \
      "$i" "${RPS[itsup]}" "${P99[itsup]}" "${RPS[haproxy]}" "${P99[haproxy]}" "${rates[-1]}" "${p99s[-1]}"
  done
  echo "  median itsup / haproxy: rate $(printf '%s\n' "${rates[@]}" | median)x (target >= 1.00), p99 $(printf '%s\n' "${p99s[@]}" | median)x (target <= 1.50)"
}

echo "TLS edge, ECDSA P-256, TLS 1.3, tiny body, on $(nproc) cores of $(uname -n)"
measure "keep-alive requests over TLS"
measure "new TLS handshakes (Connection: close)" -H "Connection: close"

# RSS with 1000 idle TLS connections (each has served one request).
python3 - "$ITSUP" "$ITSUP_PID" "$HAPROXY" "$HAPROXY_PID" <<'PY'
import socket, ssl, sys, time
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
for name, port, pid in (("itsup", int(sys.argv[1]), sys.argv[2]), ("haproxy", int(sys.argv[3]), sys.argv[4])):
    before = rss(pid)
    socks = []
    for _ in range(1000):
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="bench.test")
        s.sendall(b"GET / HTTP/1.1\r\nHost: bench.test\r\n\r\n")
        socks.append(s)
    for s in socks:
        data = b""
        while b"\r\n\r\nok" not in data:
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit("connection closed early")
            data += chunk
    time.sleep(1)
    after = rss(pid)
    print(f"{name} RSS: {before:.1f} MB idle, {after:.1f} MB with 1000 idle TLS connections")
    for s in socks:
        s.close()
PY
