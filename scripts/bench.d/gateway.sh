#!/usr/bin/env bash
# The gateway's benchmark: direct vs nginx proxy_pass vs bare aiohttp proxies vs the gateway's own
# server and client alone vs the full gateway, against an nginx mock upstream, each proxy pinned to
# one core and wrk on the other.
# BENCH_DURATION_S (default 5) sets the seconds per measurement.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
exec python "$ROOT/gateway/bench/run.py"
