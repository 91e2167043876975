#!/usr/bin/env bash
# Benchmark of `itsup apply` against the real Docker engine (engine haproxy, local test images):
#   1. a start-first rollout under load: wrk through HAProxy (HTTPS, keep-alive) while apply
#      swaps the app from v1 to v2; requests served and failed, rollout duration;
#   2. apply with nothing changed for N projects (default 50), with hyperfine.
# Everything it starts is named itsupb-<random>-* and removed at the end.
# Usage: bench/rollout.sh [N] [load seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-50}
secs=${2:-30}
for script in .ci/images/*.sh; do bash "$script"; done
cargo build --release -q
work=$(mktemp -d)
bin=$work/itsup
cp "${CARGO_TARGET_DIR:-$PWD/target}/release/itsup" "$bin"
prefix=itsupb-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
root=$work/root

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
free_subnet() { # prefix length (24 or 20)
  docker network ls -q | xargs docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' | python3 -c '
import ipaddress, random, sys
size = int(sys.argv[1])
used = [ipaddress.ip_network(s) for s in sys.stdin.read().split()]
for _ in range(500):
    third = random.randint(0, 255) & ~((1 << (24 - size)) - 1)
    c = ipaddress.ip_network(f"10.{random.randint(100,249)}.{third}.0/{size}")
    if not any(c.overlaps(u) for u in used):
        print(c); break' "$1"
}
cleanup() {
  ids=$(docker ps -aq --filter "label=io.itsup.root=$root"; docker ps -aq --filter "name=$prefix")
  [ -n "$ids" ] && docker rm -f $ids >/dev/null 2>&1 || true
  for net in $(docker network ls --filter "name=$prefix" --format '{{.Name}}'); do docker network rm "$net" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

http=$(free_port); https=$(free_port)
mkdir -p "$root/projects"
cat >"$root/projects/itsup.yml" <<YML
proxy:
  engine: haproxy
  image: itsup-test/haproxy:2.6
  httpPort: $http
  httpsPort: $https
  network: $prefix-net
  subnet: $(free_subnet 24)
YML
project() { # name image domain [default-network subnet]
  mkdir -p "$root/projects/$1"
  printf 'ingress:\n  - service: web\n    domain: %s\n    port: 8080\n' "$3" >"$root/projects/$1/ingress.yml"
  cat >"$root/projects/$1/docker-compose.yml" <<YML
services:
  web:
    image: $2
    environment:
      PORT: "8080"
    healthcheck:
      test: ["CMD", "/usr/local/bin/testapp", "check"]
      interval: 1s
      timeout: 2s
      retries: 2
    stop_grace_period: 5s
YML
  # Docker's default address pools hold ~30 bridge networks: many projects need their own.
  if [ -n "${4:-}" ]; then
    printf 'networks:\n  default:\n    ipam:\n      config:\n        - subnet: %s\n' "$4" >>"$root/projects/$1/docker-compose.yml"
  fi
}

app=$prefix-app
project "$app" itsup-test/app:v1 app.test
"$bin" --root "$root" apply -q
for _ in $(seq 50); do
  curl -sfk --resolve "app.test:$https:127.0.0.1" "https://app.test:$https/" >/dev/null && break
  sleep 0.2
done

project "$app" itsup-test/app:v2 app.test
wrk -t1 -c10 -d"${secs}s" -H "Host: app.test" "https://127.0.0.1:$https/" >"$work/wrk.txt" 2>&1 &
wrk_pid=$!
sleep 5
start=$(date +%s.%N)
"$bin" --root "$root" apply --format json >"$work/apply.json"
end=$(date +%s.%N)
wait "$wrk_pid"
final=$(curl -sk --resolve "app.test:$https:127.0.0.1" "https://app.test:$https/")
requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
non2xx=$(awk -F: '/Non-2xx/ {gsub(/ /,"",$2); print $2}' "$work/wrk.txt"); non2xx=${non2xx:-0}
sockerr=$(awk '/Socket errors/ {gsub(/,/,""); print $4+$6+$8+$10}' "$work/wrk.txt"); sockerr=${sockerr:-0}
rollout=$(python3 -c "import json,sys; d=json.load(open('$work/apply.json')); print(max(s['seconds'] for st in d['stacks'] for s in st['services']))")

echo "## rollout under load (wrk -t1 -c10, ${secs} s, HTTPS through HAProxy)"
echo
echo "| requests served | failed (non-2xx + socket errors) | req/s | apply wall time | rollout of the service | final answer |"
echo "|---|---|---|---|---|---|"
rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
printf '| %s | %s | %s | %.1f s | %.1f s | %s |\n' "$requests" "$((non2xx + sockerr))" "$rps" "$(python3 -c "print($end - $start)")" "$rollout" "$final"

# N projects, then apply with nothing changed.
# One /24 per project inside free /20 blocks (16 projects per block).
block=""
for i in $(seq 1 "$n"); do
  if [ $(((i - 1) % 16)) = 0 ]; then block=$(free_subnet 20); docker network create --subnet "$block" "$prefix-reserve-$i" >/dev/null; fi
  sub=$(python3 -c "import ipaddress; print(list(ipaddress.ip_network('$block').subnets(new_prefix=24))[($i - 1) % 16])")
  project "$prefix-p$i" itsup-test/app:v1 "p$i.test" "$sub"
done
# The reservations only kept the blocks apart; the projects' networks take their place.
for net in $(docker network ls --filter "name=$prefix-reserve" --format '{{.Name}}'); do docker network rm "$net" >/dev/null; done
t0=$(date +%s.%N)
"$bin" --root "$root" apply -q --parallel 4 || echo "(the first apply reported failures)"
t1=$(date +%s.%N)
echo
echo "## apply with nothing changed ($((n + 1)) projects + proxy running)"
echo
printf 'first apply creating %s projects: %.1f s\n\n' "$n" "$(python3 -c "print($t1 - $t0)")"
hyperfine --warmup 2 --runs 10 --export-markdown "$work/hf.md" \
  -n "itsup apply, nothing changed ($((n + 1)) projects)" "$bin --root $root apply -q" \
  -n "itsup apply --dry-run ($((n + 1)) projects)" "$bin --root $root apply --dry-run -q" >/dev/null
cat "$work/hf.md"
