#!/usr/bin/env bash
# Benchmarks `itsup proxy` against HAProxy 2.6 and nginx, all single-threaded and in front of
# the same nginx backend, in one run on this machine:
#   wrk -t1 -c50 (tiny body) through: nginx direct, itsup proxy (--threads 1),
#   HAProxy (nbthread 1), nginx (1 worker); then the RSS of itsup holding 1000 idle
#   keep-alive client connections; then (when valgrind is installed) user-space instructions per
#   request of itsup and HAProxy under callgrind, which does not depend on the machine's load.
# Everything listens on 127.0.0.1 ephemeral ports and stops on exit.
# Each itsup and HAProxy line also gives the proxy process's CPU time (user + system, from
# /proc) per request, which depends much less on the host's other load than req/s.
# Usage: bench/proxy.sh [duration, default 10s]   (env ITSUP_BIN to skip the release build,
#        BENCH_ROUNDS=N for N extra alternating itsup/HAProxy pairs and their median ratio,
#        BENCH_IR=0 to skip the callgrind part, BENCH_IR_REQUESTS=N1,N2 to change its counts,
#        BENCH_INTERLEAVE=N [ITSUP_BASE_BIN=...] for N rounds of 1 s runs in rotating order)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
CONNS=50
source bench/lib.bash
need_tools wrk haproxy nginx python3

BACKEND=$(free_port); NGINX_PROXY=$(free_port); HAPROXY=$(free_port); ITSUP=$(free_port); ADMIN=$(free_port)

nginx_conf backend "server { listen 127.0.0.1:$BACKEND; location / { default_type text/plain; return 200 'ok'; } }"
nginx_conf proxy "upstream be { server 127.0.0.1:$BACKEND; keepalive 128; }
  server { listen 127.0.0.1:$NGINX_PROXY; location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
cat >"$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:$HAPROXY
  default_backend be
backend be
  server s1 127.0.0.1:$BACKEND
CONF
cat >"$WORK/proxy.yml" <<CONF
listeners: [{address: "127.0.0.1:$ITSUP"}]
admin: {address: "127.0.0.1:$ADMIN"}
routes: [{cluster: be}]
clusters:
  be:
    servers: [{address: "127.0.0.1:$BACKEND"}]
CONF

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nginx -c "$WORK/backend/nginx.conf" -p "$WORK/backend" & PIDS+=($!)
nginx -c "$WORK/proxy/nginx.conf" -p "$WORK/proxy" & PIDS+=($!)
haproxy -f "$WORK/haproxy.cfg" -db >/dev/null 2>&1 & HAPROXY_PID=$!; PIDS+=($HAPROXY_PID)
ITSUP_LOG=warn "$BIN" proxy --config "$WORK/proxy.yml" --threads 1 2>"$WORK/itsup.log" & ITSUP_PID=$!; PIDS+=($ITSUP_PID)
for p in $BACKEND $NGINX_PROXY $HAPROXY $ITSUP; do wait_port "$p"; done

to_ms() { # wrk latency like 1.23ms / 850.00us / 1.01s
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime + stime of one process
declare -A RPS P99 CPU
run() { # label port [pid: also report that process's CPU time per request]
  wrk -t1 -c$CONNS -d2s "http://127.0.0.1:$2/" >/dev/null 2>&1 # warm-up (pools, caches)
  local before=0; [ -n "${3:-}" ] && before=$(cpu_ticks "$3")
  local out; out=$(wrk -t1 -c$CONNS -d"$DURATION" --latency "http://127.0.0.1:$2/")
  if echo "$out" | grep -q "Non-2xx\|Socket errors"; then echo "$out" >&2; fi
  RPS[$1]=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
  P99[$1]=$(to_ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
  local cpu=""
  if [ -n "${3:-}" ]; then
    local ticks=$(($(cpu_ticks "$3") - before)) n; n=$(echo "$out" | awk '/requests in/ { print $1 }')
    CPU[$1]=$(awk -v t="$ticks" -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
    cpu="   cpu ${CPU[$1]} us/request"
  fi
  printf '%-14s %12s req/s   p99 %8s ms%s\n' "$1" "${RPS[$1]}" "${P99[$1]}" "$cpu"
}

echo "wrk -t1 -c$CONNS -d$DURATION, tiny body, all on $(nproc) cores of $(uname -n)"
run nginx-direct "$BACKEND"
run itsup "$ITSUP" "$ITSUP_PID"
run haproxy "$HAPROXY" "$HAPROXY_PID"
run nginx-proxy "$NGINX_PROXY"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "itsup / haproxy throughput: $(ratio "${RPS[itsup]}" "${RPS[haproxy]}")x  (target >= 1.00)"
echo "itsup / haproxy p99:        $(ratio "${P99[itsup]}" "${P99[haproxy]}")x  (target <= 1.50)"
echo "itsup / nginx throughput:   $(ratio "${RPS[itsup]}" "${RPS[nginx-proxy]}")x"

# One wall-clock pair swings a lot on a shared 2-core VM; BENCH_ROUNDS=N runs N more
# itsup/HAProxy pairs back to back, alternating which goes first, and reports the median ratio.
ROUNDS=${BENCH_ROUNDS:-0}
if ((ROUNDS > 0)); then
  RATIOS=(); CPU_RATIOS=()
  for ((i = 1; i <= ROUNDS; i++)); do
    if ((i % 2)); then order=(itsup haproxy); else order=(haproxy itsup); fi
    for name in "${order[@]}"; do
      if [ "$name" = itsup ]; then run itsup "$ITSUP" "$ITSUP_PID" >/dev/null; else run haproxy "$HAPROXY" "$HAPROXY_PID" >/dev/null; fi
    done
    RATIOS+=("$(ratio "${RPS[itsup]}" "${RPS[haproxy]}")")
    CPU_RATIOS+=("$(ratio "${CPU[itsup]}" "${CPU[haproxy]}")")
    echo "round $i: itsup ${RPS[itsup]} req/s (${CPU[itsup]} us cpu/req), haproxy ${RPS[haproxy]} req/s (${CPU[haproxy]} us cpu/req), ratio ${RATIOS[-1]}x, cpu ratio ${CPU_RATIOS[-1]}x"
  done
  median() { sort -n | awk '{ a[NR] = $1 } END { printf "%.2f", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
  echo "itsup / haproxy throughput over $ROUNDS rounds: median $(printf '%s\n' "${RATIOS[@]}" | median)x, all: ${RATIOS[*]}"
  echo "itsup / haproxy CPU time per request over $ROUNDS rounds: median $(printf '%s\n' "${CPU_RATIOS[@]}" | median)x, all: ${CPU_RATIOS[*]}"
fi

# Finer interleaving against slow drifts of the host's speed: BENCH_INTERLEAVE=N runs N rounds of
# one short run (BENCH_INTERLEAVE_SECS, default 1 s, no warm-up) per proxy in rotating order;
# with ITSUP_BASE_BIN (another itsup build, e.g. the previous main) that build joins the rotation.
INTERLEAVE=${BENCH_INTERLEAVE:-0}
if ((INTERLEAVE > 0)); then
  names=(itsup haproxy); declare -A PORT=([itsup]=$ITSUP [haproxy]=$HAPROXY)
  if [ -n "${ITSUP_BASE_BIN:-}" ]; then
    BASE=$(free_port); BASE_ADMIN=$(free_port)
    sed -e "s/127.0.0.1:$ITSUP/127.0.0.1:$BASE/" -e "s/127.0.0.1:$ADMIN/127.0.0.1:$BASE_ADMIN/" "$WORK/proxy.yml" >"$WORK/proxy-base.yml"
    ITSUP_LOG=warn "$ITSUP_BASE_BIN" proxy --config "$WORK/proxy-base.yml" --threads 1 2>"$WORK/itsup-base.log" & PIDS+=($!)
    wait_port "$BASE"; wrk -t1 -c$CONNS -d2s "http://127.0.0.1:$BASE/" >/dev/null 2>&1
    names+=(base); PORT[base]=$BASE
  fi
  quick() { wrk -t1 -c$CONNS -d"${BENCH_INTERLEAVE_SECS:-1}s" "http://127.0.0.1:$1/" | awk '/Requests\/sec/ { print $2 }'; }
  quartiles() { sort -n | awk '{ a[NR] = $1 } END { printf "median %.2fx (quartiles %.2f-%.2f)", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2, a[int(NR / 4) + 1], a[int(3 * NR / 4)] }'; }
  NEW=(); OLD=()
  for ((i = 0; i < INTERLEAVE; i++)); do
    declare -A Q=()
    for ((k = 0; k < ${#names[@]}; k++)); do
      name=${names[$(((i + k) % ${#names[@]}))]}
      Q[$name]=$(quick "${PORT[$name]}")
    done
    NEW+=("$(ratio "${Q[itsup]}" "${Q[haproxy]}")")
    [ -n "${PORT[base]:-}" ] && OLD+=("$(ratio "${Q[base]}" "${Q[haproxy]}")")
  done
  echo "interleaved, $INTERLEAVE rounds: itsup / haproxy $(printf '%s\n' "${NEW[@]}" | quartiles)"
  if ((${#OLD[@]} > 0)); then echo "interleaved, $INTERLEAVE rounds: base / haproxy $(printf '%s\n' "${OLD[@]}" | quartiles)"; fi
fi

# RSS with 1000 idle keep-alive client connections (each has served one request).
python3 - "$ITSUP" "$ITSUP_PID" <<'PY'
import socket, sys, time
port, pid = int(sys.argv[1]), sys.argv[2]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
before = rss()
socks = []
for _ in range(1000):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    socks.append(s)
for s in socks:
    data = b""
    while b"\r\n\r\nok" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("connection closed early")
        data += chunk
time.sleep(1)
after = rss()
print(f"itsup RSS: {before:.1f} MB idle, {after:.1f} MB with 1000 idle keep-alive connections (target < 30 MB)")
PY

# Instructions per request, independent of the machine's load: each proxy runs under callgrind
# (user-space instructions, all threads) for two fixed request counts sent by a closed-loop
# client over 50 keep-alive connections; the difference divided by the difference in requests
# removes start-up and shut-down. The backend nginx runs natively.
[ "${BENCH_IR:-1}" = 0 ] && exit 0
command -v valgrind >/dev/null || { echo "valgrind not installed: skipping instructions/request"; exit 0; }
cat >"$WORK/load.py" <<'PY'
# Fixed-count keep-alive load: CONNS connections, each sends the next GET as soon as the
# previous response (Content-Length body) is complete, until TOTAL responses arrived.
import selectors, socket, sys
port, total, conns = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
REQ = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
sel = selectors.DefaultSelector()
sent = done = 0
bufs = {}
for _ in range(min(conns, total)):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(REQ)
    sent += 1
    s.setblocking(False)
    bufs[s] = b""
    sel.register(s, selectors.EVENT_READ)
while done < total:
    events = sel.select(timeout=120)
    if not events:
        raise SystemExit(f"stalled after {done} responses")
    for key, _ in events:
        s = key.fileobj
        data = s.recv(65536)
        if not data:
            raise SystemExit(f"connection closed after {done} responses")
        buf = bufs[s] + data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            length = 0
            for line in buf[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(buf) < end + 4 + length:
                break
            if not buf.startswith(b"HTTP/1.1 200"):
                raise SystemExit("non-200 answer: " + buf[:end].decode(errors="replace"))
            buf = buf[end + 4 + length:]
            done += 1
            if sent < total:
                s.send(REQ)
                sent += 1
        bufs[s] = buf
for s in bufs:
    s.close()
PY
IR_COUNTS=${BENCH_IR_REQUESTS:-2000,12000}
N1=${IR_COUNTS%,*}; N2=${IR_COUNTS#*,}
kill "$ITSUP_PID" 2>/dev/null || true
callgrind_total() { # label port n cmd...: total Ir of the proxy serving n requests
  local label=$1 port=$2 n=$3; shift 3
  local out="$WORK/cg.$label.$n"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >/dev/null 2>"$WORK/cg.$label.$n.log" & local pid=$!
  for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  sleep 1 # let the (slow, instrumented) proxy settle before counting starts to matter
  python3 "$WORK/load.py" "$port" "$n" 50
  sleep 0.5
  kill -TERM "$pid"; wait "$pid" || true
  awk '/^(summary|totals):/ { print $2; exit }' "$out"
}
per_request() { # label port cmd...
  local label=$1 port=$2; shift 2
  local a b; a=$(callgrind_total "$label" "$port" "$N1" "$@"); b=$(callgrind_total "$label" "$port" "$N2" "$@")
  IR[$label]=$(awk -v a="$a" -v b="$b" -v n1="$N1" -v n2="$N2" 'BEGIN { printf "%.0f", (b - a) / (n2 - n1) }')
  printf '%-14s %10s instructions/request (callgrind, %s vs %s requests)\n' "$label" "${IR[$label]}" "$N2" "$N1"
}
declare -A IR
IR_ITSUP=$(free_port); IR_HAPROXY=$(free_port); IR_ADMIN=$(free_port)
sed -e "s/127.0.0.1:$ITSUP/127.0.0.1:$IR_ITSUP/" -e "s/127.0.0.1:$ADMIN/127.0.0.1:$IR_ADMIN/" "$WORK/proxy.yml" >"$WORK/proxy-ir.yml"
sed -e "s/127.0.0.1:$HAPROXY/127.0.0.1:$IR_HAPROXY/" "$WORK/haproxy.cfg" >"$WORK/haproxy-ir.cfg"
echo
export ITSUP_LOG=warn # (not via `env`: valgrind would measure env, not the exec'd proxy)
per_request itsup "$IR_ITSUP" "$BIN" proxy --config "$WORK/proxy-ir.yml" --threads 1
per_request haproxy "$IR_HAPROXY" haproxy -f "$WORK/haproxy-ir.cfg" -db
echo "itsup / haproxy instructions per request: $(ratio "${IR[itsup]}" "${IR[haproxy]}")x"
