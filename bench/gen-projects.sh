#!/usr/bin/env bash
# Writes a root folder with N generated projects (two services, an http row with TLS SANs, a
# path-prefix row with an allowlist, every tenth project a tcp hostport row and an egress).
# Usage: bench/gen-projects.sh N DIR
set -euo pipefail
n=${1:?count} dir=${2:?dir}
rm -rf "$dir" && mkdir -p "$dir/projects"
cat > "$dir/projects/itsup.yml" <<YAML
traefikDomain: traefik.bench.example
acme: {email: ops@bench.example}
YAML
for i in $(seq 1 "$n"); do
  p="$dir/projects/p$i"
  mkdir -p "$p"
  {
    echo "ingress:"
    echo "  - service: web"
    echo "    port: 8080"
    echo "    tls: {main: p$i.bench.example, sans: [www.p$i.bench.example]}"
    echo "  - service: api"
    echo "    domain: p$i.bench.example"
    echo "    path_prefix: /api"
    echo "    strip_prefix: true"
    echo "    port: 9000"
    echo "    allow_source_ips: [10.0.0.0/8]"
    if (( i % 10 == 0 )); then
      echo "  - service: api"
      echo "    router: tcp"
      echo "    port: 5432"
      echo "    hostport: $((20000 + i))"
      echo "egress: [\"p$((i - 1)):api\"]"
    fi
  } > "$p/ingress.yml"
  cat > "$p/docker-compose.yml" <<YAML
x-common: &common
  restart: unless-stopped
services:
  web:
    <<: *common
    image: example/web:$i
    environment: {PROJECT: p$i, SECRET: "\${SECRET}"}
  api:
    <<: *common
    image: example/api:$i
    healthcheck: {test: ["CMD", "/api", "health"], interval: 10s}
YAML
done
