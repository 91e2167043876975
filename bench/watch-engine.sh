#!/usr/bin/env bash
# The Docker engine's own pace for the `itsup watch` churn workload, with no watcher running:
# 50 containers of the watch test image (created beforehand, like the test does) started
# IN_FLIGHT at a time, then 30 of them stopped (`-t 0`) IN_FLIGHT at a time. It is the floor
# under the churn window the watch_docker churn test reports.
# Usage: bench/watch-engine.sh [in flight, default 10]   (needs .ci/images/watch-testsrv.sh)
# Every object carries a unique org.itsup.watch-test.run label and is removed on exit.
set -euo pipefail
in_flight=${1:-10}
image=itsup-watch-test/testsrv:latest
id=itsupw-bench-$$-$RANDOM
names=$(mktemp)
cleanup() {
  local ids
  ids=$(docker ps -aq --filter "label=org.itsup.watch-test.run=$id")
  [ -z "$ids" ] || docker rm -f $ids >/dev/null
  docker network rm "$id" >/dev/null 2>&1 || true
  rm -f "$names"
}
trap cleanup EXIT
docker network create --label "org.itsup.watch-test.run=$id" "$id" >/dev/null
seq -w 1 50 | sed "s/^/$id-/" >"$names"
xargs -P 10 -I{} docker create --name {} --network "$id" \
  --label "org.itsup.watch-test.run=$id" --label itsup.enable=true "$image" <"$names" >/dev/null
start=$(date +%s.%N)
xargs -P "$in_flight" -n 1 docker start <"$names" >/dev/null
started=$(date +%s.%N)
head -30 "$names" | xargs -P "$in_flight" -n 1 docker stop -t 0 >/dev/null
stopped=$(date +%s.%N)
printf 'bare engine, %s in flight: 50 starts %.1f s, with 30 stops %.1f s (load %s)\n' \
  "$in_flight" "$(echo "$started - $start" | bc)" "$(echo "$stopped - $start" | bc)" \
  "$(cut -d' ' -f1 /proc/loadavg)"
