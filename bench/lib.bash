# Sourced by the proxy benchmarks (proxy.sh, tls.sh, tcp.sh, ratelimit.sh): the binary under
# test, the tools a script needs, a work folder whose processes stop on exit, free loopback
# ports and waiting for one to open. Run from the repository root (the scripts cd there).

# BIN: $ITSUP_BIN, else a fresh release build (fat LTO, as shipped).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=${ITSUP_BIN:-}
if [ -z "$BIN" ]; then
  cargo build --release --bin itsup >&2
  BIN=$CARGO_TARGET_DIR/release/itsup
fi

# need_tools TOOL…: stop with the fix when one is missing.
need_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "missing $tool (run .ci/setup.sh)" >&2; exit 1; }
  done
}

# WORK: a scratch folder; every pid added to PIDS is stopped, and WORK removed, on exit.
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 did not open" >&2; exit 1
}

# nginx_conf NAME BODY: $WORK/NAME/nginx.conf for one nginx worker in the foreground, logs and
# temporary files under $WORK/NAME, BODY inside its http block.
nginx_conf() { # name, body of the http block
  mkdir -p "$WORK/$1"
  cat >"$WORK/$1/nginx.conf" <<CONF
worker_processes 1;
daemon off;
user root;
pid $WORK/$1/nginx.pid;
error_log $WORK/$1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/$1/body;
  proxy_temp_path $WORK/$1/proxy;
  keepalive_requests 1000000;
  $2
}
CONF
}
