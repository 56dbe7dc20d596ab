#!/usr/bin/env bash
# Proxy core benchmarks (issue 4): added latency, requests/s at 64 connections, memory at 256 idle
# connections. Loopback only; every phase is bounded in count and time (see benches/proxy_latency.rs).
#
#   scripts/bench-proxy.sh                 # all phases: latency load rss
#   scripts/bench-proxy.sh latency         # one phase
#   BENCH_PERF=1 scripts/bench-proxy.sh latency   # also profile the proxy with perf
#   BENCH_DIRECT_ONLY=1 scripts/bench-proxy.sh    # the fake upstream alone, no proxy
#
# Needs h2load for the load phase (Debian: apt-get install -y nghttp2-client); without it that
# phase prints n/a. The tables go to stdout and to target/bench-proxy.md.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v h2load >/dev/null; then
    echo "note: h2load not found; the load phase will print n/a (apt-get install -y nghttp2-client)" >&2
fi

cargo build --release --bin egress-guard
export EGRESS_GUARD_BIN="$PWD/target/release/egress-guard"

perf_data=""
if [[ "${BENCH_PERF:-}" == "1" ]]; then
    if command -v perf >/dev/null; then
        perf_data="$PWD/target/bench-proxy.perf.data"
        export BENCH_PERF_OUT="$perf_data"
    else
        echo "note: perf not found; no profile" >&2
    fi
fi

# A whole run stays well under 10 minutes on 2 cores; the timeout only guards a wedged run.
timeout 900 cargo bench --bench proxy_latency -- "$@" | tee target/bench-proxy.md

if [[ -n "$perf_data" && -f "$perf_data" ]]; then
    perf report -i "$perf_data" --stdio --no-children --sort symbol --percent-limit 1 \
        2>/dev/null | grep -v '^$' | head -80 > target/bench-proxy.perf.txt || true
    echo "perf profile of the proxy: $perf_data (top symbols in target/bench-proxy.perf.txt)" >&2
fi
