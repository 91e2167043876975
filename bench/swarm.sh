#!/usr/bin/env bash
# Benchmark of `itsup apply` on Docker Swarm (orchestrator: swarm, engine haproxy, local test
# images, a single-node Swarm): time from the command to a converged update of one service, and
# the failed requests during it (wrk through HAProxy, HTTPS keep-alive), side by side with the
# same update done by hand (`docker stack deploy` of the same rendered stack file, then polling
# `docker service inspect` until UpdateStatus is `completed`). Rounds alternate v1→v2 / v2→v1
# between the two ways; medians are printed.
# Initialises Swarm when the engine is in none (and leaves it at the end only then). Everything
# it starts is named itsupb-<random>-* and removed at the end.
# Usage: bench/swarm.sh [rounds (3)]   ITSUP_BIN=path (default: target/debug/itsup, built if
# missing: itsup only waits on Swarm here, a release build changes nothing measurable).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
for script in .ci/images/app.sh .ci/images/haproxy.sh; do bash "$script" >/dev/null; done
bin=${ITSUP_BIN:-$PWD/target/debug/itsup}
[ -x "$bin" ] || cargo build -q --bin itsup
prefix=itsupb-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
work=$(mktemp -d)
root=$work/root
node=""
initialised=0
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cleanup() {
  for s in $(docker stack ls --format '{{.Name}}' | grep "^$prefix" || true); do docker stack rm "$s" >/dev/null 2>&1 || true; done
  for _ in $(seq 60); do
    [ -z "$(docker ps -aq --filter "name=$prefix")" ] && break
    sleep 1
  done
  for _ in $(seq 30); do
    nets=$(docker network ls --filter "name=$prefix" --format '{{.Name}}')
    [ -z "$nets" ] && break
    for n in $nets; do docker network rm "$n" >/dev/null 2>&1 || true; done
    sleep 1
  done
  [ -n "$node" ] && docker node update --label-rm "$prefix.ingress" "$node" >/dev/null 2>&1 || true
  [ "$initialised" = 1 ] && docker swarm leave --force >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null
  initialised=1
fi
node=$(docker info --format '{{.Swarm.NodeID}}')
docker node update --label-add "$prefix.ingress=true" "$node" >/dev/null

http=$(free_port); https=$(free_port)
app=$prefix-app
stack=$prefix-$app
mkdir -p "$root/projects/$app"
cat >"$root/projects/itsup.yml" <<YML
proxy:
  engine: haproxy
  image: itsup-test/haproxy:2.6
  httpPort: $http
  httpsPort: $https
  network: $prefix-net
  subnet: 10.$((100 + RANDOM % 150)).$((RANDOM % 256)).0/24
orchestrator: swarm
swarm:
  ingressLabel: $prefix.ingress
  stackPrefix: $prefix-
YML
printf 'ingress:\n  - service: web\n    domain: app.test\n    port: 8080\n' >"$root/projects/$app/ingress.yml"
version() {
  cat >"$root/projects/$app/docker-compose.yml" <<YML
services:
  web:
    image: itsup-test/app:$1
    environment:
      PORT: "8080"
    healthcheck:
      test: ["CMD", "/usr/local/bin/testapp", "check"]
      interval: 1s
      timeout: 2s
      retries: 2
    stop_grace_period: 5s
YML
}
version v1
"$bin" --root "$root" apply -q
for _ in $(seq 100); do
  curl -sfk --resolve "app.test:$https:127.0.0.1" "https://app.test:$https/" >/dev/null && break
  sleep 0.2
done

# One update under load: $1 = itsup | hand, $2 = the version to go to. Prints
# "seconds requests failed final".
update() {
  wrk -t1 -c10 -d600s -H "Host: app.test" "https://127.0.0.1:$https/" >"$work/wrk.txt" 2>&1 &
  local wrk_pid=$!
  sleep 3
  local start end
  start=$(date +%s.%N)
  if [ "$1" = itsup ]; then
    version "$2"
    "$bin" --root "$root" apply -q >/dev/null
  else
    local before
    before=$(docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.StartedAt}}{{end}}' "${stack}_web")
    # StartedAt prints with spaces: the state comes first, the rest of the line is the time.
    sed -i "s|itsup-test/app:v[12]|itsup-test/app:$2|" "$root/upstream/$app/docker-compose.yml"
    (cd "$root/upstream/$app" && docker stack deploy --resolve-image never -c docker-compose.yml "$stack" >/dev/null 2>&1)
    while :; do
      read -r state started < <(docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}} {{.UpdateStatus.StartedAt}}{{end}}' "${stack}_web")
      [ -n "${started:-}" ] && [ "$started" != "$before" ] && [ "${state:-}" = completed ] && break
      sleep 0.5
    done
    # Keep itsup's view in step with what now runs (the next itsup round starts from it).
    version "$2"
    "$bin" --root "$root" render -q >/dev/null 2>&1 || true
  fi
  end=$(date +%s.%N)
  sleep 2
  kill -INT "$wrk_pid"; wait "$wrk_pid" || true
  local requests non2xx sockerr final
  requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
  non2xx=$(awk -F: '/Non-2xx/ {gsub(/ /,"",$2); print $2}' "$work/wrk.txt"); non2xx=${non2xx:-0}
  sockerr=$(awk '/Socket errors/ {gsub(/,/,""); print $4+$6+$8+$10}' "$work/wrk.txt"); sockerr=${sockerr:-0}
  final=$(curl -sk --resolve "app.test:$https:127.0.0.1" "https://app.test:$https/")
  printf '%.2f %s %s %s\n' "$(python3 -c "print($end - $start)")" "$requests" "$((non2xx + sockerr))" "$final"
}

echo "| round | way | to | converged after | requests | failed | final answer |"
echo "|---|---|---|---|---|---|---|"
: >"$work/results"
to=v2
for r in $(seq "$rounds"); do
  for way in itsup hand; do
    read -r secs reqs failed final < <(update "$way" "$to")
    echo "$way $secs $failed" >>"$work/results"
    echo "| $r | $way | $to | $secs s | $reqs | $failed | $final |"
    to=$([ "$to" = v2 ] && echo v1 || echo v2)
  done
done
echo
python3 - "$work/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for way in ("itsup", "hand"):
    secs = [float(r[1]) for r in rows if r[0] == way]
    failed = sum(int(r[2]) for r in rows if r[0] == way)
    print(f"{way}: median {statistics.median(secs):.2f} s to converged, {failed} failed requests in {len(secs)} updates")
PY
