#!/usr/bin/env bash
# Benchmark of `itsup agent` (release build): checks/s and p50/p99 latency against a local
# SERVING tonic-health backend with cached channels, and the agent's RSS at a paced 1000 checks/s.
# Knobs: AGENT_BENCH_SECS (10), AGENT_BENCH_CONNS (16), AGENT_BENCH_RATE (1000).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench agent -- --bench
