#!/usr/bin/env bash
# The cost of a rate limit on `itsup proxy`'s HTTP requests/s: one proxy (--threads 1) in
# front of one nginx backend, two routes to the same cluster, one plain and one behind a
# rateLimit middleware that never limits (GCRA per client address, 100M/s); wrk -t1 -c50
# alternates between them (which goes first alternates too) and the median ratio is reported.
# Everything listens on 127.0.0.1 ephemeral ports and stops on exit.
# Usage: bench/ratelimit.sh [rounds, default 9] [seconds per run, default 3]
#        (env ITSUP_BIN to skip the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-9}
SECS=${2:-3}
CONNS=50
source bench/lib.bash
need_tools wrk nginx python3

BACKEND=$(free_port); ITSUP=$(free_port); ADMIN=$(free_port)
nginx_conf backend "server { listen 127.0.0.1:$BACKEND; location / { default_type text/plain; return 200 'ok'; } }"
cat >"$WORK/proxy.yml" <<CONF
listeners: [{address: "127.0.0.1:$ITSUP"}]
admin: {address: "127.0.0.1:$ADMIN"}
middlewares:
  never: {rate_limit: {average: 100000000, period_ms: 1000, burst: 1000000}}
routes:
  - {host: plain, cluster: be}
  - {host: limited, cluster: be, middlewares: [never]}
clusters:
  be:
    servers: [{address: "127.0.0.1:$BACKEND"}]
CONF

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nginx -c "$WORK/backend/nginx.conf" -p "$WORK/backend" & PIDS+=($!)
ITSUP_LOG=warn "$BIN" proxy --config "$WORK/proxy.yml" --threads 1 2>"$WORK/itsup.log" & PIDS+=($!)
for p in $BACKEND $ITSUP; do wait_port "$p"; done

rps() { # host
  local out; out=$(wrk -t1 -c$CONNS -d"${SECS}s" -H "Host: $1" "http://127.0.0.1:$ITSUP/")
  if echo "$out" | grep -q "Non-2xx\|Socket errors"; then echo "$out" >&2; fi
  echo "$out" | awk '/Requests\/sec/ { print $2 }'
}
wrk -t1 -c$CONNS -d2s -H "Host: plain" "http://127.0.0.1:$ITSUP/" >/dev/null 2>&1
wrk -t1 -c$CONNS -d2s -H "Host: limited" "http://127.0.0.1:$ITSUP/" >/dev/null 2>&1

echo "wrk -t1 -c$CONNS, ${SECS}s runs, $ROUNDS alternating rounds, $(nproc) cores of $(uname -n)"
RATIOS=()
for ((i = 1; i <= ROUNDS; i++)); do
  if ((i % 2)); then a=$(rps plain); b=$(rps limited); else b=$(rps limited); a=$(rps plain); fi
  RATIOS+=("$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.4f", b / a }')")
  echo "round $i: plain $a req/s, rate-limited $b req/s, ratio ${RATIOS[-1]}"
done
median() { sort -n | awk '{ a[NR] = $1 } END { printf "%.4f", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
M=$(printf '%s\n' "${RATIOS[@]}" | median)
echo "rate-limited / plain throughput: median ${M}x, cost $(awk -v m="$M" 'BEGIN { printf "%.1f", (1 - m) * 100 }') % (target < 3 %)"
