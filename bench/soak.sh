#!/usr/bin/env bash
# Soak of the long-running companions (release build), both at once on this machine:
#  * `itsup proxy`: paced steady load (wrk), a config reload every second (proxy.yml rewritten
#    atomically, a server's weight alternating), one of its two upstreams flapping (the test app
#    killed and restarted every FLAP seconds, mid-request included), 1000 idle keep-alive
#    client connections held open throughout (each used once more at the end);
#  * `itsup agent` with HAProxy 2.6 checking it (agent-check every 500 ms on the flapping
#    upstream's gRPC health), HAProxy reloaded (master-worker, hitless) every second, paced
#    load through HAProxy, 1000 idle connections held open to the agent.
# Every SAMPLE seconds: RSS and open fds of itsup proxy / itsup agent. At the end: requests
# and failed requests (non-2xx and socket errors), reloads, idle connections still served.
# Usage: bench/soak.sh [seconds, default 600]   (env ITSUP_BIN to skip the release build,
#        SOAK_SAMPLE_SECS (30), SOAK_FLAP_SECS (5), SOAK_CONNS (8), SOAK_DELAY_MS (4))
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-600}
SAMPLE=${SOAK_SAMPLE_SECS:-30}
FLAP=${SOAK_FLAP_SECS:-5}
CONNS=${SOAK_CONNS:-8}
DELAY=${SOAK_DELAY_MS:-4}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=${ITSUP_BIN:-}
if [ -z "$BIN" ]; then
  cargo build --release --bin itsup >&2
  BIN=$CARGO_TARGET_DIR/release/itsup
fi
cargo build --quiet --example testapp >&2
APP=$CARGO_TARGET_DIR/debug/examples/testapp
for tool in wrk haproxy python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (run .ci/setup.sh)" >&2; exit 1; }
done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for f in "$WORK"/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
# Copies: rebuilding the crate while the soak runs must not touch the running binaries.
cp "$BIN" "$WORK/itsup"; BIN=$WORK/itsup
cp "$APP" "$WORK/testapp"; APP=$WORK/testapp
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 did not open" >&2; exit 1
}
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
cat >"$WORK/pace.lua" <<LUA
function delay() return $DELAY end
LUA

# A test app that is killed (SIGKILL, requests in flight or not) and restarted every FLAP s.
flapping() { # name, env…
  local name=$1; shift
  while true; do
    env "$@" "$APP" >/dev/null 2>&1 & local pid=$!
    echo "$pid" >"$WORK/$name.pid"
    sleep "$FLAP"; kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    sleep "$FLAP"
  done
}

# Holds N idle keep-alive connections, each used once; at the end uses each once more.
idle_http() { # port, seconds, report file
  python3 - "$@" <<'PY'
import socket, sys, time
port, secs, report = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
def req(s):
    s.sendall(b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    n = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
    while len(body) < n:
        body += s.recv(4096)
    return head.split(b" ")[1] == b"200"
socks = []
for _ in range(1000):
    s = socket.create_connection(("127.0.0.1", port)); s.settimeout(10); req(s); socks.append(s)
time.sleep(secs)
ok = 0
for s in socks:
    try:
        ok += req(s)
    except OSError:
        pass
open(report, "w").write(f"{ok}\n")
PY
}

# Holds N idle connections to the agent; at the end sends one check line on each.
idle_agent() { # port, seconds, grpc port, report file
  python3 - "$@" <<'PY'
import socket, sys, time
port, secs, grpc, report = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(1000)]
time.sleep(secs)
ok = 0
for s in socks:
    try:
        s.settimeout(5)
        s.sendall(f"127.0.0.1 {grpc} no-ssl soak\n".encode())
        ok += bool(s.recv(64))
    except OSError:
        pass
open(report, "w").write(f"{ok}\n")
PY
}

failed_of() { # wrk output → "requests failed"
  awk '/requests in/ { n = $1 } /Non-2xx/ { f += $NF } /Socket errors/ { gsub(",", ""); f += $4 + $6 + $8 + $10 } END { printf "%d %d", n, f }' "$1"
}

# ---- itsup proxy ----
P_LISTEN=$(free_port); P_ADMIN=$(free_port); P_B1=$(free_port); P_B2=$(free_port)
PORT=$P_B1 APP_VERSION=stable "$APP" >/dev/null 2>&1 & PIDS+=($!)
flapping proxy-flap PORT=$P_B2 APP_VERSION=flap & PIDS+=($!)
proxy_yml() { # weight of the stable server
  cat <<CONF
listeners: [{address: "127.0.0.1:$P_LISTEN"}]
admin: {address: "127.0.0.1:$P_ADMIN"}
timeouts: {request_header_ms: 3600000, idle_ms: 3600000}
routes: [{cluster: be, retries: 2}]
clusters:
  be:
    servers: [{address: "127.0.0.1:$P_B1", weight: $1}, {address: "127.0.0.1:$P_B2"}]
    health_check: {path: /, interval_ms: 500, timeout_ms: 300, rise: 1, fall: 1}
CONF
}
mkdir -p "$WORK/proxy"
proxy_yml 1 >"$WORK/proxy/proxy.yml"
ITSUP_LOG=warn "$BIN" proxy --config "$WORK/proxy/proxy.yml" 2>"$WORK/proxy.log" & PROXY_PID=$!; PIDS+=($PROXY_PID)
wait_port "$P_B1"; wait_port "$P_LISTEN"
( w=1; while true; do sleep 1; w=$((3 - w)); proxy_yml $w >"$WORK/proxy/.proxy.yml.tmp"; mv "$WORK/proxy/.proxy.yml.tmp" "$WORK/proxy/proxy.yml"; done ) & PIDS+=($!)
idle_http "$P_LISTEN" "$SECS" "$WORK/proxy-idle" & P_IDLE=$!; PIDS+=($P_IDLE)
wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$WORK/pace.lua" "http://127.0.0.1:$P_LISTEN/" >"$WORK/proxy-wrk" 2>&1 & P_WRK=$!; PIDS+=($P_WRK)

# ---- itsup agent + HAProxy ----
A_LISTEN=$(free_port); A_METRICS=$(free_port); H_FRONT=$(free_port)
A_B1=$(free_port); A_B2=$(free_port); A_GRPC=$(free_port)
PORT=$A_B1 APP_VERSION=stable "$APP" >/dev/null 2>&1 & PIDS+=($!)
flapping agent-flap PORT=$A_B2 GRPC_PORT=$A_GRPC APP_VERSION=flap & PIDS+=($!)
ITSUP_AGENT_LOG_LEVEL=warn "$BIN" agent --listen "127.0.0.1:$A_LISTEN" --metrics-listen "127.0.0.1:$A_METRICS" \
  --idle-timeout-ms 3600000 --max-connections 8192 2>"$WORK/agent.log" & AGENT_PID=$!; PIDS+=($AGENT_PID)
cat >"$WORK/haproxy.cfg" <<CONF
global
  maxconn 8000
  hard-stop-after 5s
  stats socket $WORK/haproxy.sock mode 600 level admin expose-fd listeners
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  timeout check 2s
  retries 3
  option redispatch 1
  retry-on all-retryable-errors
  option idle-close-on-response
frontend fe
  bind 127.0.0.1:$H_FRONT
  default_backend be
backend be
  server s1 127.0.0.1:$A_B1 check inter 500ms
  server s2 127.0.0.1:$A_B2 check inter 500ms agent-check agent-addr 127.0.0.1 agent-port $A_LISTEN agent-inter 500ms agent-send "127.0.0.1 $A_GRPC no-ssl soak\n"
CONF
haproxy -c -q -f "$WORK/haproxy.cfg"
haproxy -W -db -f "$WORK/haproxy.cfg" -S "$WORK/master.sock" >"$WORK/haproxy.log" 2>&1 & HAPROXY_PID=$!; PIDS+=($HAPROXY_PID)
wait_port "$A_LISTEN"; wait_port "$H_FRONT"; wait_port "$A_B1"
( while true; do sleep 1; kill -USR2 "$HAPROXY_PID" 2>/dev/null || exit 0; echo x >>"$WORK/haproxy-reloads"; done ) & PIDS+=($!)
idle_agent "$A_LISTEN" "$SECS" "$A_GRPC" "$WORK/agent-idle" & A_IDLE=$!; PIDS+=($A_IDLE)
wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$WORK/pace.lua" "http://127.0.0.1:$H_FRONT/" >"$WORK/agent-wrk" 2>&1 & A_WRK=$!; PIDS+=($A_WRK)

# ---- samples ----
echo "soak: ${SECS} s, wrk -t1 -c$CONNS paced ${DELAY} ms, upstream flapping every ${FLAP} s, reload every 1 s, 1000 idle connections each; $(nproc) cores"
printf '%6s  %14s %10s  %14s %10s\n' "t (s)" "proxy RSS MB" "proxy fds" "agent RSS MB" "agent fds"
start=$(date +%s)
while kill -0 "$P_WRK" 2>/dev/null || kill -0 "$A_WRK" 2>/dev/null; do
  t=$(($(date +%s) - start))
  printf '%6d  %14.1f %10d  %14.1f %10d\n' "$t" "$(awk -v k="$(rss_kb "$PROXY_PID")" 'BEGIN { print k / 1024 }')" \
    "$(fds "$PROXY_PID")" "$(awk -v k="$(rss_kb "$AGENT_PID")" 'BEGIN { print k / 1024 }')" "$(fds "$AGENT_PID")"
  sleep "$SAMPLE"
done
wait "$P_IDLE" "$A_IDLE" || true
t=$(($(date +%s) - start))
printf '%6d  %14.1f %10d  %14.1f %10d   (after the idle connections were used and closed)\n' "$t" \
  "$(awk -v k="$(rss_kb "$PROXY_PID")" 'BEGIN { print k / 1024 }')" "$(fds "$PROXY_PID")" \
  "$(awk -v k="$(rss_kb "$AGENT_PID")" 'BEGIN { print k / 1024 }')" "$(fds "$AGENT_PID")"

read -r pn pf <<<"$(failed_of "$WORK/proxy-wrk")"
read -r an af <<<"$(failed_of "$WORK/agent-wrk")"
reloads=$(curl -s "http://127.0.0.1:$P_ADMIN/metrics" | awk '/^itsup_proxy_reload_success_total/ { print $2 }')
reload_fail=$(curl -s "http://127.0.0.1:$P_ADMIN/metrics" | awk '/^itsup_proxy_reload_failure_total/ { print $2 }')
echo
echo "itsup proxy: $pn requests, $pf failed; reloads ok ${reloads:-?}, failed ${reload_fail:-?}; idle connections still served at the end: $(cat "$WORK/proxy-idle" 2>/dev/null || echo ?)/1000"
echo "itsup agent: $an requests through HAProxy, $af failed; HAProxy reloads $(wc -l <"$WORK/haproxy-reloads"); idle agent connections answering at the end: $(cat "$WORK/agent-idle" 2>/dev/null || echo ?)/1000"
if [ "$pf" != 0 ] || [ "$af" != 0 ]; then
  echo "--- proxy wrk"; cat "$WORK/proxy-wrk"; echo "--- agent wrk"; cat "$WORK/agent-wrk"
  echo "--- proxy log (tail)"; tail -5 "$WORK/proxy.log"
fi
